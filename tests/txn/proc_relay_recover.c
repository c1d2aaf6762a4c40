/* The relay's recovery on real processes: two cells of one replica each (`cellpay node --cell 1
 * --zones 0-49` and `--cell 2 --zones 50-99`, both with --routes and --tcc-recover-after 1).
 * A cross-cell payment from a buyer of cell 1 to a merchant of cell 2, then a refund of it left
 * as a dead gateway leaves it: recorded trying in cell 1 and held by a Try in cell 2, never
 * decided. Within seconds cell 1's relay decides it cancelled (status relay_recovered), the
 * refund's key answers the cancel, and the Cancel reaches cell 2 and is acknowledged (the
 * outbox is empty again; a later Try is refused as cancelled: the branch is cancelled, its
 * hold voided in the same entry).
 *
 * usage: proc_relay_recover CELLPAY_BINARY */
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
        snprintf(dirs[i], sizeof dirs[i], "/tmp/cellpay-recover-XXXXXX");
        if (!mkdtemp(dirs[i])) FAIL("mkdtemp");
        const char *extra[] = {"--cell", i ? "2" : "1",         "--zones", zones[i], "--routes",
                               routes,   "--tcc-recover-after", "1",       NULL};
        if (!np_start(&np[i], cellpay, dirs[i], ports[i], extra))
            FAIL("cell %d did not start", i + 1);
        wait_leader(i + 1);
    }
}

/* The order in cell 2 and the payment in cell 1; returns when its credit is acknowledged. */
static u128 cross_cell_payment(void) {
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
    pay_request_t r = {.kind = PAY_KIND_ORDER,
                       .idem_key = 1,
                       .body_hash = 1,
                       .actor = MERCHANT,
                       .uid = BUYER,
                       .amount = 100,
                       .currency = cny,
                       .funding = 1};
    strcpy(r.text, "otn-1");
    pay_object_t o = pay1(2, &r);
    if (o.code != PAY_CREATED) FAIL("order: %u", o.code);
    r.kind = PAY_KIND_PAYMENT;
    r.payment_id = r.idem_key = o.id;
    r.peer_cell = 2;
    if (pay1(1, &r).code != PAY_CREATED) FAIL("payment");
    uint64_t until = np_now_ms() + WAIT_MS;
    while (status(1).outbox_backlog != 0)
        if (np_now_ms() > until)
            FAIL("the credit was not delivered");
        else
            np_sleep_ms(50);
    return o.id;
}

static pay_request_t refund_request(u128 p) {
    pay_request_t r = {.kind = PAY_KIND_REFUND,
                       .idem_key = 2,
                       .body_hash = 2,
                       .actor = MERCHANT,
                       .payment_id = p,
                       .amount = 40,
                       .peer_cell = 2};
    strcpy(r.text, "r-1");
    return r;
}

static pay_request_t try_request(u128 rid) {
    return (pay_request_t){.kind = PAY_KIND_TRY,
                           .payment_id = rid,
                           .actor = MERCHANT,
                           .uid = BUYER,
                           .amount = 40,
                           .currency = pay_currency_pack("CNY"),
                           .peer_cell = 1};
}

int main(int argc, char **argv) {
    if (argc < 2) FAIL("usage: proc_relay_recover CELLPAY_BINARY");
    char routes[64] = "/tmp/cellpay-recover-routes-XXXXXX";
    int fd = mkstemp(routes);
    if (fd < 0) FAIL("mkstemp");
    int ports[2] = {free_port(), free_port()};
    dprintf(fd,
            "version 1\nrule 10 100\ncell 1 127.0.0.1:%d\ncell 2 127.0.0.1:%d\n"
            "zones 0-49 -> 1\nzones 50-99 -> 2\n",
            ports[0], ports[1]);
    close(fd);
    start(argv[1], routes, ports);
    u128 p = cross_cell_payment();
    pay_request_t rr = refund_request(p);
    pay_object_t o = pay1(1, &rr);
    if (o.kind != PAY_KIND_REFUND || o.code != PAY_TRYING)
        FAIL("refund: kind %u code %u", o.kind, o.code);
    u128 rid = o.id;
    pay_request_t tr = try_request(rid);
    if (pay1(2, &tr).code != PAY_CREATED) FAIL("try");
    if (status(1).tcc_trying != 1) FAIL("the status does not count the activity trying");
    /* The gateway is gone: nothing decides but the relay of cell 1, after 1 s. */
    uint64_t until = np_now_ms() + WAIT_MS;
    for (;;) {
        proto_status_reply_t s = status(1);
        if (s.relay_recovered >= 1 && s.outbox_backlog == 0 && s.tcc_trying == 0) break;
        if (np_now_ms() > until)
            FAIL("not recovered: relay_recovered %llu, outbox %llu, trying %llu",
                 (unsigned long long)s.relay_recovered, (unsigned long long)s.outbox_backlog,
                 (unsigned long long)s.tcc_trying);
        np_sleep_ms(100);
    }
    o = pay1(1, &rr);
    if (o.kind != PAY_KIND_REFUND || o.code != PAY_ERR_CANCELLED || !o.replayed)
        FAIL("the refund's key answers kind %u code %u", o.kind, o.code);
    if (pay1(2, &tr).code != PAY_ERR_CANCELLED) FAIL("the Cancel did not reach cell 2");
    for (int i = 0; i < 2; i++) np_stop(&np[i], SIGTERM);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s %s", dirs[0], dirs[1], routes);
    if (system(cmd) != 0) fprintf(stderr, "could not remove the test's files\n");
    printf("proc_relay_recover: ok\n");
    return 0;
}
