/* Two cells of one replica each on real processes, for the relay's process tests: `cellpay
 * node --cell 1 --zones 0-49` and `--cell 2 --zones 50-99`, both with a route table naming
 * both (so their relays find each other) and `--tcc-recover-after 1`; a merchant in cell 2, a
 * buyer with 1000 CNY in cell 1; one request at a time to either cell. A test is one program:
 * this header's state is its own. */
#ifndef CP_TWO_CELLS_PROC_H
#define CP_TWO_CELLS_PROC_H

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
static char routes[64];

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

/* Writes the route table and starts both cells; name goes into the temporary paths. */
static void two_cells_start(const char *cellpay, const char *name) {
    static const char *zones[2] = {"0-49", "50-99"};
    snprintf(routes, sizeof routes, "/tmp/cellpay-%s-routes-XXXXXX", name);
    int fd = mkstemp(routes);
    if (fd < 0) FAIL("mkstemp");
    int ports[2] = {np_free_port(), np_free_port()};
    dprintf(fd,
            "version 1\nrule 10 100\ncell 1 127.0.0.1:%d\ncell 2 127.0.0.1:%d\n"
            "zones 0-49 -> 1\nzones 50-99 -> 2\n",
            ports[0], ports[1]);
    close(fd);
    for (int i = 0; i < 2; i++) {
        snprintf(dirs[i], sizeof dirs[i], "/tmp/cellpay-%s-XXXXXX", name);
        if (!mkdtemp(dirs[i])) FAIL("mkdtemp");
        const char *extra[] = {"--cell", i ? "2" : "1",         "--zones", zones[i], "--routes",
                               routes,   "--tcc-recover-after", "1",       NULL};
        if (!np_start(&np[i], cellpay, dirs[i], ports[i], extra))
            FAIL("cell %d did not start", i + 1);
        wait_leader(i + 1);
    }
}

/* The merchant in cell 2, the buyer in cell 1 with 1000 CNY. */
static void two_cells_parties(void) {
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

static void two_cells_stop(void) {
    for (int i = 0; i < 2; i++) np_stop(&np[i], SIGTERM);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s %s", dirs[0], dirs[1], routes);
    if (system(cmd) != 0) fprintf(stderr, "could not remove the test's files\n");
}

#endif
