/* Fault tests of a durable cell on real processes: damaged log and snapshot files, and
 * clients that speak garbage. Each case checks what the node does (recover, or refuse with
 * a clear message) and that nothing else is affected.
 *
 * usage: proc_node_faults CELLPAY_BINARY */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "client/client.h"
#include "ledger/ledger.h"
#include "node_proc.h"
#include "proto/proto.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

static const char *cellpay;
static int passed; /* checks */
static int cases;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            exit(1);                                                                               \
        }                                                                                          \
        passed++;                                                                                  \
    } while (0)

static void remove_dir(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static void make_dir(char *dir, size_t n) {
    snprintf(dir, n, "/tmp/cellpay-faults-XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
}

static client_t *connect_client(const node_proc_t *np) {
    client_t *c = NULL;
    client_options_t o = {.deadline_ms = 5000};
    CHECK(client_open(&c, np->addr, &o) == 0, "client_open");
    return c;
}

static void create_accounts(client_t *c) {
    ledger_account_t a[2] = {{.id = 1, .ledger = 1, .code = 1}, {.id = 2, .ledger = 1, .code = 1}};
    ledger_result_t r[2];
    CHECK(client_call(c, PROTO_OP_CREATE_ACCOUNTS, a, sizeof a, r, sizeof r, NULL, NULL) == 0,
          "create_accounts");
    CHECK(r[0].result == 0 && r[1].result == 0, "accounts created");
}

/* One batch per call: transfers [first, first + n) of 1 unit from account 1 to 2. */
static void transfer(client_t *c, uint32_t first, uint32_t n) {
    ledger_transfer_t t[64];
    ledger_result_t r[64];
    for (uint32_t i = 0; i < n; i++)
        t[i] = (ledger_transfer_t){.id = first + i,
                                   .debit_account_id = 1,
                                   .credit_account_id = 2,
                                   .amount = 1,
                                   .ledger = 1,
                                   .code = 1};
    CHECK(client_call(c, PROTO_OP_CREATE_TRANSFERS, t, n * 128, r, sizeof r, NULL, NULL) == 0,
          "create_transfers");
    for (uint32_t i = 0; i < n; i++) CHECK(r[i].result == 0, "transfer %u created", first + i);
}

static u128 credits_of_2(client_t *c) {
    u128 id = 2;
    ledger_account_t a;
    uint32_t size = 0;
    CHECK(client_call(c, PROTO_OP_LOOKUP_ACCOUNTS, &id, 16, &a, sizeof a, &size, NULL) == 0 &&
              size == 128,
          "lookup");
    return a.credits_posted;
}

/* A node with accounts and `batches` batches of 10 transfers, stopped cleanly. */
static void populate(const char *dir, uint32_t batches, const char *const *extra) {
    node_proc_t np;
    CHECK(np_start(&np, cellpay, dir, 0, extra), "start");
    client_t *c = connect_client(&np);
    create_accounts(c);
    for (uint32_t b = 0; b < batches; b++) transfer(c, 1 + b * 10, 10);
    client_close(c);
    int st = np_stop(&np, SIGTERM);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "clean stop");
}

/* The newest segment file of the log. */
static void last_segment(const char *dir, char *path, size_t n) {
    char wal[512];
    snprintf(wal, sizeof wal, "%s/wal", dir);
    DIR *d = opendir(wal);
    CHECK(d != NULL, "open %s", wal);
    char best[256] = "";
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "wal-", 4) && strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof best, "%s", e->d_name);
    closedir(d);
    CHECK(best[0], "a segment exists");
    snprintf(path, n, "%s/%s", wal, best);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void flip_byte(const char *path, long off) {
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0, "open %s", path);
    unsigned char b;
    CHECK(pread(fd, &b, 1, off) == 1, "read");
    b ^= 0x5a;
    CHECK(pwrite(fd, &b, 1, off) == 1, "write");
    close(fd);
}

/* Restarts the node and returns account 2's credits, or fails. */
static u128 restart_and_read(const char *dir) {
    node_proc_t np;
    CHECK(np_start(&np, cellpay, dir, 0, NULL), "restart");
    client_t *c = connect_client(&np);
    u128 v = credits_of_2(c);
    client_close(c);
    np_stop(&np, SIGTERM);
    return v;
}

static void test_torn_tail(void) {
    char dir[64], seg[600];
    make_dir(dir, sizeof dir);
    populate(dir, 5, NULL);
    last_segment(dir, seg, sizeof seg);
    long size = file_size(seg);
    CHECK(truncate(seg, size - 7) == 0, "truncate");
    /* The last entry (batch 5) is torn away: the node recovers to batch 4. */
    CHECK(restart_and_read(dir) == 40, "recovered to the last whole entry after a torn tail");
    printf("ok: torn tail truncated, node recovered\n");
    remove_dir(dir);
    cases++;
}

static void test_flipped_last_entry(void) {
    char dir[64], seg[600];
    make_dir(dir, sizeof dir);
    populate(dir, 5, NULL);
    last_segment(dir, seg, sizeof seg);
    flip_byte(seg, file_size(seg) - 100); /* inside the last entry's body */
    CHECK(restart_and_read(dir) == 40, "a damaged last entry is a torn tail");
    printf("ok: damaged last entry treated as torn tail\n");
    remove_dir(dir);
    cases++;
}

static void test_flipped_middle_entry(void) {
    char dir[64], seg[600], err[4096];
    make_dir(dir, sizeof dir);
    populate(dir, 5, NULL);
    last_segment(dir, seg, sizeof seg);
    flip_byte(seg, 200); /* inside an early entry, with valid entries after it */
    int rc = np_run_failing(cellpay, dir, err, sizeof err);
    CHECK(rc != 0, "a node with a corrupt middle entry must refuse to start (rc %d)", rc);
    CHECK(strstr(err, "index") != NULL, "the message names the entry: %s", err);
    printf("ok: corrupt middle entry refused: %s", err);
    remove_dir(dir);
    cases++;
}

static void test_truncated_snapshot(void) {
    char dir[64], err[4096];
    make_dir(dir, sizeof dir);
    const char *extra[] = {"--snapshot-mib", "1", NULL};
    /* 1 MiB of log in batches of 10 transfers (1280 bytes + headers): about 700 batches. */
    populate(dir, 900, extra);
    DIR *d = opendir(dir);
    char snap[300] = "";
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".snap") && strcmp(e->d_name, snap) > 0)
            snprintf(snap, sizeof snap, "%s", e->d_name);
    closedir(d);
    CHECK(snap[0], "a snapshot was written");
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, snap);
    CHECK(truncate(path, file_size(path) / 2) == 0, "truncate snapshot");
    /* The log still holds everything after the previous snapshot (here: everything). */
    CHECK(restart_and_read(dir) == 9000, "state recovered without the damaged snapshot");
    (void)err;
    printf("ok: truncated snapshot skipped, state rebuilt from the log\n");
    remove_dir(dir);
    cases++;
}

/* ---- Protocol abuse: the node closes the bad connection and serves everyone else. ---- */

static int raw_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect");
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Sends bytes and expects the node to close the connection without a reply. */
static void expect_closed(int port, const void *bytes, size_t n, const char *what) {
    int fd = raw_connect(port);
    CHECK(write(fd, bytes, n) == (ssize_t)n, "send %s", what);
    char buf[256];
    ssize_t r = read(fd, buf, sizeof buf);
    CHECK(r == 0, "%s: connection closed without a reply (read %zd)", what, r);
    close(fd);
}

/* Recomputes only the header checksum, to send a header that is whole but wrong. */
static void reseal_header(proto_header_t *h) {
    XXH128_hash_t x = XXH3_128bits((const unsigned char *)h + 16, PROTO_HEADER_SIZE - 16);
    h->checksum = ((u128)x.high64 << 64) | x.low64;
}

static proto_header_t request(uint8_t op, const void *body, uint32_t size) {
    proto_header_t h = {
        .client_id = 77, .request_id = 1, .operation = op, .command = PROTO_REQUEST};
    proto_seal(&h, body, size);
    return h;
}

static void test_protocol_abuse(void) {
    char dir[64];
    make_dir(dir, sizeof dir);
    node_proc_t np;
    CHECK(np_start(&np, cellpay, dir, 0, NULL), "start");
    client_t *good = connect_client(&np);
    create_accounts(good);
    transfer(good, 1, 10);

    char garbage[512];
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (char)(i * 37 + 11);
    expect_closed(np.port, garbage, sizeof garbage, "garbage");
    char http[PROTO_HEADER_SIZE];
    memset(http, ' ', sizeof http);
    memcpy(http, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    expect_closed(np.port, http, sizeof http, "HTTP");

    /* Oversized: a header that is whole and checksummed but announces more than 1 MiB. */
    proto_header_t h = request(PROTO_OP_PING, NULL, 0);
    h.size = PROTO_MESSAGE_MAX + 128;
    reseal_header(&h);
    expect_closed(np.port, &h, sizeof h, "oversized");
    unsigned char msg[PROTO_HEADER_SIZE + 128];
    memset(msg, 0, sizeof msg);

    /* A bad header checksum. */
    h = request(PROTO_OP_PING, NULL, 0);
    h.request_id = 2; /* changed after sealing */
    expect_closed(np.port, &h, sizeof h, "bad header checksum");

    /* A bad body checksum. */
    u128 id = 1;
    h = request(PROTO_OP_LOOKUP_ACCOUNTS, &id, 16);
    memcpy(msg, &h, sizeof h);
    u128 other = 2;
    memcpy(msg + sizeof h, &other, 16);
    expect_closed(np.port, msg, sizeof h + 16, "bad body checksum");

    /* A body that is not whole items. */
    unsigned char body[24] = {0};
    h = request(PROTO_OP_LOOKUP_ACCOUNTS, body, 24);
    memcpy(msg, &h, sizeof h);
    memcpy(msg + sizeof h, body, 24);
    expect_closed(np.port, msg, sizeof h + 24, "partial item");

    /* A wrong version, correctly checksummed. */
    h = request(PROTO_OP_PING, NULL, 0);
    h.version = 9;
    reseal_header(&h);
    expect_closed(np.port, &h, sizeof h, "wrong version");

    /* Reserved bytes set. */
    h = request(PROTO_OP_PING, NULL, 0);
    h.reserved[3] = 1;
    reseal_header(&h);
    expect_closed(np.port, &h, sizeof h, "reserved bytes");

    /* Half a message, then the client goes away: nothing happens to anyone else. */
    h = request(PROTO_OP_LOOKUP_ACCOUNTS, &id, 16);
    int fd = raw_connect(np.port);
    CHECK(write(fd, &h, 100) == 100, "partial send");
    close(fd);

    /* A whole, valid ping on a raw socket is answered. */
    h = request(PROTO_OP_PING, NULL, 0);
    fd = raw_connect(np.port);
    CHECK(write(fd, &h, sizeof h) == (ssize_t)sizeof h, "ping");
    proto_header_t rep;
    CHECK(read(fd, &rep, sizeof rep) == (ssize_t)sizeof rep, "ping reply");
    uint32_t size = 0;
    CHECK(proto_check_header(&rep, sizeof rep, &size) == PROTO_OK && rep.command == PROTO_REPLY &&
              rep.request_id == 1,
          "ping answered");
    close(fd);

    /* The good client was never disturbed. */
    transfer(good, 11, 10);
    CHECK(credits_of_2(good) == 20, "the well-behaved client's work all applied");
    client_close(good);
    int st = np_stop(&np, SIGTERM);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "node still stops cleanly");
    printf("ok: protocol abuse closed only the bad connections\n");
    remove_dir(dir);
    cases++;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    cellpay = argv[1];
    test_torn_tail();
    test_flipped_last_entry();
    test_flipped_middle_entry();
    test_truncated_snapshot();
    test_protocol_abuse();
    printf("%d checks held\n", passed);
    printf("node faults: %d passed, 0 failed\n", cases);
    return 0;
}
