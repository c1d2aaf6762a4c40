/* The relay's resolver on real processes: two cells of one replica each (`cellpay node --cell 1
 * --zones 0-49` and `--cell 2 --zones 50-99`, both with --routes and --tcc-recover-after 1).
 * An order in cell 2 (the merchant's) for a buyer of cell 1, naming cell 1 as the buyer's, left
 * as a dead gateway leaves it: never paid. Within seconds cell 2's relay asks cell 1 (which
 * stores its tombstone) and releases the order (status relay_resolved): the order's key answers
 * cancelled, the dead gateway's late payment in cell 1 is answered cancelled (replayed) and
 * debits nothing, and the out_trade_no is free for a new order.
 *
 * usage: proc_relay_resolve CELLPAY_BINARY */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../repl/node_proc.h"
#include "cell/pay.h"
#include "client/client.h"
#include "proto/proto.h"

#define MERCHANT 100600ull /* zone 60: cell 2 */
#define BUYER 4000021ull   /* zone 2: cell 1 */
#define WAIT_MS 20000u

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "FAIL: ");                                                                 \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

static node_proc_t np[2];
static char dirs[2][64];

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) FAIL("bind");
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* One request to cell i (1 or 2), its answer. */
static pay_object_t pay1(int i, const pay_request_t *r) {
    pay_object_t o = {0};
    uint32_t size = 0;
    int32_t st =
        client_call_once(np[i - 1].addr, PROTO_OP_PAY, r, sizeof *r, &o, sizeof o, &size, 5000);
    if (st != 0 || size != sizeof o)
        FAIL("pay to cell %d: %s, %u bytes", i, client_status_str(st), size);
    return o;
}

static proto_status_reply_t status(int i) {
    proto_status_reply_t s = {0};
    uint32_t size = 0;
    int32_t st =
        client_call_once(np[i - 1].addr, PROTO_OP_STATUS, NULL, 0, &s, sizeof s, &size, 2000);
    if (st != 0 || size != sizeof s) FAIL("status of cell %d: %s", i, client_status_str(st));
    return s;
}

/* A one-voter group elects itself shortly after it listens. */
static void wait_leader(int i) {
    uint64_t until = np_now_ms() + WAIT_MS;
    while (status(i).role != PROTO_ROLE_LEADER)
        if (np_now_ms() > until)
            FAIL("cell %d does not lead", i);
        else
            np_sleep_ms(20);
}

static void start(const char *cellpay, const char *routes, const int ports[2]) {
    static const char *zones[2] = {"0-49", "50-99"};
    for (int i = 0; i < 2; i++) {
        snprintf(dirs[i], sizeof dirs[i], "/tmp/cellpay-resolve-XXXXXX");
        if (!mkdtemp(dirs[i])) FAIL("mkdtemp");
        const char *extra[] = {"--cell", i ? "2" : "1",         "--zones", zones[i], "--routes",
                               routes,   "--tcc-recover-after", "1",       NULL};
        if (!np_start(&np[i], cellpay, dirs[i], ports[i], extra))
            FAIL("cell %d did not start", i + 1);
        wait_leader(i + 1);
    }
}

static pay_request_t order_request(u128 key) {
    pay_request_t r = {.kind = PAY_KIND_ORDER,
                       .idem_key = key,
                       .body_hash = 7,
                       .actor = MERCHANT,
                       .uid = BUYER,
                       .amount = 100,
                       .currency = pay_currency_pack("CNY"),
                       .funding = 1,
                       .peer_cell = 1};
    strcpy(r.text, "otn-1");
    return r;
}

static void setup_parties(void) {
    uint32_t cny = pay_currency_pack("CNY");
    if (pay1(2, &(pay_request_t){.kind = PAY_KIND_MERCHANT, .uid = MERCHANT}).code != PAY_CREATED)
        FAIL("merchant");
    if (pay1(1, &(pay_request_t){.kind = PAY_KIND_USER, .uid = BUYER, .currency = cny}).code !=
            PAY_CREATED ||
        pay1(
            1,
            &(pay_request_t){.kind = PAY_KIND_TOPUP, .uid = BUYER, .currency = cny, .amount = 1000})
                .code != PAY_CREATED)
        FAIL("buyer");
}

static u128 balance(void) {
    pay_query_t q = {.kind = PAY_Q_BALANCE, .uid = BUYER, .currency = pay_currency_pack("CNY")};
    pay_object_t o = {0};
    uint32_t size = 0;
    int32_t st =
        client_call_once(np[0].addr, PROTO_OP_PAY_QUERY, &q, sizeof q, &o, sizeof o, &size, 5000);
    if (st != 0 || size != sizeof o || o.code != PAY_OK) FAIL("balance query");
    return o.amount;
}

int main(int argc, char **argv) {
    if (argc < 2) FAIL("usage: proc_relay_resolve CELLPAY_BINARY");
    char routes[64] = "/tmp/cellpay-resolve-routes-XXXXXX";
    int fd = mkstemp(routes);
    if (fd < 0) FAIL("mkstemp");
    int ports[2] = {free_port(), free_port()};
    dprintf(fd,
            "version 1\nrule 10 100\ncell 1 127.0.0.1:%d\ncell 2 127.0.0.1:%d\n"
            "zones 0-49 -> 1\nzones 50-99 -> 2\n",
            ports[0], ports[1]);
    close(fd);
    start(argv[1], routes, ports);
    setup_parties();
    pay_request_t ro = order_request(1);
    pay_object_t o = pay1(2, &ro);
    if (o.kind != PAY_KIND_ORDER || o.code != PAY_CREATED)
        FAIL("order: kind %u code %u", o.kind, o.code);
    u128 p = o.id;
    if (status(2).orders_reserved != 1) FAIL("the status does not count the order reserved");
    /* The gateway is gone: nothing pays nor releases but the resolver of cell 2, after 1 s. */
    uint64_t until = np_now_ms() + WAIT_MS;
    for (;;) {
        proto_status_reply_t s = status(2);
        if (s.relay_resolved >= 1 && s.orders_reserved == 0) break;
        if (np_now_ms() > until)
            FAIL("not resolved: relay_resolved %llu", (unsigned long long)s.relay_resolved);
        np_sleep_ms(100);
    }
    o = pay1(2, &ro);
    if (o.kind != PAY_KIND_PAYMENT || o.code != PAY_ERR_CANCELLED || !o.replayed)
        FAIL("the order's key answers kind %u code %u", o.kind, o.code);
    /* The dead gateway's payment, late: the tombstone. */
    pay_request_t late = ro;
    late.kind = PAY_KIND_PAYMENT;
    late.payment_id = late.idem_key = p;
    late.peer_cell = 2;
    o = pay1(1, &late);
    if (o.kind != PAY_KIND_PAYMENT || o.code != PAY_ERR_CANCELLED || !o.replayed)
        FAIL("the late payment: kind %u code %u", o.kind, o.code);
    if (balance() != 1000) FAIL("the late payment moved money");
    pay_request_t again = order_request(2);
    if (pay1(2, &again).code != PAY_CREATED) FAIL("the out_trade_no is not free again");
    for (int i = 0; i < 2; i++) np_stop(&np[i], SIGTERM);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s %s", dirs[0], dirs[1], routes);
    if (system(cmd) != 0) fprintf(stderr, "could not remove the test's files\n");
    printf("proc_relay_resolve: ok\n");
    return 0;
}
