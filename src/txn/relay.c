/* The relay's driver (relay.h): the node's timer ticks the core (relay_core.h), which decides
 * what to send; this part sends it through the client library, to a merchants' cell or to the
 * own cell (acknowledgements), brings the answers back to the core, keeps the route table
 * file read and logs. */
#include "txn/relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "base/assert.h"
#include "client/client.h"
#include "gateway/route.h"

#define RELAY_ROUTES_TICKS 50u /* ticks between looks at the route table file */
#define RELAY_DEADLINE_MS 5000u
#define RELAY_ADDRS_SIZE (RT_REPLICAS_MAX * RT_ADDR_SIZE)

typedef struct relay_peer {
    uint64_t id;
    char addrs[RELAY_ADDRS_SIZE];
    client_t *client; /* opened when first needed; NULL after a route change */
    bool unreachable; /* logged as having no client; logged again once it has one */
} relay_peer_t;

/* A client callback's context: which batch of which relay. */
typedef struct relay_slot {
    relay_t *relay;
    uint32_t batch;
} relay_slot_t;

struct relay {
    relay_config_t cfg;
    relay_core_t *core;
    rt_table_t routes;
    bool routes_ok;
    struct stat routes_stat;
    relay_peer_t peers[RT_CELLS_MAX]; /* by first sight */
    uint32_t peer_count;
    relay_slot_t slots[RELAY_CORE_BATCHES];
    relay_msg_t msgs[RELAY_CORE_BATCHES];
    uint64_t ticks;
    bool closing;
};

static void relay_log(const relay_t *r, const char *what, uint64_t cell, const char *why) {
    fprintf(stderr, "%s: relay: %s cell %llu%s%s\n", r->cfg.name, what, (unsigned long long)cell,
            why ? ": " : "", why ? why : "");
}

/* The core's log: why from the client's status when the core gives none. */
static void core_logged(void *ctx, const char *what, uint64_t cell, int32_t status,
                        const char *why) {
    relay_log(ctx, what, cell, why ? why : status ? client_status_str(status) : NULL);
}

relay_t *relay_create(const relay_config_t *config) {
    relay_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->cfg = *config;
    r->core = relay_core_create(&(relay_core_config_t){.cell_id = config->cell_id,
                                                       .fault_pct = config->fault_pct,
                                                       .fault_seed = config->fault_seed,
                                                       .recover_after_ns = config->recover_after_ns,
                                                       .log = core_logged,
                                                       .log_ctx = r});
    if (!r->core) {
        free(r);
        return NULL;
    }
    for (uint32_t i = 0; i < RELAY_CORE_BATCHES; i++) r->slots[i] = (relay_slot_t){r, i};
    return r;
}

relay_stats_t relay_stats(const relay_t *r) {
    return relay_core_stats(r->core);
}

/* ---- Cells and their clients ---- */

static relay_peer_t *peer_of(relay_t *r, uint64_t id) {
    for (uint32_t i = 0; i < r->peer_count; i++)
        if (r->peers[i].id == id) return &r->peers[i];
    if (r->peer_count == RT_CELLS_MAX) return NULL;
    relay_peer_t *p = &r->peers[r->peer_count++];
    *p = (relay_peer_t){.id = id};
    return p;
}

static void peers_disconnect(relay_t *r) {
    for (uint32_t i = 0; i < r->peer_count; i++) {
        client_t *c = r->peers[i].client;
        r->peers[i].client = NULL; /* before the close answers its batches */
        if (c) client_close(c);
    }
}

/* The client of cell id by the current table; NULL (logged once) when it cannot have one. */
static client_t *peer_client(relay_t *r, uint64_t id) {
    relay_peer_t *p = peer_of(r, id);
    if (!p) return NULL;
    if (p->client) return p->client;
    const rt_cell_t *rc = rt_find_cell(&r->routes, p->id);
    if (!rc) {
        if (!p->unreachable) relay_log(r, "the route table does not name", p->id, NULL);
        p->unreachable = true;
        return NULL;
    }
    rt_cell_addresses(rc, p->addrs, sizeof p->addrs);
    client_options_t o = {.sessions = 1,
                          .requests_max = RELAY_CORE_BATCHES * 2,
                          .deadline_ms = RELAY_DEADLINE_MS,
                          .cell = p->id,
                          .loop = r->cfg.loop};
    int rc_open = client_open(&p->client, p->addrs, &o);
    if (rc_open != 0) {
        if (!p->unreachable)
            relay_log(r, "cannot open a client of", p->id, client_status_str(rc_open));
        p->unreachable = true;
        p->client = NULL;
    }
    if (p->client) p->unreachable = false;
    return p->client;
}

/* Reads the table again when its file changed. Clients are reopened from the new table. */
static void routes_reload(relay_t *r) {
    struct stat st;
    if (stat(r->cfg.routes_path, &st) != 0) return; /* not written yet: keep what we have */
    if (r->routes_ok && st.st_mtim.tv_sec == r->routes_stat.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == r->routes_stat.st_mtim.tv_nsec &&
        st.st_ino == r->routes_stat.st_ino && st.st_size == r->routes_stat.st_size)
        return;
    char err[256];
    rt_table_t *t = malloc(sizeof *t);
    if (!t) return;
    if (!rt_load(r->cfg.routes_path, t, err, sizeof err)) {
        fprintf(stderr, "%s: relay: %s (keeping the table it has)\n", r->cfg.name, err);
    } else if (!r->routes_ok || !rt_equal(t, &r->routes)) {
        peers_disconnect(r);
        r->routes = *t;
        r->routes_ok = true;
    }
    r->routes_stat = st;
    free(t);
}

/* ---- Messages ---- */

static void on_answer(void *ctx, int32_t status, uint64_t ts, const void *reply, uint32_t size);

static void msg_send(relay_t *r, const relay_msg_t *m) {
    client_t *c = peer_client(r, m->cell);
    if (!c || client_submit(c, PROTO_OP_PAY, m->items, m->count * (uint32_t)sizeof m->items[0],
                            on_answer, &r->slots[m->batch]) != 0)
        relay_core_unsent(r->core, m->batch, c ? "the client refused the batch" : NULL);
}

/* A cell answered a batch (credits or acknowledgements); the core may have acknowledgements
 * to send next. While closing, the answers ("closed") are dropped with the core. */
static void on_answer(void *ctx, int32_t status, uint64_t ts, const void *reply, uint32_t size) {
    (void)ts;
    relay_slot_t *slot = ctx;
    relay_t *r = slot->relay;
    if (r->closing) return;
    uint32_t n = size % sizeof(pay_object_t) ? UINT32_MAX : size / (uint32_t)sizeof(pay_object_t);
    relay_msg_t follow;
    if (relay_core_answer(r->core, slot->batch, status, reply, n, &follow)) msg_send(r, &follow);
}

void relay_tick(relay_t *r, uint64_t now, bool leader, const pay_t *pay) {
    r->ticks++;
    if (r->closing) return;
    if (leader && (!r->routes_ok || r->ticks % RELAY_ROUTES_TICKS == 0)) routes_reload(r);
    uint32_t n = relay_core_tick(r->core, r->ticks, now, leader, r->routes_ok ? pay : NULL, r->msgs,
                                 RELAY_CORE_BATCHES);
    for (uint32_t i = 0; i < n; i++) msg_send(r, &r->msgs[i]);
}

void relay_close(relay_t *r) {
    if (!r) return;
    r->closing = true;
    peers_disconnect(r); /* batches in flight are answered "closed" and let go */
    relay_core_destroy(r->core);
    free(r);
}
