/* The cells of `cellpay start` (start_cells.h): the data directory's layout, one node per
 * cell on its own thread, and the route table that names them. */
#include "cmd/start_cells.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/constants.h"
#include "client/client.h"
#include "proto/proto.h"

#define LEAD_WAIT_MS 10000u /* a one-voter cell elects itself within one election timeout */
#define LEAD_POLL_MS 20u

cp_zones_t start_cells_zones(uint32_t i, uint32_t count) {
    cp_assert(i >= 1 && i <= count && count <= START_CELLS_MAX);
    cp_zones_t z = {0};
    for (uint32_t zone = CP_ZONES * (i - 1) / count; zone < CP_ZONES * i / count; zone++)
        cp_zones_add(&z, zone);
    return z;
}

static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Writes start.conf whole or not at all (temp file, fsync, rename, directory fsync): a crash
 * must not leave a directory whose number of cells is unknown. */
static int start_conf_write(const char *dir, const char *path, uint32_t count, char *err,
                            size_t err_size) {
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    bool ok = f && fprintf(f, "cells=%u\n", count) > 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (f) ok = fclose(f) == 0 && ok;
    ok = ok && rename(tmp, path) == 0 && fsync_dir(dir) == 0;
    if (!ok) snprintf(err, err_size, "cannot write %s: %s", path, strerror(errno));
    return ok ? 0 : -1;
}

/* Reads DIR/start.conf, or writes it on first start; refuses another number of cells. */
static int start_conf(const char *dir, uint32_t count, char *err, size_t err_size) {
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/start.conf", dir) >= sizeof path) {
        snprintf(err, err_size, "the data directory's path is too long");
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (!f && errno != ENOENT) {
        snprintf(err, err_size, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    if (!f) return start_conf_write(dir, path, count, err, err_size);
    unsigned stored = 0;
    char nl = 0;
    int got = fscanf(f, "cells=%u%c", &stored, &nl);
    fclose(f);
    if (got != 2 || nl != '\n' || stored < 1 || stored > START_CELLS_MAX) {
        snprintf(err, err_size, "%s is damaged: it must say cells=N with N in 1..%u", path,
                 START_CELLS_MAX);
        return -1;
    }
    if (stored != count) {
        snprintf(err, err_size,
                 "%s was created with --cells %u; it cannot start with --cells %u: the zones of "
                 "a cell are fixed for its life (start with --cells %u, or another --data "
                 "directory)",
                 dir, stored, count, stored);
        return -1;
    }
    return 0;
}

static int start_one(start_cells_t *s, const char *dir, uint32_t i, uint32_t count, char *err,
                     size_t err_size) {
    start_cell_t *c = &s->cells[i - 1];
    if ((size_t)snprintf(c->dir, sizeof c->dir, "%s/cell-%u", dir, i) >= sizeof c->dir) {
        snprintf(err, err_size, "the data directory's path is too long");
        return -1;
    }
    snprintf(c->name, sizeof c->name, "cellpay node cell %u", i);
    node_config_t cfg = {
        .name = c->name,
        .data_dir = c->dir,
        .listen = "127.0.0.1:0",
        .cell_id = i,
        .tick_ms = 10,
        .election_ticks = 15,
        .heartbeat_ticks = 3,
        .cell.ledger = {.accounts_max = CP_LEDGER_ACCOUNTS_DEFAULT,
                        .transfers_max = CP_LEDGER_TRANSFERS_DEFAULT},
        .cell.zones = start_cells_zones(i, count),
        .zones_given = true, /* cell.conf keeps them; a later start checks them */
        .snapshot_log_bytes = 64ull << 20,
        .routes_path = s->routes_path,
    };
    char why[256];
    c->node = node_start(&cfg, why, sizeof why);
    if (!c->node) snprintf(err, err_size, "cell %u cannot start: %s", i, why);
    return c->node ? 0 : -1;
}

static bool start_routes(start_cells_t *s, char *err, size_t err_size) {
    rt_table_t *t = &s->routes;
    *t = (rt_table_t){.version = 1, .rule = cp_zone_rule_effective(NULL)};
    for (uint32_t i = 1; i <= s->count; i++) {
        char addr[RT_ADDR_SIZE];
        snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)node_port(s->cells[i - 1].node));
        if (!rt_set_cell(t, i, addr, err, err_size)) return false;
        cp_zones_t z = start_cells_zones(i, s->count);
        for (uint32_t zone = 0; zone < CP_ZONES; zone++)
            if (cp_zones_has(&z, zone)) t->zone_cell[zone] = i;
    }
    t->version = 1;
    return rt_validate(t, err, err_size);
}

static bool cell_leads(const start_cells_t *s, uint32_t i) {
    char addr[RT_ADDR_SIZE];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)node_port(s->cells[i - 1].node));
    proto_status_reply_t st;
    uint32_t size = 0;
    int32_t rc = client_call_once(addr, PROTO_OP_STATUS, NULL, 0, &st, sizeof st, &size, 1000);
    return rc == PROTO_STATUS_OK && size == sizeof st && st.role == PROTO_ROLE_LEADER;
}

/* A one-voter cell elects itself an election timeout after it starts; until then it answers
 * not_leader. Waiting here makes "started" mean "serving". A cell that is slow to lead (a
 * stalled disk) is reported and served anyway: clients retry not_leader. */
static void start_wait_leaders(const start_cells_t *s) {
    struct timespec pause = {.tv_nsec = LEAD_POLL_MS * 1000000l};
    for (uint32_t i = 1; i <= s->count; i++) {
        uint32_t waited = 0;
        while (!cell_leads(s, i) && waited < LEAD_WAIT_MS) {
            nanosleep(&pause, NULL);
            waited += LEAD_POLL_MS;
        }
        if (waited >= LEAD_WAIT_MS)
            fprintf(stderr, "cellpay start: cell %u does not lead yet after %u ms; going on\n", i,
                    LEAD_WAIT_MS);
    }
}

/* Every cell keeps one fdatasync in flight on libuv's thread pool, which all the loops of a
 * process share (4 threads by default): with more cells than threads their syncs would wait
 * for each other. The size is read when the pool first starts, so this runs before any cell
 * does (and while this is the only thread: setenv is not thread-safe). */
static void start_threadpool(uint32_t count) {
    char size[16];
    snprintf(size, sizeof size, "%u", count + 4);
    setenv("UV_THREADPOOL_SIZE", size, 0); /* one the operator set wins */
}

start_cells_t *start_cells_open(const char *dir, uint32_t count, char *err, size_t err_size) {
    cp_assert(count >= 1 && count <= START_CELLS_MAX);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_size, "cannot create %s: %s", dir, strerror(errno));
        return NULL;
    }
    if (start_conf(dir, count, err, err_size) != 0) return NULL;
    start_cells_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    snprintf(s->admin_key_path, sizeof s->admin_key_path, "%s/admin.key", dir);
    if (auth_admin_key(dir, s->admin_key, err, err_size) != 0) {
        free(s);
        return NULL;
    }
    /* The last run's table names its ports: gone before any relay could read it. */
    snprintf(s->routes_path, sizeof s->routes_path, "%s/routes", dir);
    if (unlink(s->routes_path) != 0 && errno != ENOENT) {
        snprintf(err, err_size, "cannot remove %s: %s", s->routes_path, strerror(errno));
        free(s);
        return NULL;
    }
    start_threadpool(count);
    for (uint32_t i = 1; i <= count; i++) {
        if (start_one(s, dir, i, count, err, err_size) != 0) {
            start_cells_close(s);
            return NULL;
        }
        s->count = i;
    }
    if (!start_routes(s, err, err_size) || !rt_save(s->routes_path, &s->routes, err, err_size)) {
        start_cells_close(s);
        return NULL;
    }
    start_wait_leaders(s);
    return s;
}

int start_cells_close(start_cells_t *s) {
    int rc = 0;
    for (uint32_t i = s->count; i >= 1; i--)
        if (node_stop(s->cells[i - 1].node) != 0) rc = 1;
    free(s);
    return rc;
}
