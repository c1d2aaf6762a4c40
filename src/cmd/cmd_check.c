/* `cellpay admin check`: the books of every cell of a route table, added up. Per cell and per
 * ledger (a currency), the accounts' posted debits must equal their posted credits, and the
 * pending ones likewise: every transfer debits one account and credits another of the same
 * ledger by the same amount. The accounts are read through the client library (the leader
 * answers) with query_accounts, page by page, so the sums are those of one consistent moment
 * only when the cells are idle: run it when no request is in flight.
 *
 * Cross-cell payments (docs/cross-cell.md) leave a clearing account per pair of cells and
 * ledger on each side: A's toward B is credited when A's user pays B's merchant, B's toward A
 * is debited when the relay has delivered. Once the relays are idle the two positions
 * (credits minus debits, posted and pending) add up to zero: a difference is a credit lost,
 * made twice, or still on its way. */
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
#define CHECK_CLEARING_MAX 16384u /* clearing accounts (cell, peer, ledger) one run reads */

static const char check_usage[] =
    "usage: cellpay admin check (--routes FILE | --data DIR) [--timeout-ms N]\n"
    "\n"
    "Adds up the books of every cell named by the route table FILE (or by DIR/routes, which\n"
    "`cellpay start --data DIR` writes for the cells of its current run): per cell and per\n"
    "ledger, the accounts' posted debits must equal their posted credits, and the pending ones\n"
    "likewise. For every pair of cells and ledger, the two clearing positions (each cell's\n"
    "clearing account toward the other: credits minus debits, posted and pending) must add\n"
    "up to zero, which holds once the relays have delivered every cross-cell credit.\n"
    "Prints one line per cell and ledger, one per pair of cells that clear, then one per\n"
    "ledger over all cells, and exits 1 when any sum differs (the line says MISMATCH and by\n"
    "how much) or a cell cannot be read. The accounts are read page by page while the cells\n"
    "go on serving, so run it when no request is in flight and the relays are idle: only\n"
    "then are the sums those of one moment.\n"
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

/* One cell's clearing account toward another, in one ledger. */
typedef struct clearing {
    uint64_t cell, peer;
    uint32_t ledger;
    bool paired; /* already reported with its counterpart */
    u128 debits_posted, credits_posted, debits_pending, credits_pending;
} clearing_t;

typedef struct clearings {
    clearing_t c[CHECK_CLEARING_MAX];
    uint32_t n;
} clearings_t;

/* Is a the clearing account of a cell toward another (pay.h)? Then *peer is that cell. */
static bool clearing_account(const ledger_account_t *a, uint64_t *peer) {
    uint64_t lo = (uint64_t)a->id;
    if ((uint64_t)(a->id >> 64) != PAY_SYSTEM_UID || ((lo >> 32) & 0xff) != PAY_ACCOUNT_CLEARING)
        return false;
    *peer = lo >> 40;
    return true;
}

static bool clearings_add(clearings_t *cs, uint64_t cell, const ledger_account_t *a) {
    uint64_t peer;
    if (!clearing_account(a, &peer)) return true;
    if (cs->n == CHECK_CLEARING_MAX) return false;
    cs->c[cs->n++] = (clearing_t){.cell = cell,
                                  .peer = peer,
                                  .ledger = a->ledger,
                                  .debits_posted = a->debits_posted,
                                  .credits_posted = a->credits_posted,
                                  .debits_pending = a->debits_pending,
                                  .credits_pending = a->credits_pending};
    return true;
}

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

static clearing_t *clearing_find(clearings_t *cs, uint64_t cell, uint64_t peer, uint32_t ledger) {
    for (uint32_t i = 0; i < cs->n; i++)
        if (cs->c[i].cell == cell && cs->c[i].peer == peer && cs->c[i].ledger == ledger)
            return &cs->c[i];
    return NULL;
}

/* Prints one line per pair of cells and ledger; returns how many do not net to zero. A side
 * with no account yet (nothing delivered to it) counts as zero. */
static uint32_t clearings_print(clearings_t *cs) {
    uint32_t bad = 0;
    for (uint32_t i = 0; i < cs->n; i++) {
        clearing_t *a = &cs->c[i];
        if (a->paired) continue;
        clearing_t zero = {.cell = a->peer, .peer = a->cell, .ledger = a->ledger};
        clearing_t *b = clearing_find(cs, a->peer, a->cell, a->ledger);
        if (b) b->paired = true;
        if (!b) b = &zero;
        a->paired = true;
        bool overflow = false;
        u128 dp = a->debits_posted, cp = a->credits_posted;
        u128 dq = a->debits_pending, cq = a->credits_pending;
        add(&dp, b->debits_posted, &overflow);
        add(&cp, b->credits_posted, &overflow);
        add(&dq, b->debits_pending, &overflow);
        add(&cq, b->credits_pending, &overflow);
        bool ok = !overflow && dp == cp && dq == cq;
        char name[16], d1[48], d2[48];
        ledger_name(a->ledger, name);
        difference(cp, dp, d1);
        difference(cq, dq, d2);
        printf("clearing cells %" PRIu64 " and %" PRIu64 " ledger %s: %s", a->cell, a->peer, name,
               ok ? "ok" : "MISMATCH");
        if (!ok)
            printf(" (credits - debits of both sides: posted %s, pending %s%s)", d1, d2,
                   overflow ? ", a sum overflowed" : "");
        printf("\n");
        bad += !ok;
    }
    return bad;
}

/* Reads every account of the cell into b; 0, or -1 with the reason on stderr. */
static int cell_read_book(const rt_cell_t *cell, uint32_t timeout_ms, book_t *b, clearings_t *cs,
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
            if (!book_add(b, &page[i]) || !clearings_add(cs, cell->id, &page[i])) {
                fprintf(stderr,
                        "cellpay admin check: more than %u ledgers or %u clearing accounts\n",
                        CHECK_LEDGERS_MAX, CHECK_CLEARING_MAX);
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
    clearings_t *cs = calloc(1, sizeof *cs);
    if (!page || !cell_book || !all || !cs) {
        fprintf(stderr, "cellpay admin check: out of memory\n");
        free(page), free(cell_book), free(all), free(cs);
        return 1;
    }
    uint32_t bad = 0, unreadable = 0;
    for (uint32_t i = 0; i < t->cell_count; i++) {
        memset(cell_book, 0, sizeof *cell_book);
        if (cell_read_book(&t->cells[i], timeout_ms, cell_book, cs, page) != 0) {
            unreadable++;
            continue;
        }
        char who[32];
        snprintf(who, sizeof who, "cell %" PRIu64, t->cells[i].id);
        if (cell_book->n == 0) printf("%s: no accounts\n", who);
        bad += book_print(cell_book, who);
        book_merge(all, cell_book);
    }
    uint32_t unpaired = clearings_print(cs);
    bad += book_print(all, "all cells");
    printf("check: %u cells, %u unreadable, %u ledger sums that differ, %u clearing pairs that "
           "do not net to zero\n",
           t->cell_count, unreadable, bad, unpaired);
    bad += unpaired;
    free(page), free(cell_book), free(all), free(cs);
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
