/* `cellpay admin check`: the books of every cell of a route table, added up. Per cell and per
 * ledger (a currency), the accounts' posted debits must equal their posted credits, and the
 * pending ones likewise: every transfer debits one account and credits another of the same
 * ledger by the same amount. The accounts are read through the client library (the leader
 * answers) with query_accounts, page by page, so the sums are those of one consistent moment
 * only when the cells are idle: run it when no request is in flight. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/constants.h"
#include "base/u128.h"
#include "cell/pay.h"
#include "client/client.h"
#include "cmd/cmd.h"
#include "cmd/cmd_args.h"
#include "gateway/route.h"
#include "ledger/ledger.h"

#define CHECK_LEDGERS_MAX 256u /* distinct ledgers (currencies) one run adds up */
#define CHECK_PAGE CP_QUERY_LIMIT_MAX

static const char check_usage[] =
    "usage: cellpay admin check (--routes FILE | --data DIR) [--timeout-ms N]\n"
    "\n"
    "Adds up the books of every cell named by the route table FILE (or by DIR/routes, which\n"
    "`cellpay start --data DIR` writes for the cells of its current run): per cell and per\n"
    "ledger, the accounts' posted debits must equal their posted credits, and the pending ones\n"
    "likewise. Prints one line per cell and ledger, then one per ledger over all cells, and\n"
    "exits 1 when any sum differs (the line says MISMATCH and by how much) or a cell cannot be\n"
    "read. The accounts are read page by page while the cells go on serving, so run it when\n"
    "no request is in flight: only then are the sums those of one moment.\n"
    "\n"
    "  --routes FILE    a route table (docs/routing.md)\n"
    "  --data DIR       the data directory of `cellpay start` (reads DIR/routes)\n"
    "  --timeout-ms N   how long to wait for each cell's answer (default 10000)\n";

typedef struct sums {
    uint32_t ledger;
    uint64_t accounts;
    u128 debits_posted, credits_posted, debits_pending, credits_pending;
    bool overflow;
} sums_t;

typedef struct book {
    sums_t s[CHECK_LEDGERS_MAX];
    uint32_t n;
} book_t;

static sums_t *book_ledger(book_t *b, uint32_t ledger) {
    for (uint32_t i = 0; i < b->n; i++)
        if (b->s[i].ledger == ledger) return &b->s[i];
    if (b->n == CHECK_LEDGERS_MAX) return NULL;
    b->s[b->n] = (sums_t){.ledger = ledger};
    return &b->s[b->n++];
}

static void add(u128 *sum, u128 v, bool *overflow) {
    if (!u128_add_checked(*sum, v, sum)) *overflow = true;
}

static bool book_add(book_t *b, const ledger_account_t *a) {
    sums_t *s = book_ledger(b, a->ledger);
    if (!s) return false;
    s->accounts++;
    add(&s->debits_posted, a->debits_posted, &s->overflow);
    add(&s->credits_posted, a->credits_posted, &s->overflow);
    add(&s->debits_pending, a->debits_pending, &s->overflow);
    add(&s->credits_pending, a->credits_pending, &s->overflow);
    return true;
}

static void book_merge(book_t *into, const book_t *from) {
    for (uint32_t i = 0; i < from->n; i++) {
        const sums_t *f = &from->s[i];
        sums_t *s = book_ledger(into, f->ledger);
        if (!s) continue; /* reported when the cell's own book overflowed the same way */
        s->accounts += f->accounts;
        s->overflow |= f->overflow;
        add(&s->debits_posted, f->debits_posted, &s->overflow);
        add(&s->credits_posted, f->credits_posted, &s->overflow);
        add(&s->debits_pending, f->debits_pending, &s->overflow);
        add(&s->credits_pending, f->credits_pending, &s->overflow);
    }
}

/* A ledger number as the API writes it: the currency's letters when it is one. */
static void ledger_name(uint32_t ledger, char out[16]) {
    char c[4];
    pay_currency_unpack(ledger, c);
    if (pay_currency_pack(c) == ledger)
        snprintf(out, 16, "%s", c);
    else
        snprintf(out, 16, "%" PRIu32, ledger);
}

/* "X - Y" as text, signed: how far debits are above credits. */
static void difference(u128 debits, u128 credits, char out[48]) {
    bool neg = credits > debits;
    char num[40];
    num[u128_format(neg ? credits - debits : debits - credits, num)] = '\0';
    snprintf(out, 48, "%s%s", neg ? "-" : "+", num);
}

/* Prints the book's lines; returns the number of ledgers whose sums differ. */
static uint32_t book_print(const book_t *b, const char *who) {
    uint32_t bad = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        const sums_t *s = &b->s[i];
        char name[16], dp[40], cp[40], dq[40], cq[40];
        ledger_name(s->ledger, name);
        dp[u128_format(s->debits_posted, dp)] = '\0';
        cp[u128_format(s->credits_posted, cp)] = '\0';
        dq[u128_format(s->debits_pending, dq)] = '\0';
        cq[u128_format(s->credits_pending, cq)] = '\0';
        bool ok = !s->overflow && s->debits_posted == s->credits_posted &&
                  s->debits_pending == s->credits_pending;
        printf("%s ledger %s: accounts=%" PRIu64 " debits_posted=%s credits_posted=%s "
               "debits_pending=%s credits_pending=%s %s",
               who, name, s->accounts, dp, cp, dq, cq, ok ? "ok" : "MISMATCH");
        if (s->overflow) printf(" (a sum overflowed 128 bits)");
        if (!ok && !s->overflow) {
            char d1[48], d2[48];
            difference(s->debits_posted, s->credits_posted, d1);
            difference(s->debits_pending, s->credits_pending, d2);
            printf(" (posted debits - credits = %s, pending = %s)", d1, d2);
        }
        printf("\n");
        bad += !ok;
    }
    return bad;
}

/* Reads every account of the cell into b; 0, or -1 with the reason on stderr. */
static int cell_read_book(const rt_cell_t *cell, uint32_t timeout_ms, book_t *b,
                          ledger_account_t *page) {
    char addrs[RT_REPLICAS_MAX * RT_ADDR_SIZE];
    rt_cell_addresses(cell, addrs, sizeof addrs);
    client_options_t o = {.deadline_ms = timeout_ms};
    client_t *c = NULL;
    int rc = client_open(&c, addrs, &o);
    if (rc != 0) {
        fprintf(stderr, "cellpay admin check: cell %" PRIu64 " (%s): %s\n", cell->id, addrs,
                client_status_str(rc));
        return -1;
    }
    ledger_query_filter_t f = {.limit = CHECK_PAGE, .timestamp_max = CP_TIMESTAMP_MAX};
    for (;;) {
        uint32_t size = 0;
        int32_t st = client_call(c, PROTO_OP_QUERY_ACCOUNTS, &f, sizeof f, page,
                                 CHECK_PAGE * (uint32_t)sizeof *page, &size, NULL);
        if (st != 0) {
            fprintf(stderr, "cellpay admin check: cell %" PRIu64 " (%s): %s\n", cell->id, addrs,
                    client_status_str(st));
            client_close(c);
            return -1;
        }
        uint32_t n = size / (uint32_t)sizeof *page;
        for (uint32_t i = 0; i < n; i++) {
            if (!book_add(b, &page[i])) {
                fprintf(stderr, "cellpay admin check: more than %u ledgers\n", CHECK_LEDGERS_MAX);
                client_close(c);
                return -1;
            }
        }
        if (n < CHECK_PAGE) break;
        f.timestamp_min = page[n - 1].timestamp + 1; /* accounts are in timestamp order */
    }
    client_close(c);
    return 0;
}

static int check_run(const rt_table_t *t, uint32_t timeout_ms) {
    ledger_account_t *page = calloc(CHECK_PAGE, sizeof *page);
    book_t *cell_book = calloc(1, sizeof *cell_book), *all = calloc(1, sizeof *all);
    if (!page || !cell_book || !all) {
        fprintf(stderr, "cellpay admin check: out of memory\n");
        free(page), free(cell_book), free(all);
        return 1;
    }
    uint32_t bad = 0, unreadable = 0;
    for (uint32_t i = 0; i < t->cell_count; i++) {
        memset(cell_book, 0, sizeof *cell_book);
        if (cell_read_book(&t->cells[i], timeout_ms, cell_book, page) != 0) {
            unreadable++;
            continue;
        }
        char who[32];
        snprintf(who, sizeof who, "cell %" PRIu64, t->cells[i].id);
        if (cell_book->n == 0) printf("%s: no accounts\n", who);
        bad += book_print(cell_book, who);
        book_merge(all, cell_book);
    }
    bad += book_print(all, "all cells");
    printf("check: %u cells, %u unreadable, %u ledger sums that differ\n", t->cell_count,
           unreadable, bad);
    free(page), free(cell_book), free(all);
    return bad || unreadable ? 1 : 0;
}

int cmd_admin_check(int argc, char **argv) {
    const char *routes = NULL, *data = NULL;
    uint32_t timeout_ms = 10000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(check_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--routes") && i + 1 < argc) {
            routes = argv[++i];
        } else if (!strcmp(a, "--data") && i + 1 < argc) {
            data = argv[++i];
        } else if (!strcmp(a, "--timeout-ms")) {
            ok = args_u32(argc, argv, &i, 1, 3600000, &timeout_ms);
        } else {
            fprintf(stderr, "cellpay admin check: bad option \"%s\"\n\n%s", a, check_usage);
            return 2;
        }
        if (!ok) return 2;
    }
    if (!routes == !data) {
        fprintf(stderr, "cellpay admin check: give --routes FILE or --data DIR\n\n%s", check_usage);
        return 2;
    }
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s%s", routes ? routes : data, routes ? "" : "/routes");
    rt_table_t *t = malloc(sizeof *t);
    if (!t) return 1;
    if (!rt_load(path, t, err, sizeof err)) {
        fprintf(stderr, "cellpay admin check: %s\n", err);
        free(t);
        return 1;
    }
    int rc = check_run(t, timeout_ms);
    free(t);
    return rc;
}
