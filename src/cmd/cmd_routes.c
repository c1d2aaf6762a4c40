/* `cellpay admin routes`: the route table file (docs/routing.md, src/gateway/route.h) —
 * show it normalized, create one, change it. Every change is validated as a whole, bumps the
 * version and replaces the file atomically, so a reader never sees half a table.
 *
 * No process reads the table yet: the gateway that will route by it is not built. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "cmd/cmd_args.h"
#include "gateway/route.h"

static const char routes_usage[] =
    "usage: cellpay admin routes show --file PATH [--uid N]\n"
    "       cellpay admin routes init --file PATH --cell C --addrs HOST:PORT[,HOST:PORT...]\n"
    "       cellpay admin routes set --file PATH --cell C [--zones LIST] [--addrs LIST]\n"
    "\n"
    "The route table: which cell serves each of the 100 zones (zone = (uid / 10) mod 100 by\n"
    "default) and each cell's client addresses. It is a text file, one statement a line\n"
    "(docs/routing.md). `cellpay gateway --routes FILE` routes by it and re-reads it when it\n"
    "changes. Nothing replicates it yet (meta): it is a file that these commands keep valid.\n"
    "\n"
    "routes show\n"
    "  Prints the table in its normalized form (cells by number, zone ranges ascending).\n"
    "  With --uid N, prints only the zone of user N and the cell that serves it.\n"
    "\n"
    "routes init\n"
    "  Writes a new table, version 1, giving every zone to --cell C at --addrs. Refuses to\n"
    "  overwrite an existing file.\n"
    "\n"
    "routes set\n"
    "  Changes a table: --addrs sets cell C's client addresses (adding the cell when the table\n"
    "  has none), --zones gives the zones in LIST (e.g. 0-24,50,60-69) to cell C, which must\n"
    "  have addresses. Bumps the version by one, validates the whole table, and replaces the\n"
    "  file atomically (temporary file, fsync, rename, fsync of the directory). The cells\n"
    "  themselves own fixed zones (`cellpay node --zones`): moving a zone's data between\n"
    "  cells is not built, so a change here does not move any account.\n"
    "\n"
    "  --file PATH      the table file (required)\n"
    "  --cell C         a cell's number (its `cellpay node --cell`)\n"
    "  --addrs LIST     the client addresses (--listen) of the cell's replicas, at most 7\n"
    "  --zones LIST     zones and ranges of zones, 0-99\n"
    "  --uid N          show: the user to look up\n";

static int routes_show(const char *path, bool have_uid, uint64_t uid) {
    static rt_table_t t;
    char err[600];
    if (!rt_load(path, &t, err, sizeof err)) {
        fprintf(stderr, "cellpay admin routes: %s\n", err);
        return 1;
    }
    if (have_uid) {
        uint32_t zone = rt_zone(&t, uid);
        const rt_cell_t *c = rt_find_cell(&t, t.zone_cell[zone]);
        printf("uid %" PRIu64 " zone %u cell %" PRIu64 " ", uid, zone, c->id);
        for (uint32_t i = 0; i < c->addr_count; i++) printf("%s%s", i ? "," : "", c->addrs[i]);
        printf(" (table version %" PRIu64 ")\n", t.version);
        return 0;
    }
    static char text[RT_TEXT_MAX];
    size_t n = rt_format(&t, text, sizeof text);
    if (n >= sizeof text || fwrite(text, 1, n, stdout) != n) return 1;
    return 0;
}

static int routes_change(const char *path, bool init, uint64_t cell, const char *addrs,
                         const char *zone_list) {
    static rt_table_t t;
    char err[600];
    cp_zones_t zones = {{0}};
    if (zone_list && !cp_zones_parse(zone_list, strlen(zone_list), &zones, err, sizeof err)) {
        fprintf(stderr, "cellpay admin routes: --zones %s: %s\n", zone_list, err);
        return 2;
    }
    if (init) {
        if (access(path, F_OK) == 0) {
            fprintf(stderr, "cellpay admin routes: %s exists; init writes only new tables\n", path);
            return 1;
        }
        memset(&t, 0, sizeof t);
        t.rule = (cp_zone_rule_t){CP_ZONE_DIVISOR_DEFAULT, CP_ZONE_MODULUS_DEFAULT};
        zones = cp_zones_all();
    } else if (!rt_load(path, &t, err, sizeof err)) {
        fprintf(stderr, "cellpay admin routes: %s\n", err);
        return 1;
    }
    if (addrs && !rt_set_cell(&t, cell, addrs, err, sizeof err)) {
        fprintf(stderr, "cellpay admin routes: --addrs: %s\n", err);
        return 1;
    }
    if (zone_list || init) {
        if (!rt_assign(&t, &zones, cell, err, sizeof err)) {
            fprintf(stderr, "cellpay admin routes: %s\n", err);
            return 1;
        }
    } else if (t.version == UINT64_MAX) {
        fprintf(stderr, "cellpay admin routes: the version cannot grow past 2^64-1\n");
        return 1;
    } else {
        t.version++;
    }
    if (!rt_save(path, &t, err, sizeof err)) {
        fprintf(stderr, "cellpay admin routes: %s\n", err);
        return 1;
    }
    char list[CP_ZONES_TEXT_MAX];
    cp_zones_t owned = rt_cell_zones(&t, cell);
    cp_zones_format(&owned, list, sizeof list);
    printf("%s: version %" PRIu64 ", cell %" PRIu64 " serves zones %s\n", path, t.version, cell,
           owned.bits[0] | owned.bits[1] ? list : "(none)");
    return 0;
}

int cmd_admin_routes(int argc, char **argv) {
    static const char *const subs[] = {"show", "init", "set"};
    int sub = -1;
    for (int k = 0; k < 3 && argc >= 2; k++)
        if (!strcmp(argv[1], subs[k])) sub = k;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(routes_usage, stdout);
        return 0;
    }
    if (sub < 0) {
        fprintf(stderr, "cellpay admin routes: expected `show`, `init` or `set`\n\n%s",
                routes_usage);
        return 2;
    }
    const char *path = NULL, *addrs = NULL, *zones = NULL;
    unsigned long long cell = 0, uid = 0;
    bool have_cell = false, have_uid = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(routes_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--file") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(a, "--cell") && sub != 0) {
            if (!args_u64(argc, argv, &i, RT_CELL_ID_MAX, &cell)) return 2;
            have_cell = true;
        } else if (!strcmp(a, "--addrs") && sub != 0 && i + 1 < argc) {
            addrs = argv[++i];
        } else if (!strcmp(a, "--zones") && sub == 2 && i + 1 < argc) {
            zones = argv[++i];
        } else if (!strcmp(a, "--uid") && sub == 0) {
            if (!args_u64(argc, argv, &i, UINT64_MAX, &uid)) return 2;
            have_uid = true;
        } else {
            fprintf(stderr, "cellpay admin routes: unknown option or missing value \"%s\"\n\n%s", a,
                    routes_usage);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "cellpay admin routes: --file PATH is required\n");
        return 2;
    }
    if (sub == 0) return routes_show(path, have_uid, uid);
    if (!have_cell || (sub == 1 && !addrs) || (sub == 2 && !addrs && !zones)) {
        fprintf(stderr, "cellpay admin routes: %s needs --cell C and %s\n", subs[sub],
                sub == 1 ? "--addrs LIST" : "--zones LIST or --addrs LIST");
        return 2;
    }
    return routes_change(path, sub == 1, cell, addrs, zones);
}
