/* Randomized simulation of the Raft core (src/repl/raft_sim.h): a budget of seeds, each a
 * run of random faults with every invariant checked after every step, then a calm period
 * that must elect a leader and commit every pending proposal, then keep it through partial
 * partitions. The schedule is tuned so that deliberately broken rules of raft-notes.md (1, 3,
 * 4, 5, 8) fail within the default budget (see raft_sim.h).
 *
 * CELLPAY_SIM_SEEDS=N changes the number of seeds (default 4000), CELLPAY_SIM_STEPS the steps
 * per seed (default 3000), CELLPAY_SANITIZED=1 scales the default seeds down to 2000 (ASan
 * and UBSan run several times slower), CELLPAY_SEED=S runs that one seed only (replay a failure; or
 * use `cellpay sim --seed S --steps N --nodes K`). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "repl/raft_sim.h"

static uint64_t env_u64(const char *name, uint64_t def) {
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : def;
}

static bool run_seed(uint64_t seed, uint32_t nodes, uint32_t steps, rf_sim_stats_t *st) {
    rf_sim_t *s = rf_sim_create(&(rf_sim_config_t){.seed = seed, .nodes = nodes});
    bool ok = rf_sim_run(s, steps) && rf_sim_calm(s);
    rf_sim_stats(s, st);
    if (!ok) {
        fprintf(stderr,
                "seed %" PRIu64 " (%u nodes, %u steps) FAILED; replay: CELLPAY_SEED=%" PRIu64
                " or cellpay sim --seed %" PRIu64 " --steps %u --nodes %u\n",
                seed, nodes, steps, seed, seed, steps, nodes);
        rf_sim_print_trace(s, stderr);
    }
    rf_sim_destroy(s);
    return ok;
}

static void test_seeds(void **state) {
    (void)state;
    uint64_t def_seeds = env_u64("CELLPAY_SANITIZED", 0) == 1 ? 2000 : 4000;
    uint64_t seeds = env_u64("CELLPAY_SIM_SEEDS", def_seeds),
             steps = env_u64("CELLPAY_SIM_STEPS", 3000);
    const char *one = getenv("CELLPAY_SEED");
    uint64_t base = one && *one ? strtoull(one, NULL, 10) : (uint64_t)time(NULL);
    if (one && *one && !getenv("CELLPAY_SIM_SEEDS")) seeds = 1;
    fprintf(stderr, "raft sim: %" PRIu64 " seeds from %" PRIu64 ", %" PRIu64 " steps each\n", seeds,
            base, steps);
    rf_sim_stats_t total = {0};
    uint32_t failures = 0;
    for (uint64_t k = 0; k < seeds; k++) {
        uint64_t seed = base + k;
        uint32_t nodes = (seed & 1) ? 5 : 3;
        rf_sim_stats_t st;
        if (!run_seed(seed, nodes, (uint32_t)steps, &st)) failures++;
        total.steps += st.steps;
        total.elections += st.elections;
        total.crashes += st.crashes;
        total.acked += st.acked;
        total.reads += st.reads;
        total.delivered += st.delivered;
        total.snapshots += st.snapshots;
        total.installs += st.installs;
        total.install_failures += st.install_failures;
        total.member_changes += st.member_changes;
        total.ledger_transfers += st.ledger_transfers;
        total.ledger_duplicates += st.ledger_duplicates;
        total.ledger_checks += st.ledger_checks;
        total.ledger_compared += st.ledger_compared;
    }
    fprintf(stderr,
            "raft sim: %u failures; %" PRIu64 " steps, %" PRIu64 " leaders, %" PRIu64
            " crashes, %" PRIu64 " commands acknowledged, %" PRIu64 " reads, %" PRIu64
            " messages delivered, %" PRIu64 " snapshots taken, %" PRIu64
            " installed from the leader (%" PRIu64 " failed to verify), %" PRIu64
            " membership changes, %" PRIu64 " ledger transfers applied (%" PRIu64
            " retried duplicates) with the ledger invariants checked %" PRIu64 " times, %" PRIu64
            " ledger digests compared across replicas\n",
            failures, total.steps, total.elections, total.crashes, total.acked, total.reads,
            total.delivered, total.snapshots, total.installs, total.install_failures,
            total.member_changes, total.ledger_transfers, total.ledger_duplicates,
            total.ledger_checks, total.ledger_compared);
    assert_int_equal(failures, 0);
    /* The budget must exercise snapshot transfer and membership changes, not only allow them. */
    if (seeds >= 100)
        assert_true(total.installs > 0 && total.install_failures > 0 && total.member_changes > 0);
    /* ... and the ledger, retried commands included, on every replica. */
    if (seeds >= 100)
        assert_true(total.ledger_checks == total.ledger_transfers && total.ledger_duplicates > 0 &&
                    total.ledger_compared > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_seeds)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
