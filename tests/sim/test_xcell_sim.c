/* Randomized simulation of cross-cell payments (src/txn/xcell_sim.h): a budget of seeds, each
 * 2 or 3 cells with their relays, clients paying across cells with the gateway's three steps
 * and a network that loses, duplicates, delays and reorders, with the invariants checked after
 * every step, then a calm period after which every debited payment must be credited exactly
 * once and acknowledged and every pair of cells' clearing must net to zero. Clients also
 * refund paid payments by TCC (refund, Try, decide), their gateway dying between two steps
 * for good now and then: after the calm period no refund activity is trying (the relays
 * recovered them), no transfer is pending, and money is conserved. And they transfer money
 * between users with the gateway's steps (src/gateway/xtcc.c), across cells and within one,
 * with each user's account checked against a model after every step and, after the calm
 * period, every transfer decided, delivered and acknowledged and every balance the reference
 * model's.
 *
 * CELLPAY_XSIM_SEEDS=N changes the number of seeds (default 500), CELLPAY_XSIM_STEPS the steps
 * per seed (default 3000), CELLPAY_SANITIZED=1 scales the default seeds down to 60 (ASan and
 * UBSan run several times slower), CELLPAY_SEED=S runs that one seed only (replay a failure;
 * or use `cellpay sim --cells N --seed S --steps N`). Odd seeds run 3 cells, even ones 2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "txn/xcell_sim.h"

static uint64_t env_u64(const char *name, uint64_t def) {
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : def;
}

static bool run_seed(uint64_t seed, uint32_t cells, uint32_t steps, xc_sim_stats_t *st) {
    xc_sim_t *s = xc_sim_create(&(xc_sim_config_t){.seed = seed, .cells = cells});
    bool ok = xc_sim_run(s, steps) && xc_sim_calm(s);
    xc_sim_stats(s, st);
    fprintf(stderr,
            "xcell sim: seed %" PRIu64 " cells %u: %s; %" PRIu64 " orders, %" PRIu64
            " debited, %" PRIu64 " credited, %" PRIu64 " refused, %" PRIu64 " crashes, %" PRIu64
            " refunds, %" PRIu64 " transfers (%" PRIu64 " recovered)\n",
            seed, cells, ok ? "ok" : "FAILED", st->orders, st->debited, st->credited, st->refused,
            st->crashes, st->refunds, st->transfers + st->transfers_local, st->recovered);
    if (!ok) {
        fprintf(stderr,
                "seed %" PRIu64 " FAILED; replay: CELLPAY_SEED=%" PRIu64
                " or cellpay sim --cells %u --seed %" PRIu64 " --steps %u\n",
                seed, seed, cells, seed, steps);
        xc_sim_print_trace(s, stderr);
    }
    xc_sim_destroy(s);
    return ok;
}

static void total_add(xc_sim_stats_t *t, const xc_sim_stats_t *st) {
    t->steps += st->steps;
    t->orders += st->orders;
    t->debited += st->debited;
    t->refused += st->refused;
    t->released += st->released;
    t->credited += st->credited;
    t->acked += st->acked;
    t->replays_checked += st->replays_checked;
    t->duplicates_refused += st->duplicates_refused;
    t->crashes += st->crashes;
    t->flaps += st->flaps;
    t->lost += st->lost;
    t->duplicated += st->duplicated;
    t->timeouts += st->timeouts;
    t->relay_faults += st->relay_faults;
    t->relay_failures += st->relay_failures;
    t->refunds += st->refunds;
    t->refunds_confirmed += st->refunds_confirmed;
    t->refunds_cancelled += st->refunds_cancelled;
    t->gateways_died += st->gateways_died;
    t->recovered += st->recovered;
    t->orders_abandoned += st->orders_abandoned;
    t->late_payments += st->late_payments;
    t->tombstones += st->tombstones;
    t->resolved += st->resolved;
    t->transfers += st->transfers;
    t->transfers_confirmed += st->transfers_confirmed;
    t->transfers_cancelled += st->transfers_cancelled;
    t->transfers_try_refused += st->transfers_try_refused;
    t->transfers_local += st->transfers_local;
}

static void test_seeds(void **state) {
    (void)state;
    uint64_t def_seeds = env_u64("CELLPAY_SANITIZED", 0) == 1 ? 60 : 500;
    uint64_t seeds = env_u64("CELLPAY_XSIM_SEEDS", def_seeds),
             steps = env_u64("CELLPAY_XSIM_STEPS", 3000);
    const char *one = getenv("CELLPAY_SEED");
    uint64_t base = one && *one ? strtoull(one, NULL, 10) : (uint64_t)time(NULL);
    if (one && *one && !getenv("CELLPAY_XSIM_SEEDS")) seeds = 1;
    fprintf(stderr, "xcell sim: %" PRIu64 " seeds from %" PRIu64 ", %" PRIu64 " steps each\n",
            seeds, base, steps);
    xc_sim_stats_t total = {0};
    uint32_t failures = 0;
    for (uint64_t k = 0; k < seeds; k++) {
        uint64_t seed = base + k;
        xc_sim_stats_t st;
        if (!run_seed(seed, (seed & 1) ? 3 : 2, (uint32_t)steps, &st)) failures++;
        total_add(&total, &st);
    }
    fprintf(
        stderr,
        "xcell sim: %u failures; %" PRIu64 " steps, %" PRIu64 " orders, %" PRIu64
        " payments debited, %" PRIu64 " refused (%" PRIu64 " orders released), %" PRIu64
        " credited, %" PRIu64 " acknowledged, %" PRIu64 " replayed answers compared, %" PRIu64
        " reused out_trade_no's refused, %" PRIu64 " crashes, %" PRIu64 " leader flaps, %" PRIu64
        " messages lost, %" PRIu64 " duplicated, %" PRIu64 " timeouts, %" PRIu64
        " relay faults on purpose, %" PRIu64 " relay batches failed; %" PRIu64
        " refund activities, %" PRIu64 " confirmed, %" PRIu64 " cancelled, %" PRIu64
        " gateways died in one, %" PRIu64 " recovered by the relays; %" PRIu64
        " orders abandoned, %" PRIu64 " late payments, %" PRIu64 " tombstones, %" PRIu64
        " orders resolved; %" PRIu64 " transfers across cells, %" PRIu64 " confirmed, %" PRIu64
        " cancelled (%" PRIu64 " refused by the Try), %" PRIu64 " within a cell\n",
        failures, total.steps, total.orders, total.debited, total.refused, total.released,
        total.credited, total.acked, total.replays_checked, total.duplicates_refused, total.crashes,
        total.flaps, total.lost, total.duplicated, total.timeouts, total.relay_faults,
        total.relay_failures, total.refunds, total.refunds_confirmed, total.refunds_cancelled,
        total.gateways_died, total.recovered, total.orders_abandoned, total.late_payments,
        total.tombstones, total.resolved, total.transfers, total.transfers_confirmed,
        total.transfers_cancelled, total.transfers_try_refused, total.transfers_local);
    assert_int_equal(failures, 0);
    /* The budget must exercise the paths, not only allow them. */
    if (seeds >= 20)
        assert_true(total.debited > 0 && total.refused > 0 && total.released > 0 &&
                    total.replays_checked > 0 && total.duplicates_refused > 0 &&
                    total.crashes > 0 && total.relay_faults > 0 && total.duplicated > 0 &&
                    total.refunds_confirmed > 0 && total.refunds_cancelled > 0 &&
                    total.gateways_died > 0 && total.recovered > 0 && total.orders_abandoned > 0 &&
                    total.late_payments > 0 && total.tombstones > 0 && total.resolved > 0 &&
                    total.transfers_confirmed > 0 && total.transfers_cancelled > 0 &&
                    total.transfers_try_refused > 0 && total.transfers_local > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_seeds)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
