/* Payments survive a crash: on one real node (`cellpay node --cell 5`), create a merchant, a
 * user, top-ups (enough of them that a snapshot is written), then a payment with an
 * idempotency key; SIGKILL the node, restart it, and check from the snapshot plus the log
 * replay that the payment is there, the balance is what it was, and re-sending the keyed
 * payment gets the stored answer (replayed) without moving money again.
 *
 * usage: proc_pay CELLPAY_BINARY */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/pay.h"
#include "client/client.h"
#include "node_proc.h"

#define TOPUPS_PER_CALL 2000u
#define TOPUP_CALLS 4u /* 4 x 2000 x 256 bytes: past the 1 MiB snapshot threshold */

static char dir[256];

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "FAIL: ");                                                                 \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

static client_t *open_client(const node_proc_t *np) {
    client_t *c;
    client_options_t o = {.sessions = 1, .deadline_ms = 10000, .attempt_timeout_ms = 1000};
    if (client_open(&c, np->addr, &o) != 0) FAIL("client_open %s", np->addr);
    return c;
}

static pay_object_t replies[TOPUPS_PER_CALL];

/* Sends n requests as one pay command; the answers land in replies. */
static void pay(client_t *c, const pay_request_t *r, uint32_t n) {
    uint32_t size = 0;
    int32_t st = client_call(c, PROTO_OP_PAY, r, n * (uint32_t)sizeof *r, replies, sizeof replies,
                             &size, NULL);
    if (st != 0 || size != n * sizeof(pay_object_t))
        FAIL("pay: %s, %u bytes", client_status_str(st), size);
}

static pay_object_t query(client_t *c, const pay_query_t *q) {
    pay_object_t out[PAY_LIST_MAX + 2];
    uint32_t size = 0;
    int32_t st = client_call(c, PROTO_OP_PAY_QUERY, q, sizeof *q, out, sizeof out, &size, NULL);
    if (st != 0 || size < sizeof out[0]) FAIL("pay_query: %s", client_status_str(st));
    return out[0];
}

static pay_request_t payment(void) {
    pay_request_t r = {.kind = PAY_KIND_PAYMENT,
                       .actor = 1001,
                       .uid = 2001,
                       .currency = pay_currency_pack("CNY"),
                       .amount = 1234,
                       .funding = 1,
                       .idem_key = 42,
                       .body_hash = 7};
    strcpy(r.text, "order-42");
    return r;
}

static bool has_snapshot(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "find %s -name 'snap-*.snap' | grep -q .", dir);
    return system(cmd) == 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: proc_pay CELLPAY_BINARY\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "/tmp/cellpay-pay-XXXXXX");
    if (!mkdtemp(dir)) FAIL("mkdtemp");
    const char *extra[] = {
        "--cell", "5", "--accounts-max", "1024", "--transfers-max", "65536", "--snapshot-mib",
        "1",      NULL};
    node_proc_t np;
    if (!np_start(&np, argv[1], dir, 0, extra)) FAIL("node did not start");
    client_t *c = open_client(&np);

    uint32_t cny = pay_currency_pack("CNY");
    pay_request_t setup[2] = {{.kind = PAY_KIND_MERCHANT, .uid = 1001},
                              {.kind = PAY_KIND_USER, .uid = 2001, .currency = cny}};
    memset(setup[0].secret, 0x33, PAY_SECRET_SIZE);
    pay(c, setup, 2);
    if (replies[0].code != PAY_CREATED || replies[1].code != PAY_CREATED)
        FAIL("setup: codes %u %u", replies[0].code, replies[1].code);

    static pay_request_t topups[TOPUPS_PER_CALL];
    for (uint32_t i = 0; i < TOPUPS_PER_CALL; i++)
        topups[i] =
            (pay_request_t){.kind = PAY_KIND_TOPUP, .uid = 2001, .currency = cny, .amount = 1};
    for (uint32_t k = 0; k < TOPUP_CALLS; k++) {
        pay(c, topups, TOPUPS_PER_CALL);
        for (uint32_t i = 0; i < TOPUPS_PER_CALL; i++)
            if (replies[i].code != PAY_CREATED) FAIL("top-up %u: code %u", i, replies[i].code);
    }
    /* After the snapshot: these are replayed from the log on restart. */
    pay_request_t p = payment();
    pay(c, &p, 1);
    pay_object_t first = replies[0];
    if (first.code != PAY_CREATED) FAIL("payment: code %u", first.code);
    if ((uint64_t)first.id >> 40 != 5) FAIL("payment id does not carry the cell number");
    pay_query_t bq = {.kind = PAY_Q_BALANCE, .uid = 2001, .currency = cny};
    pay_object_t before = query(c, &bq);
    if (before.amount != TOPUPS_PER_CALL * TOPUP_CALLS - 1234) FAIL("balance before the kill");
    client_close(c);
    if (!has_snapshot()) FAIL("no snapshot was written: the test would not cover it");

    int st = np_stop(&np, SIGKILL);
    if (!WIFSIGNALED(st)) FAIL("node exited by itself before the kill");
    if (!np_start(&np, argv[1], dir, np.port, extra)) FAIL("node did not restart");
    c = open_client(&np);

    pay_query_t pq = {.kind = PAY_Q_PAYMENT, .id = first.id, .actor = 1001};
    pay_object_t found = query(c, &pq);
    first.code = PAY_OK;
    if (memcmp(&found, &first, sizeof found) != 0) FAIL("the payment changed across the restart");
    pay_object_t after = query(c, &bq);
    if (memcmp(&after, &before, sizeof after) != 0) FAIL("the balance changed across the restart");
    pay_query_t mq = {.kind = PAY_Q_MERCHANT, .uid = 1001};
    if (query(c, &mq).secret[7] != 0x33) FAIL("the merchant's secret was lost");

    pay(c, &p, 1);
    pay_object_t again = replies[0];
    first.code = PAY_CREATED;
    first.replayed = 1;
    if (memcmp(&again, &first, sizeof again) != 0) FAIL("the keyed payment did not replay");
    if (query(c, &bq).amount != before.amount) FAIL("the replay moved money");
    client_close(c);

    st = np_stop(&np, SIGTERM);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("SIGTERM did not stop the node cleanly");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    printf("pay across a restart: passed\n");
    return 0;
}
