/* Randomized differential test of the ledger (src/ledger/ledger.h) against a deliberately simple
 * reference model written in this file from the contract (docs/ledger.md) and the reference
 * pseudo-code of the TigerBeetle-style semantics. The model never looks at the ledger's
 * sources.
 *
 * Every random batch goes through the ledger and the model; every result code and result
 * timestamp is compared, then all accounts (balances, flags, every field), the stats, lookups of
 * transfers, random queries and the ledger's invariants (ledger_check_invariants() and an
 * independent per-ledger-value sum check done here).
 *
 * The run is split into epochs (a fresh ledger and model each) with different random "knobs"
 * (clock start, id-space size, rates of chains, bad fields, imports ...), so that one run covers
 * several regimes. Transfer ids come from a sliding window: mostly fresh ids, often one of the
 * last 5000 ids (duplicates and retries), sometimes 0 / 2^128-1 / huge values.
 *
 * Environment: CELLPAY_SEED (default: from the clock; always printed as "seed=<N>"),
 * CELLPAY_RANDOM_EVENTS (default 1000000, or 200000 when CELLPAY_SANITIZED=1).
 * Any failure prints the seed; rerun with CELLPAY_SEED=<N> to reproduce it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/constants.h"
#include "base/prng.h"
#include "base/u128.h"
#include "ledger/ledger.h"

#define TS_MAX ((uint64_t)INT64_MAX)
#define NS_PER_S ((uint64_t)1000000000u)
#define ACC_CAP 4096u /* model accounts (the generator keeps far below) */
#define LEDGER_ACCOUNTS_MAX 8192u
#define OVF_LEDGER 7u /* the ledger value of the overflow accounts */
#define OVF_BASE ((u128)1000000000u)
#define RING 512u
#define QMAX CP_QUERY_LIMIT_MAX
#define BATCH_MAX_GEN CP_BATCH_EVENTS_MAX
#define MISSING_ACCT_BASE 5000u /* account ids 5000.. are never created */

/* Short names for flags and codes. */
#define AF_LINKED LEDGER_ACCOUNT_LINKED
#define AF_DMNEC LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS
#define AF_CMNED LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS
#define AF_HISTORY LEDGER_ACCOUNT_HISTORY
#define AF_IMPORTED LEDGER_ACCOUNT_IMPORTED
#define AF_CLOSED LEDGER_ACCOUNT_CLOSED
#define TF_LINKED LEDGER_TRANSFER_LINKED
#define TF_PENDING LEDGER_TRANSFER_PENDING
#define TF_POST LEDGER_TRANSFER_POST_PENDING
#define TF_VOID LEDGER_TRANSFER_VOID_PENDING
#define TF_BAL_D LEDGER_TRANSFER_BALANCING_DEBIT
#define TF_BAL_C LEDGER_TRANSFER_BALANCING_CREDIT
#define TF_CLOSE_D LEDGER_TRANSFER_CLOSING_DEBIT
#define TF_CLOSE_C LEDGER_TRANSFER_CLOSING_CREDIT
#define TF_IMPORTED LEDGER_TRANSFER_IMPORTED
#define A_(x) LEDGER_ACCOUNT_##x
#define T_(x) LEDGER_TRANSFER_##x

/* ======================================================================================== */
/* Failure reporting                                                                         */
/* ======================================================================================== */

static uint64_t g_seed;
static uint32_t g_epoch;
static uint64_t g_batch;
static uint64_t g_events_total;
static uint64_t g_cov_exists_in_chain; /* coverage: `exists` that broke an intact chain */

static const char *u128s(u128 v) {
    static char pool[64][U128_DEC_MAX + 1];
    static unsigned k;
    char *b = pool[k++ % 64];
    u128_format(v, b);
    return b;
}

static const char *tcode(uint32_t r) {
    const char *s = ledger_transfer_result_str(r);
    return s ? s : "<out of range>";
}
static const char *acode(uint32_t r) {
    const char *s = ledger_account_result_str(r);
    return s ? s : "<out of range>";
}

static void fmt_transfer(char *buf, size_t n, const ledger_transfer_t *t) {
    snprintf(buf, n,
             "{id=%s dr=%s cr=%s amount=%s pending_id=%s ud128=%s ud64=%" PRIu64 " ud32=%" PRIu32
             " timeout=%" PRIu32 " ledger=%" PRIu32 " code=%u flags=0x%x"
             " ts=%" PRIu64 "}",
             u128s(t->id), u128s(t->debit_account_id), u128s(t->credit_account_id),
             u128s(t->amount), u128s(t->pending_id), u128s(t->user_data_128), t->user_data_64,
             t->user_data_32, t->timeout, t->ledger, (unsigned)t->code, (unsigned)t->flags,
             t->timestamp);
}

static void fmt_account(char *buf, size_t n, const ledger_account_t *a) {
    snprintf(buf, n,
             "{id=%s dp=%s dpo=%s cp=%s cpo=%s ud128=%s ud64=%" PRIu64 " ud32=%" PRIu32
             " reserved=%" PRIu32 " ledger=%" PRIu32 " code=%u flags=0x%x ts=%" PRIu64 "}",
             u128s(a->id), u128s(a->debits_pending), u128s(a->debits_posted),
             u128s(a->credits_pending), u128s(a->credits_posted), u128s(a->user_data_128),
             a->user_data_64, a->user_data_32, a->reserved, a->ledger, (unsigned)a->code,
             (unsigned)a->flags, a->timestamp);
}

static void fmt_balance(char *buf, size_t n, const ledger_balance_t *b) {
    snprintf(buf, n, "{dp=%s dpo=%s cp=%s cpo=%s ts=%" PRIu64 "}", u128s(b->debits_pending),
             u128s(b->debits_posted), u128s(b->credits_pending), u128s(b->credits_posted),
             b->timestamp);
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void
fail_now(const char *fmt, ...) {
    static char msg[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr,
            "\nLEDGER RANDOM TEST FAILURE seed=%" PRIu64 " epoch=%" PRIu32 " batch=%" PRIu64
            "\n%s\nreproduce with: CELLPAY_SEED=%" PRIu64 " CELLPAY_RANDOM_EVENTS=%" PRIu64
            " ./test_ledger_random\n",
            g_seed, g_epoch, g_batch, msg, g_seed, g_events_total);
    fflush(stderr);
    fail_msg("seed=%" PRIu64 " epoch=%" PRIu32 " batch=%" PRIu64 ": %s", g_seed, g_epoch, g_batch,
             msg);
}

#define MCHECK(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) fail_now("model/test internal check failed: %s (line %d)", #cond, __LINE__);  \
    } while (0)

/* ======================================================================================== */
/* The reference model                                                                       */
/* ======================================================================================== */

/* Plain arrays and linear searches (only transfers get a direct id -> index table, because
 * their ids slide upwards). The code follows docs/ledger.md and, where that page is silent, the
 * reference pseudo-code; the checks are written in the documented order of precedence.
 *
 * Readings taken where the texts leave room:
 *  - Result timestamps: the object's timestamp for `created`, the existing object's for
 *    `exists`, 0 for every other code, including exists_with_different_* (failures).
 *  - `exists` inside a linked chain reports the timestamp of the object it found, even when
 *    that object was created earlier in the same chain and is rolled back with it.
 *  - imported_event_timestamp_must_not_advance compares with the batch timestamp (the commit
 *    timestamp of the batch), not with the event's own slot.
 *  - Query filters: a timestamp bound of 0 is open, any other bound must lie in [1, 2^63-1];
 *    flag bits other than debits/credits/reversed (account filters) or reversed (query
 *    filters, only bits 3..15 are generated) make a filter invalid.
 *  - A post/void with a non-zero timeout gets timeout_reserved_for_pending_transfer, after the
 *    pending_id checks.
 *  - ledger_stats().balances counts one row per (transfer, side whose account has history).
 *
 * Linked chains: at a chain's start the model saves its scalar state and a copy of every
 * account; inside a chain transfers are only appended (a rollback truncates them) and the only
 * change to older transfers is the status of a pending one, which an undo log restores. Failed
 * ids are never recorded inside an intact chain (a transient failure breaks it first), so they
 * need no undo. */

enum { ST_NONE = 0, ST_PENDING, ST_POSTED, ST_VOIDED, ST_EXPIRED };

typedef struct mtr {
    ledger_transfer_t t; /* as stored */
    u128 dr_after[4];    /* debit account's dp, dpo, cp, cpo right after the transfer */
    u128 cr_after[4];    /* credit account's ... */
    uint8_t status;      /* pending transfers: ST_PENDING .. ST_EXPIRED */
} mtr_t;

/* The scalar part of the model state: saved and restored with the accounts for chains. */
typedef struct mscal {
    uint32_t n_accounts;
    uint32_t n_transfers;
    uint32_t n_huge;
    uint32_t pending_open;
    uint32_t balance_rows;
} mscal_t;

typedef struct undo {
    uint32_t idx;
    uint8_t status;
} undo_t;

typedef struct model {
    mscal_t s;
    ledger_account_t acc[ACC_CAP]; /* sorted by timestamp (insertion order) */
    mtr_t *tr;                     /* sorted by timestamp (insertion order) */
    uint32_t tr_cap;
    uint32_t *tindex; /* id < direct_cap: tindex[id] = index + 1 */
    uint64_t direct_cap;
    uint32_t *huge; /* indices of transfers with id >= direct_cap */
    uint8_t *failed_direct;
    u128 *failed_huge;
    uint32_t n_failed_huge;
    uint32_t n_failed;
    undo_t undo[CP_BATCH_EVENTS_MAX + 1];
    uint32_t n_undo;
    /* chain snapshot: the scalars and a copy of every account; transfers are only appended in
     * a chain (truncated on rollback), and the status changes of older ones are undone. */
    bool snap;
    mscal_t snap_s;
    ledger_account_t snap_acc[ACC_CAP];
} model_t;

static model_t *m_new(uint32_t tr_cap, uint64_t direct_cap) {
    model_t *m = calloc(1, sizeof *m);
    MCHECK(m != NULL);
    m->tr_cap = tr_cap;
    m->tr = calloc(tr_cap, sizeof *m->tr);
    m->direct_cap = direct_cap;
    m->tindex = calloc(direct_cap, sizeof *m->tindex);
    m->huge = calloc(tr_cap, sizeof *m->huge);
    m->failed_direct = calloc(direct_cap, 1);
    m->failed_huge = calloc(tr_cap, sizeof *m->failed_huge);
    MCHECK(m->tr && m->tindex && m->huge && m->failed_direct && m->failed_huge);
    return m;
}

static void m_free(model_t *m) {
    if (!m) return;
    free(m->tr);
    free(m->tindex);
    free(m->huge);
    free(m->failed_direct);
    free(m->failed_huge);
    free(m);
}

static ledger_account_t *m_acc(model_t *m, u128 id) {
    for (uint32_t i = 0; i < m->s.n_accounts; i++)
        if (m->acc[i].id == id) return &m->acc[i];
    return NULL;
}

static mtr_t *m_tr(model_t *m, u128 id) {
    if (id < m->direct_cap) {
        uint32_t k = m->tindex[(uint64_t)id];
        return k ? &m->tr[k - 1] : NULL;
    }
    for (uint32_t i = 0; i < m->s.n_huge; i++)
        if (m->tr[m->huge[i]].t.id == id) return &m->tr[m->huge[i]];
    return NULL;
}

static bool m_failed(model_t *m, u128 id) {
    if (id < m->direct_cap) return m->failed_direct[(uint64_t)id] != 0;
    for (uint32_t i = 0; i < m->n_failed_huge; i++)
        if (m->failed_huge[i] == id) return true;
    return false;
}

static void m_add_failed(model_t *m, u128 id) {
    MCHECK(!m_failed(m, id));
    if (id < m->direct_cap)
        m->failed_direct[(uint64_t)id] = 1;
    else {
        MCHECK(m->n_failed_huge < m->tr_cap);
        m->failed_huge[m->n_failed_huge++] = id;
    }
    m->n_failed++;
}

static bool m_tr_with_ts(const model_t *m, uint64_t ts) {
    uint32_t lo = 0, hi = m->s.n_transfers;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->tr[mid].t.timestamp < ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->s.n_transfers && m->tr[lo].t.timestamp == ts;
}

static bool m_acc_with_ts(const model_t *m, uint64_t ts) {
    for (uint32_t i = 0; i < m->s.n_accounts; i++)
        if (m->acc[i].timestamp == ts) return true;
    return false;
}

static void m_snapshot(model_t *m) {
    MCHECK(!m->snap);
    m->snap = true;
    m->snap_s = m->s;
    memcpy(m->snap_acc, m->acc, m->s.n_accounts * sizeof *m->acc);
    m->n_undo = 0;
}

static void m_rollback(model_t *m) {
    MCHECK(m->snap);
    for (uint32_t i = m->snap_s.n_transfers; i < m->s.n_transfers; i++) {
        u128 id = m->tr[i].t.id;
        if (id < m->direct_cap) m->tindex[(uint64_t)id] = 0;
    }
    while (m->n_undo > 0) {
        m->n_undo--;
        m->tr[m->undo[m->n_undo].idx].status = m->undo[m->n_undo].status;
    }
    m->s = m->snap_s;
    memcpy(m->acc, m->snap_acc, m->s.n_accounts * sizeof *m->acc);
    m->snap = false;
}

static void m_persist(model_t *m) {
    MCHECK(m->snap);
    m->snap = false;
    m->n_undo = 0;
}

static void m_set_status(model_t *m, uint32_t idx, uint8_t st) {
    if (m->snap) {
        MCHECK(m->n_undo <= CP_BATCH_EVENTS_MAX);
        m->undo[m->n_undo].idx = idx;
        m->undo[m->n_undo].status = m->tr[idx].status;
        m->n_undo++;
    }
    m->tr[idx].status = st;
}

static void m_insert_tr(model_t *m, const mtr_t *x) {
    MCHECK(m->s.n_transfers < m->tr_cap);
    if (m->s.n_transfers > 0) MCHECK(x->t.timestamp > m->tr[m->s.n_transfers - 1].t.timestamp);
    uint32_t idx = m->s.n_transfers++;
    m->tr[idx] = *x;
    if (x->t.id < m->direct_cap)
        m->tindex[(uint64_t)x->t.id] = idx + 1;
    else
        m->huge[m->s.n_huge++] = idx;
}

static void bal4(const ledger_account_t *a, u128 out[4]) {
    out[0] = a->debits_pending;
    out[1] = a->debits_posted;
    out[2] = a->credits_pending;
    out[3] = a->credits_posted;
}

static bool add_ovf(u128 a, u128 b) {
    return a + b < a;
}

static uint64_t expires_at(const ledger_transfer_t *t) {
    return t->timestamp + (uint64_t)t->timeout * NS_PER_S;
}

/* ---- create_account ---- */

static uint32_t m_create_account(model_t *m, const ledger_account_t *a, uint64_t *ts_out) {
    *ts_out = 0;
    if (a->reserved != 0) return A_(RESERVED_FIELD);
    if (a->flags & ~(uint32_t)LEDGER_ACCOUNT_FLAGS_VALID) return A_(RESERVED_FLAG);
    if (a->id == 0) return A_(ID_MUST_NOT_BE_ZERO);
    if (a->id == U128_MAX) return A_(ID_MUST_NOT_BE_INT_MAX);
    ledger_account_t *e = m_acc(m, a->id);
    if (e) {
        if (a->flags != e->flags) return A_(EXISTS_WITH_DIFFERENT_FLAGS);
        if (a->user_data_128 != e->user_data_128) return A_(EXISTS_WITH_DIFFERENT_USER_DATA_128);
        if (a->user_data_64 != e->user_data_64) return A_(EXISTS_WITH_DIFFERENT_USER_DATA_64);
        if (a->user_data_32 != e->user_data_32) return A_(EXISTS_WITH_DIFFERENT_USER_DATA_32);
        if (a->ledger != e->ledger) return A_(EXISTS_WITH_DIFFERENT_LEDGER);
        if (a->code != e->code) return A_(EXISTS_WITH_DIFFERENT_CODE);
        *ts_out = e->timestamp;
        return A_(EXISTS);
    }
    if ((a->flags & AF_DMNEC) && (a->flags & AF_CMNED)) return A_(FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    if (a->debits_pending != 0) return A_(DEBITS_PENDING_MUST_BE_ZERO);
    if (a->debits_posted != 0) return A_(DEBITS_POSTED_MUST_BE_ZERO);
    if (a->credits_pending != 0) return A_(CREDITS_PENDING_MUST_BE_ZERO);
    if (a->credits_posted != 0) return A_(CREDITS_POSTED_MUST_BE_ZERO);
    if (a->ledger == 0) return A_(LEDGER_MUST_NOT_BE_ZERO);
    if (a->code == 0) return A_(CODE_MUST_NOT_BE_ZERO);
    if (a->flags & AF_IMPORTED) {
        if (m->s.n_accounts > 0 && a->timestamp <= m->acc[m->s.n_accounts - 1].timestamp)
            return A_(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
        if (m_tr_with_ts(m, a->timestamp)) return A_(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    }
    MCHECK(m->s.n_accounts < ACC_CAP);
    if (m->s.n_accounts > 0) MCHECK(a->timestamp > m->acc[m->s.n_accounts - 1].timestamp);
    m->acc[m->s.n_accounts++] = *a;
    *ts_out = a->timestamp;
    return A_(CREATED);
}

/* ---- create_transfer ---- */

static uint32_t m_transfer_exists(model_t *m, const ledger_transfer_t *t,
                                  const ledger_transfer_t *e) {
    if (t->flags != e->flags) return T_(EXISTS_WITH_DIFFERENT_FLAGS);
    if (t->pending_id != e->pending_id) return T_(EXISTS_WITH_DIFFERENT_PENDING_ID);
    if (t->timeout != e->timeout) return T_(EXISTS_WITH_DIFFERENT_TIMEOUT);
    if (t->flags & (TF_POST | TF_VOID)) {
        const mtr_t *p = m_tr(m, t->pending_id);
        MCHECK(p != NULL);
        if (t->debit_account_id != 0 && t->debit_account_id != e->debit_account_id)
            return T_(EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID);
        if (t->credit_account_id != 0 && t->credit_account_id != e->credit_account_id)
            return T_(EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID);
        if (t->flags & TF_VOID) {
            if (t->amount == 0) {
                if (e->amount != p->t.amount) return T_(EXISTS_WITH_DIFFERENT_AMOUNT);
            } else if (t->amount != e->amount)
                return T_(EXISTS_WITH_DIFFERENT_AMOUNT);
        } else {
            if (t->amount == U128_MAX) {
                if (e->amount != p->t.amount) return T_(EXISTS_WITH_DIFFERENT_AMOUNT);
            } else if (t->amount != e->amount)
                return T_(EXISTS_WITH_DIFFERENT_AMOUNT);
        }
        if (t->user_data_128 == 0 ? e->user_data_128 != p->t.user_data_128
                                  : t->user_data_128 != e->user_data_128)
            return T_(EXISTS_WITH_DIFFERENT_USER_DATA_128);
        if (t->user_data_64 == 0 ? e->user_data_64 != p->t.user_data_64
                                 : t->user_data_64 != e->user_data_64)
            return T_(EXISTS_WITH_DIFFERENT_USER_DATA_64);
        if (t->user_data_32 == 0 ? e->user_data_32 != p->t.user_data_32
                                 : t->user_data_32 != e->user_data_32)
            return T_(EXISTS_WITH_DIFFERENT_USER_DATA_32);
        if (t->ledger != 0 && t->ledger != e->ledger) return T_(EXISTS_WITH_DIFFERENT_LEDGER);
        if (t->code != 0 && t->code != e->code) return T_(EXISTS_WITH_DIFFERENT_CODE);
        return T_(EXISTS);
    }
    if (t->debit_account_id != e->debit_account_id)
        return T_(EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID);
    if (t->credit_account_id != e->credit_account_id)
        return T_(EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID);
    if (t->flags & (TF_BAL_D | TF_BAL_C)) {
        if (t->amount < e->amount) return T_(EXISTS_WITH_DIFFERENT_AMOUNT);
    } else if (t->amount != e->amount)
        return T_(EXISTS_WITH_DIFFERENT_AMOUNT);
    if (t->user_data_128 != e->user_data_128) return T_(EXISTS_WITH_DIFFERENT_USER_DATA_128);
    if (t->user_data_64 != e->user_data_64) return T_(EXISTS_WITH_DIFFERENT_USER_DATA_64);
    if (t->user_data_32 != e->user_data_32) return T_(EXISTS_WITH_DIFFERENT_USER_DATA_32);
    if (t->ledger != e->ledger) return T_(EXISTS_WITH_DIFFERENT_LEDGER);
    if (t->code != e->code) return T_(EXISTS_WITH_DIFFERENT_CODE);
    return T_(EXISTS);
}

static uint32_t history_sides(const ledger_account_t *dr, const ledger_account_t *cr) {
    return ((dr->flags & AF_HISTORY) ? 1u : 0u) + ((cr->flags & AF_HISTORY) ? 1u : 0u);
}

static uint32_t m_post_void(model_t *m, const ledger_transfer_t *t, uint64_t *ts_out) {
    const uint16_t f = t->flags;
    const bool is_void = (f & TF_VOID) != 0;
    if ((f & TF_POST) && (f & TF_VOID)) return T_(FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    if (f & (TF_PENDING | TF_BAL_D | TF_BAL_C | TF_CLOSE_D | TF_CLOSE_C))
        return T_(FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    if (t->pending_id == 0) return T_(PENDING_ID_MUST_NOT_BE_ZERO);
    if (t->pending_id == U128_MAX) return T_(PENDING_ID_MUST_NOT_BE_INT_MAX);
    if (t->pending_id == t->id) return T_(PENDING_ID_MUST_BE_DIFFERENT);
    if (t->timeout != 0) return T_(TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
    mtr_t *p = m_tr(m, t->pending_id);
    if (!p) return T_(PENDING_TRANSFER_NOT_FOUND);
    if (!(p->t.flags & TF_PENDING)) return T_(PENDING_TRANSFER_NOT_PENDING);
    if (t->debit_account_id != 0 && t->debit_account_id != p->t.debit_account_id)
        return T_(PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID);
    if (t->credit_account_id != 0 && t->credit_account_id != p->t.credit_account_id)
        return T_(PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID);
    if (t->ledger != 0 && t->ledger != p->t.ledger)
        return T_(PENDING_TRANSFER_HAS_DIFFERENT_LEDGER);
    if (t->code != 0 && t->code != p->t.code) return T_(PENDING_TRANSFER_HAS_DIFFERENT_CODE);
    u128 amount;
    if (is_void)
        amount = t->amount == 0 ? p->t.amount : t->amount;
    else
        amount = t->amount == U128_MAX ? p->t.amount : t->amount;
    if (amount > p->t.amount) return T_(EXCEEDS_PENDING_TRANSFER_AMOUNT);
    if (is_void && amount < p->t.amount) return T_(PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT);
    MCHECK(p->status != ST_NONE);
    if (p->status == ST_POSTED) return T_(PENDING_TRANSFER_ALREADY_POSTED);
    if (p->status == ST_VOIDED) return T_(PENDING_TRANSFER_ALREADY_VOIDED);
    if (p->status == ST_EXPIRED) return T_(PENDING_TRANSFER_EXPIRED);
    if (p->t.timeout != 0 && expires_at(&p->t) <= t->timestamp) return T_(PENDING_TRANSFER_EXPIRED);
    if (f & TF_IMPORTED) {
        if (m->s.n_transfers > 0 && t->timestamp <= m->tr[m->s.n_transfers - 1].t.timestamp)
            return T_(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
        if (m_acc_with_ts(m, t->timestamp)) return T_(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    }
    ledger_account_t *dr = m_acc(m, p->t.debit_account_id);
    ledger_account_t *cr = m_acc(m, p->t.credit_account_id);
    MCHECK(dr && cr);
    if (!is_void && (dr->flags & AF_CLOSED)) return T_(DEBIT_ACCOUNT_ALREADY_CLOSED);
    if (!is_void && (cr->flags & AF_CLOSED)) return T_(CREDIT_ACCOUNT_ALREADY_CLOSED);

    mtr_t x;
    memset(&x, 0, sizeof x);
    x.t.id = t->id;
    x.t.debit_account_id = p->t.debit_account_id;
    x.t.credit_account_id = p->t.credit_account_id;
    x.t.amount = amount;
    x.t.pending_id = t->pending_id;
    x.t.user_data_128 = t->user_data_128 ? t->user_data_128 : p->t.user_data_128;
    x.t.user_data_64 = t->user_data_64 ? t->user_data_64 : p->t.user_data_64;
    x.t.user_data_32 = t->user_data_32 ? t->user_data_32 : p->t.user_data_32;
    x.t.timeout = 0;
    x.t.ledger = p->t.ledger;
    x.t.code = p->t.code;
    x.t.flags = t->flags;
    x.t.timestamp = t->timestamp;
    x.status = ST_NONE;

    const u128 pamount = p->t.amount;
    const uint16_t pflags = p->t.flags;
    m_set_status(m, (uint32_t)(p - m->tr), is_void ? ST_VOIDED : ST_POSTED);
    MCHECK(m->s.pending_open > 0);
    m->s.pending_open--;
    MCHECK(dr->debits_pending >= pamount && cr->credits_pending >= pamount);
    dr->debits_pending -= pamount;
    cr->credits_pending -= pamount;
    if (!is_void) {
        MCHECK(!add_ovf(dr->debits_posted, amount) && !add_ovf(cr->credits_posted, amount));
        dr->debits_posted += amount;
        cr->credits_posted += amount;
    } else {
        if (pflags & TF_CLOSE_D) dr->flags &= (uint16_t)~AF_CLOSED;
        if (pflags & TF_CLOSE_C) cr->flags &= (uint16_t)~AF_CLOSED;
    }
    bal4(dr, x.dr_after);
    bal4(cr, x.cr_after);
    m->s.balance_rows += history_sides(dr, cr);
    m_insert_tr(m, &x);
    *ts_out = t->timestamp;
    return T_(CREATED);
}

static uint32_t m_create_transfer(model_t *m, const ledger_transfer_t *t, uint64_t *ts_out) {
    *ts_out = 0;
    const uint16_t f = t->flags;
    if (f & ~(uint32_t)LEDGER_TRANSFER_FLAGS_VALID) return T_(RESERVED_FLAG);
    if (t->id == 0) return T_(ID_MUST_NOT_BE_ZERO);
    if (t->id == U128_MAX) return T_(ID_MUST_NOT_BE_INT_MAX);
    mtr_t *e = m_tr(m, t->id);
    if (e) {
        uint32_t r = m_transfer_exists(m, t, &e->t);
        if (r == T_(EXISTS)) *ts_out = e->t.timestamp;
        return r;
    }
    if (m_failed(m, t->id)) return T_(ID_ALREADY_FAILED);
    if (f & (TF_POST | TF_VOID)) return m_post_void(m, t, ts_out);
    if (t->debit_account_id == 0) return T_(DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
    if (t->debit_account_id == U128_MAX) return T_(DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX);
    if (t->credit_account_id == 0) return T_(CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
    if (t->credit_account_id == U128_MAX) return T_(CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX);
    if (t->debit_account_id == t->credit_account_id) return T_(ACCOUNTS_MUST_BE_DIFFERENT);
    if (t->pending_id != 0) return T_(PENDING_ID_MUST_BE_ZERO);
    if (!(f & TF_PENDING)) {
        if (t->timeout != 0) return T_(TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
        if (f & (TF_CLOSE_D | TF_CLOSE_C)) return T_(CLOSING_TRANSFER_MUST_BE_PENDING);
    }
    if (t->ledger == 0) return T_(LEDGER_MUST_NOT_BE_ZERO);
    if (t->code == 0) return T_(CODE_MUST_NOT_BE_ZERO);
    ledger_account_t *dr = m_acc(m, t->debit_account_id);
    if (!dr) return T_(DEBIT_ACCOUNT_NOT_FOUND);
    ledger_account_t *cr = m_acc(m, t->credit_account_id);
    if (!cr) return T_(CREDIT_ACCOUNT_NOT_FOUND);
    if (dr->ledger != cr->ledger) return T_(ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER);
    if (t->ledger != dr->ledger) return T_(TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS);
    if (f & TF_IMPORTED) {
        if (m->s.n_transfers > 0 && t->timestamp <= m->tr[m->s.n_transfers - 1].t.timestamp)
            return T_(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
        if (m_acc_with_ts(m, t->timestamp)) return T_(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
        if (t->timestamp <= dr->timestamp)
            return T_(IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT);
        if (t->timestamp <= cr->timestamp)
            return T_(IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT);
        if (t->timeout != 0) return T_(IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO);
    }
    if (dr->flags & AF_CLOSED) return T_(DEBIT_ACCOUNT_ALREADY_CLOSED);
    if (cr->flags & AF_CLOSED) return T_(CREDIT_ACCOUNT_ALREADY_CLOSED);

    MCHECK(!add_ovf(dr->debits_posted, dr->debits_pending));
    MCHECK(!add_ovf(cr->credits_posted, cr->credits_pending));
    u128 amount = t->amount;
    if (f & TF_BAL_D)
        amount = u128_min(amount,
                          u128_sub_sat(dr->credits_posted, dr->debits_posted + dr->debits_pending));
    if (f & TF_BAL_C)
        amount = u128_min(
            amount, u128_sub_sat(cr->debits_posted, cr->credits_posted + cr->credits_pending));

    if (f & TF_PENDING) {
        if (add_ovf(amount, dr->debits_pending)) return T_(OVERFLOWS_DEBITS_PENDING);
        if (add_ovf(amount, cr->credits_pending)) return T_(OVERFLOWS_CREDITS_PENDING);
    }
    if (add_ovf(amount, dr->debits_posted)) return T_(OVERFLOWS_DEBITS_POSTED);
    if (add_ovf(amount, cr->credits_posted)) return T_(OVERFLOWS_CREDITS_POSTED);
    if (add_ovf(amount, dr->debits_pending + dr->debits_posted)) return T_(OVERFLOWS_DEBITS);
    if (add_ovf(amount, cr->credits_pending + cr->credits_posted)) return T_(OVERFLOWS_CREDITS);
    if ((u128)t->timestamp + (u128)t->timeout * NS_PER_S > (u128)TS_MAX)
        return T_(OVERFLOWS_TIMEOUT);
    if ((dr->flags & AF_DMNEC) &&
        dr->debits_pending + dr->debits_posted + amount > dr->credits_posted)
        return T_(EXCEEDS_CREDITS);
    if ((cr->flags & AF_CMNED) &&
        cr->credits_pending + cr->credits_posted + amount > cr->debits_posted)
        return T_(EXCEEDS_DEBITS);

    mtr_t x;
    memset(&x, 0, sizeof x);
    x.t = *t;
    x.t.amount = amount;
    if (f & TF_PENDING) {
        dr->debits_pending += amount;
        cr->credits_pending += amount;
        x.status = ST_PENDING;
        m->s.pending_open++;
    } else {
        dr->debits_posted += amount;
        cr->credits_posted += amount;
        x.status = ST_NONE;
    }
    if (f & TF_CLOSE_D) dr->flags |= AF_CLOSED;
    if (f & TF_CLOSE_C) cr->flags |= AF_CLOSED;
    bal4(dr, x.dr_after);
    bal4(cr, x.cr_after);
    m->s.balance_rows += history_sides(dr, cr);
    m_insert_tr(m, &x);
    *ts_out = t->timestamp;
    return T_(CREATED);
}

static bool tr_transient(uint32_t r) {
    switch (r) {
    case T_(DEBIT_ACCOUNT_NOT_FOUND):
    case T_(CREDIT_ACCOUNT_NOT_FOUND):
    case T_(PENDING_TRANSFER_NOT_FOUND):
    case T_(EXCEEDS_CREDITS):
    case T_(EXCEEDS_DEBITS):
    case T_(DEBIT_ACCOUNT_ALREADY_CLOSED):
    case T_(CREDIT_ACCOUNT_ALREADY_CLOSED): return true;
    default: return false;
    }
}

/* ---- the batch driver (linked chains, imported batches, timestamps) ---- */

static void m_create_transfers(model_t *m, uint64_t batch_ts, const ledger_transfer_t *ev,
                               uint32_t n, ledger_result_t *res) {
    int64_t chain = -1;
    bool broken = false;
    const bool batch_imported = n > 0 && (ev[0].flags & TF_IMPORTED);
    for (uint32_t i = 0; i < n; i++) {
        ledger_transfer_t t = ev[i];
        const bool linked = (t.flags & TF_LINKED) != 0;
        const bool imported = (t.flags & TF_IMPORTED) != 0;
        uint64_t ts = 0;
        uint32_t r;
        if (linked && chain < 0) {
            chain = i;
            m_snapshot(m);
        }
        if (linked && i == n - 1)
            r = T_(LINKED_EVENT_CHAIN_OPEN);
        else if (broken)
            r = T_(LINKED_EVENT_FAILED);
        else if (batch_imported != imported)
            r = imported ? T_(IMPORTED_EVENT_NOT_EXPECTED) : T_(IMPORTED_EVENT_EXPECTED);
        else if (imported && (t.timestamp < 1 || t.timestamp > TS_MAX))
            r = T_(IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
        else if (imported && t.timestamp >= batch_ts)
            r = T_(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE);
        else if (!imported && t.timestamp != 0)
            r = T_(TIMESTAMP_MUST_BE_ZERO);
        else {
            if (!imported) t.timestamp = batch_ts - n + i + 1;
            r = m_create_transfer(m, &t, &ts);
        }
        if (r != T_(CREATED)) {
            if (chain >= 0 && !broken) {
                if (r == T_(EXISTS)) g_cov_exists_in_chain++;
                broken = true;
                m_rollback(m);
                for (uint32_t j = (uint32_t)chain; j < i; j++) {
                    res[j].result = T_(LINKED_EVENT_FAILED);
                    res[j].reserved = 0;
                    res[j].timestamp = 0;
                }
            }
            res[i].result = r;
            res[i].timestamp = r == T_(EXISTS) ? ts : 0;
            if (tr_transient(r)) m_add_failed(m, t.id);
        } else {
            res[i].result = r;
            res[i].timestamp = ts;
        }
        res[i].reserved = 0;
        if (chain >= 0 && (!linked || r == T_(LINKED_EVENT_CHAIN_OPEN))) {
            if (!broken) m_persist(m);
            chain = -1;
            broken = false;
        }
    }
    MCHECK(!m->snap);
}

static void m_create_accounts(model_t *m, uint64_t batch_ts, const ledger_account_t *ev, uint32_t n,
                              ledger_result_t *res) {
    int64_t chain = -1;
    bool broken = false;
    const bool batch_imported = n > 0 && (ev[0].flags & AF_IMPORTED);
    for (uint32_t i = 0; i < n; i++) {
        ledger_account_t a = ev[i];
        const bool linked = (a.flags & AF_LINKED) != 0;
        const bool imported = (a.flags & AF_IMPORTED) != 0;
        uint64_t ts = 0;
        uint32_t r;
        if (linked && chain < 0) {
            chain = i;
            m_snapshot(m);
        }
        if (linked && i == n - 1)
            r = A_(LINKED_EVENT_CHAIN_OPEN);
        else if (broken)
            r = A_(LINKED_EVENT_FAILED);
        else if (batch_imported != imported)
            r = imported ? A_(IMPORTED_EVENT_NOT_EXPECTED) : A_(IMPORTED_EVENT_EXPECTED);
        else if (imported && (a.timestamp < 1 || a.timestamp > TS_MAX))
            r = A_(IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
        else if (imported && a.timestamp >= batch_ts)
            r = A_(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE);
        else if (!imported && a.timestamp != 0)
            r = A_(TIMESTAMP_MUST_BE_ZERO);
        else {
            if (!imported) a.timestamp = batch_ts - n + i + 1;
            r = m_create_account(m, &a, &ts);
        }
        if (r != A_(CREATED)) {
            if (chain >= 0 && !broken) {
                broken = true;
                m_rollback(m);
                for (uint32_t j = (uint32_t)chain; j < i; j++) {
                    res[j].result = A_(LINKED_EVENT_FAILED);
                    res[j].reserved = 0;
                    res[j].timestamp = 0;
                }
            }
            res[i].result = r;
            res[i].timestamp = r == A_(EXISTS) ? ts : 0;
        } else {
            res[i].result = r;
            res[i].timestamp = ts;
        }
        res[i].reserved = 0;
        if (chain >= 0 && (!linked || r == A_(LINKED_EVENT_CHAIN_OPEN))) {
            if (!broken) m_persist(m);
            chain = -1;
            broken = false;
        }
    }
    MCHECK(!m->snap);
}

/* ---- expiry ---- */

static uint32_t m_expire(model_t *m, uint64_t now) {
    uint32_t count = 0;
    for (uint32_t i = 0; i < m->s.n_transfers; i++) {
        mtr_t *p = &m->tr[i];
        if (p->status != ST_PENDING || p->t.timeout == 0) continue;
        if (expires_at(&p->t) > now) continue;
        ledger_account_t *dr = m_acc(m, p->t.debit_account_id);
        ledger_account_t *cr = m_acc(m, p->t.credit_account_id);
        MCHECK(dr && cr);
        MCHECK(dr->debits_pending >= p->t.amount && cr->credits_pending >= p->t.amount);
        dr->debits_pending -= p->t.amount;
        cr->credits_pending -= p->t.amount;
        if (p->t.flags & TF_CLOSE_D) dr->flags &= (uint16_t)~AF_CLOSED;
        if (p->t.flags & TF_CLOSE_C) cr->flags &= (uint16_t)~AF_CLOSED;
        p->status = ST_EXPIRED;
        MCHECK(m->s.pending_open > 0);
        m->s.pending_open--;
        count++;
    }
    return count;
}

static uint64_t m_next_expiry(const model_t *m) {
    uint64_t best = 0;
    for (uint32_t i = 0; i < m->s.n_transfers; i++) {
        const mtr_t *p = &m->tr[i];
        if (p->status != ST_PENDING || p->t.timeout == 0) continue;
        uint64_t x = expires_at(&p->t);
        if (best == 0 || x < best) best = x;
    }
    return best;
}

/* ---- queries ---- */

static bool filter_ts_ok(uint64_t lo, uint64_t hi) {
    if (lo > TS_MAX || hi > TS_MAX) return false; /* 0 means open; otherwise [1, 2^63-1] */
    if (hi != 0 && lo > hi) return false;
    return true;
}

static bool account_filter_valid(const ledger_account_filter_t *f) {
    if (f->account_id == 0 || f->account_id == U128_MAX) return false;
    if (!filter_ts_ok(f->timestamp_min, f->timestamp_max)) return false;
    if (f->limit == 0) return false;
    if (!(f->flags & (LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS))) return false;
    /* unknown flag bits: invalid (ledger.md is silent; TigerBeetle: padding must be zero) */
    if (f->flags &
        ~(uint32_t)(LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS | LEDGER_FILTER_REVERSED))
        return false;
    return true;
}

static bool query_filter_valid(const ledger_query_filter_t *f) {
    if (!filter_ts_ok(f->timestamp_min, f->timestamp_max)) return false;
    if (f->limit == 0) return false;
    /* unknown flag bits (the generator only sets bits 3..15 here): invalid, as above */
    if (f->flags & ~(uint32_t)LEDGER_FILTER_REVERSED) return false;
    return true;
}

/* get_account_transfers (balances == NULL) or get_account_balances (balances != NULL). */
static uint32_t m_account_query(model_t *m, const ledger_account_filter_t *f,
                                ledger_transfer_t *out, ledger_balance_t *balances) {
    if (!account_filter_valid(f)) return 0;
    if (balances) {
        const ledger_account_t *a = m_acc(m, f->account_id);
        if (!a || !(a->flags & AF_HISTORY)) return 0;
    }
    const uint64_t lo = f->timestamp_min ? f->timestamp_min : 1;
    const uint64_t hi = f->timestamp_max ? f->timestamp_max : TS_MAX;
    const uint32_t lim = f->limit < QMAX ? f->limit : QMAX;
    const bool rev = (f->flags & LEDGER_FILTER_REVERSED) != 0;
    uint32_t n = 0;
    const uint32_t total = m->s.n_transfers;
    for (uint32_t k = 0; k < total && n < lim; k++) {
        const mtr_t *x = &m->tr[rev ? total - 1 - k : k];
        const ledger_transfer_t *t = &x->t;
        bool side = ((f->flags & LEDGER_FILTER_DEBITS) && t->debit_account_id == f->account_id) ||
                    ((f->flags & LEDGER_FILTER_CREDITS) && t->credit_account_id == f->account_id);
        if (!side) continue;
        if (f->user_data_128 && t->user_data_128 != f->user_data_128) continue;
        if (f->user_data_64 && t->user_data_64 != f->user_data_64) continue;
        if (f->user_data_32 && t->user_data_32 != f->user_data_32) continue;
        if (f->code && t->code != f->code) continue;
        if (t->timestamp < lo || t->timestamp > hi) continue;
        if (balances) {
            const u128 *b = t->debit_account_id == f->account_id ? x->dr_after : x->cr_after;
            memset(&balances[n], 0, sizeof balances[n]);
            balances[n].debits_pending = b[0];
            balances[n].debits_posted = b[1];
            balances[n].credits_pending = b[2];
            balances[n].credits_posted = b[3];
            balances[n].timestamp = t->timestamp;
        } else {
            out[n] = *t;
        }
        n++;
    }
    return n;
}

static bool query_match(const ledger_query_filter_t *f, u128 ud128, uint64_t ud64, uint32_t ud32,
                        uint32_t ledger, uint16_t code, uint64_t ts) {
    const uint64_t lo = f->timestamp_min ? f->timestamp_min : 1;
    const uint64_t hi = f->timestamp_max ? f->timestamp_max : TS_MAX;
    if (f->user_data_128 && ud128 != f->user_data_128) return false;
    if (f->user_data_64 && ud64 != f->user_data_64) return false;
    if (f->user_data_32 && ud32 != f->user_data_32) return false;
    if (f->ledger && ledger != f->ledger) return false;
    if (f->code && code != f->code) return false;
    return ts >= lo && ts <= hi;
}

static uint32_t m_query_transfers(model_t *m, const ledger_query_filter_t *f,
                                  ledger_transfer_t *out) {
    if (!query_filter_valid(f)) return 0;
    const uint32_t lim = f->limit < QMAX ? f->limit : QMAX;
    const bool rev = (f->flags & LEDGER_FILTER_REVERSED) != 0;
    uint32_t n = 0;
    const uint32_t total = m->s.n_transfers;
    for (uint32_t k = 0; k < total && n < lim; k++) {
        const ledger_transfer_t *t = &m->tr[rev ? total - 1 - k : k].t;
        if (query_match(f, t->user_data_128, t->user_data_64, t->user_data_32, t->ledger, t->code,
                        t->timestamp))
            out[n++] = *t;
    }
    return n;
}

static uint32_t m_query_accounts(model_t *m, const ledger_query_filter_t *f,
                                 ledger_account_t *out) {
    if (!query_filter_valid(f)) return 0;
    const uint32_t lim = f->limit < QMAX ? f->limit : QMAX;
    const bool rev = (f->flags & LEDGER_FILTER_REVERSED) != 0;
    uint32_t n = 0;
    const uint32_t total = m->s.n_accounts;
    for (uint32_t k = 0; k < total && n < lim; k++) {
        const ledger_account_t *a = &m->acc[rev ? total - 1 - k : k];
        if (query_match(f, a->user_data_128, a->user_data_64, a->user_data_32, a->ledger, a->code,
                        a->timestamp))
            out[n++] = *a;
    }
    return n;
}

/* ======================================================================================== */
/* The generator                                                                             */
/* ======================================================================================== */

typedef struct gen {
    prng_t r;
    /* epoch knobs */
    uint32_t acct_ids; /* account ids 1..acct_ids */
    uint32_t ppm_chain, ppm_bad, ppm_import, ppm_dup, ppm_postvoid, ppm_pending, ppm_tick;
    uint32_t ppm_target, ppm_ovf, ppm_balancing, ppm_closing, ppm_hub;
    /* clock */
    uint64_t last_ts;       /* last timestamp given to the ledger (batch or expiry) */
    uint64_t last_batch_ts; /* timestamp of the last applied batch, 0 before the first */
    uint64_t next_tid;      /* next fresh transfer id */
    uint64_t next_aid;      /* next fresh account id (above acct_ids) */
    bool prefer_new;        /* this batch: often use the newest accounts */
    bool after_accounts;    /* the previous batch was an account batch */
    uint32_t ovf_gen;       /* current generation of overflow accounts */
    /* memory of earlier events */
    ledger_transfer_t rt[RING];
    uint32_t n_rt;
    ledger_account_t ra[RING];
    uint32_t n_ra;
    u128 pend[RING];
    uint32_t n_pend;
    u128 failed[RING];
    uint32_t n_failed;
} gen_t;

static inline uint64_t rnd(gen_t *g, uint64_t n) {
    return n ? prng_below(&g->r, n) : 0;
}
static inline bool chance(gen_t *g, uint32_t ppm) {
    return prng_chance_ppm(&g->r, ppm) != 0;
}
static inline u128 rnd128(gen_t *g) {
    u128 hi = prng_next(&g->r);
    return (hi << 64) | prng_next(&g->r);
}
static inline uint32_t ring_pick(gen_t *g, uint32_t n) {
    /* half the time one of the 32 most recent entries */
    uint32_t window = n < RING ? n : RING;
    if (window > 32 && rnd(g, 2)) window = 32;
    return (uint32_t)((n - 1 - rnd(g, window)) % RING);
}

static u128 gen_ud128(gen_t *g) {
    uint32_t r = (uint32_t)rnd(g, 100);
    if (r < 55) return 0;
    if (r < 97) return 1 + rnd(g, 3);
    return rnd128(g);
}
static uint64_t gen_ud64(gen_t *g) {
    uint32_t r = (uint32_t)rnd(g, 100);
    if (r < 55) return 0;
    if (r < 97) return 1 + rnd(g, 3);
    return prng_next(&g->r);
}
static uint32_t gen_ud32(gen_t *g) {
    uint32_t r = (uint32_t)rnd(g, 100);
    if (r < 55) return 0;
    if (r < 97) return (uint32_t)(1 + rnd(g, 3));
    return (uint32_t)prng_next(&g->r);
}

static u128 ovf_id(uint32_t gen_no, uint32_t j) {
    return OVF_BASE + (u128)gen_no * 8u + j;
}

static ledger_account_t gen_account(gen_t *g, model_t *m) {
    ledger_account_t a;
    memset(&a, 0, sizeof a);
    if (g->n_ra > 0 && chance(g, g->ppm_dup)) {
        a = g->ra[ring_pick(g, g->n_ra)];
        a.timestamp = 0;
        a.flags &= (uint16_t) ~(AF_LINKED | AF_IMPORTED);
        if (rnd(g, 2)) {
            switch (rnd(g, 6)) {
            case 0: a.flags ^= (uint16_t)(rnd(g, 2) ? AF_HISTORY : AF_DMNEC); break;
            case 1: a.user_data_128 += 1; break;
            case 2: a.user_data_64 += 1; break;
            case 3: a.user_data_32 += 1; break;
            case 4: a.ledger = a.ledger == 1 ? 2 : 1; break;
            default: a.code = (uint16_t)(a.code + 1); break;
            }
        }
        return a;
    }
    uint32_t r = (uint32_t)rnd(g, 1000);
    if (r < 830)
        a.id = 1 + rnd(g, g->acct_ids);
    else if (r < 880)
        a.id = g->next_aid < MISSING_ACCT_BASE ? g->next_aid++ : 1 + rnd(g, g->acct_ids);
    else if (r < 960)
        a.id = ovf_id(g->ovf_gen, (uint32_t)rnd(g, 4));
    else if (r < 970)
        a.id = 0;
    else if (r < 978)
        a.id = U128_MAX;
    else
        a.id = m->s.n_accounts < 2000 ? (rnd128(g) | ((u128)1 << 100)) : 1 + rnd(g, g->acct_ids);
    const bool ovf = a.id >= OVF_BASE && a.id < OVF_BASE + 100000u;
    r = (uint32_t)rnd(g, 1000);
    a.ledger = ovf ? OVF_LEDGER : (r < 700 ? 1u : 2u);
    if (r >= 997) a.ledger = (uint32_t)(3 + rnd(g, 3)); /* a lonely ledger value */
    a.code = (uint16_t)(1 + rnd(g, 3));
    uint16_t fl = 0;
    r = (uint32_t)rnd(g, 100);
    if (r < 30)
        fl |= AF_DMNEC;
    else if (r < 45)
        fl |= AF_CMNED;
    if (rnd(g, 2)) fl |= AF_HISTORY;
    if (chance(g, 2000)) fl |= AF_CLOSED;
    a.flags = fl;
    a.user_data_128 = gen_ud128(g);
    a.user_data_64 = gen_ud64(g);
    a.user_data_32 = gen_ud32(g);
    if (chance(g, g->ppm_bad)) {
        switch (rnd(g, 12)) {
        case 0: a.reserved = (uint32_t)(1 + rnd(g, 1000)); break;
        case 1: a.flags |= (uint16_t)(1u << (6 + rnd(g, 10))); break;
        case 2: a.id = 0; break;
        case 3: a.id = U128_MAX; break;
        case 4: a.flags |= AF_DMNEC | AF_CMNED; break;
        case 5: a.debits_pending = 1 + rnd(g, 10); break;
        case 6: a.debits_posted = 1 + rnd(g, 10); break;
        case 7: a.credits_pending = 1 + rnd(g, 10); break;
        case 8: a.credits_posted = 1 + rnd(g, 10); break;
        case 9: a.ledger = 0; break;
        case 10: a.code = 0; break;
        default: a.timestamp = 1 + rnd(g, 1000); break; /* not imported: must be zero */
        }
    }
    return a;
}

/* A transfer id: mostly fresh, often a recent one (duplicates), sometimes special. */
static u128 gen_tid(gen_t *g) {
    uint32_t r = (uint32_t)rnd(g, 1000);
    if (r < 700 || g->next_tid <= 1) return (u128)g->next_tid++;
    if (r < 965) {
        uint64_t w = g->next_tid - 1;
        if (w > 5000) w = 5000;
        return (u128)(g->next_tid - 1 - rnd(g, w));
    }
    if (r < 975) return 0;
    if (r < 983) return U128_MAX;
    if (r < 993) return rnd128(g) | ((u128)1 << 100);
    return (u128)g->next_tid++;
}

/* An existing account on one of the main ledgers (or, sometimes, a missing or special id). */
static u128 pick_acct(gen_t *g, model_t *m) {
    if (g->ppm_hub && m->s.n_accounts > 0 && chance(g, g->ppm_hub) &&
        m->acc[0].ledger != OVF_LEDGER)
        return m->acc[0].id; /* the hub: an account with very many transfers */
    uint32_t r = (uint32_t)rnd(g, 1000);
    if (m->s.n_accounts > 0 && r < 930) {
        for (int tries = 0; tries < 6; tries++) {
            const ledger_account_t *a = &m->acc[rnd(g, m->s.n_accounts)];
            if (a->ledger != OVF_LEDGER) return a->id;
        }
    }
    if (r < 975) return 1 + rnd(g, g->acct_ids);
    if (r < 985) return MISSING_ACCT_BASE + rnd(g, 100);
    if (r < 990) return 0;
    if (r < 995) return U128_MAX;
    return rnd128(g) | ((u128)1 << 100);
}

static u128 pick_partner(gen_t *g, model_t *m, u128 dr) {
    const ledger_account_t *d = m_acc(m, dr);
    if (d && g->ppm_hub && m->s.n_accounts > 1 && m->acc[0].id != dr &&
        m->acc[0].ledger == d->ledger && chance(g, g->ppm_hub))
        return m->acc[0].id;
    if (d && m->s.n_accounts > 1 && rnd(g, 100) < 95) {
        for (int tries = 0; tries < 12; tries++) {
            const ledger_account_t *c = &m->acc[rnd(g, m->s.n_accounts)];
            if (c->ledger == d->ledger && c->id != dr) return c->id;
        }
    }
    if (rnd(g, 100) < 3) return dr;
    return pick_acct(g, m);
}

static u128 gen_small_amount(gen_t *g) {
    uint32_t r = (uint32_t)rnd(g, 1000);
    if (r < 80) return 0;
    if (r < 700) return 1 + rnd(g, 100);
    if (r < 950) return 1 + rnd(g, 10000);
    return 1 + rnd(g, 1000000);
}

static u128 gen_huge_amount(gen_t *g) {
    switch (rnd(g, 8)) {
    case 0: return U128_MAX;
    case 1: return U128_MAX - rnd(g, 1000);
    case 2: return ((u128)1 << 127) + rnd(g, 1000);
    case 3: return ((u128)1 << 127) - rnd(g, 1000);
    case 4: return rnd128(g);
    case 5: return rnd128(g) >> rnd(g, 8);
    case 6: return 1 + rnd(g, 100);
    default: return 0;
    }
}

static uint32_t gen_timeout(gen_t *g, uint64_t slot) {
    uint32_t r = (uint32_t)rnd(g, 1000);
    if (r < 400) return 0;
    if (r < 900) return (uint32_t)(1 + rnd(g, 4));
    if (r < 940) return (uint32_t)(5 + rnd(g, 30));
    if (r < 975) {
        /* the largest timeout that does not overflow, or one more */
        uint64_t b = (TS_MAX - slot) / NS_PER_S;
        if (b < UINT32_MAX) return (uint32_t)(b + rnd(g, 2));
        return UINT32_MAX;
    }
    return (uint32_t)prng_next(&g->r);
}

static void gen_post_void(gen_t *g, model_t *m, ledger_transfer_t *t) {
    uint32_t r = (uint32_t)rnd(g, 1000);
    if (g->n_pend > 0 && r < 880)
        t->pending_id = g->pend[ring_pick(g, g->n_pend)];
    else if (r < 930 && m->s.n_transfers > 0)
        t->pending_id = m->tr[rnd(g, m->s.n_transfers)].t.id;
    else if (r < 950 && g->n_failed > 0)
        t->pending_id = g->failed[ring_pick(g, g->n_failed)];
    else if (r < 962)
        t->pending_id = 0;
    else if (r < 972)
        t->pending_id = U128_MAX;
    else if (r < 982)
        t->pending_id = t->id;
    else
        t->pending_id = (u128)g->next_tid + rnd(g, 100);
    const mtr_t *p = m_tr(m, t->pending_id);
    const bool is_void = rnd(g, 100) < 45;
    t->flags = is_void ? TF_VOID : TF_POST;
    const u128 pa = p ? p->t.amount : gen_small_amount(g);
    r = (uint32_t)rnd(g, 100);
    if (!is_void) {
        if (r < 25)
            t->amount = U128_MAX;
        else if (r < 45)
            t->amount = pa;
        else if (r < 65)
            t->amount = pa ? rnd(g, (uint64_t)(pa > 1000000 ? 1000000 : pa)) : 0;
        else if (r < 75)
            t->amount = 0;
        else if (r < 82)
            t->amount = pa + 1;
        else
            t->amount = gen_small_amount(g);
    } else {
        if (r < 40)
            t->amount = 0;
        else if (r < 80)
            t->amount = pa;
        else if (r < 86)
            t->amount = pa ? pa - 1 : 1;
        else if (r < 92)
            t->amount = pa + 1;
        else if (r < 96)
            t->amount = U128_MAX;
        else
            t->amount = gen_small_amount(g);
    }
    r = (uint32_t)rnd(g, 100);
    if (r < 80) {
        t->debit_account_id = 0;
        t->credit_account_id = 0;
    } else if (r < 95 && p) {
        t->debit_account_id = p->t.debit_account_id;
        t->credit_account_id = rnd(g, 2) ? p->t.credit_account_id : 0;
    } else {
        t->debit_account_id = rnd(g, 2) ? pick_acct(g, m) : 0;
        t->credit_account_id = rnd(g, 2) ? pick_acct(g, m) : 0;
    }
    r = (uint32_t)rnd(g, 100);
    t->ledger = r < 85 ? 0 : r < 95 && p ? p->t.ledger : (uint32_t)(1 + rnd(g, 3));
    r = (uint32_t)rnd(g, 100);
    t->code = r < 85 ? 0 : r < 95 && p ? p->t.code : (uint16_t)(1 + rnd(g, 3));
    t->user_data_128 = gen_ud128(g);
    t->user_data_64 = gen_ud64(g);
    t->user_data_32 = gen_ud32(g);
    t->timeout = 0;
    if (chance(g, g->ppm_bad)) {
        switch (rnd(g, 8)) {
        case 0: t->flags |= TF_POST | TF_VOID; break;
        case 1: t->flags |= TF_PENDING; break;
        case 2: t->flags |= rnd(g, 2) ? TF_BAL_D : TF_BAL_C; break;
        case 3: t->flags |= rnd(g, 2) ? TF_CLOSE_D : TF_CLOSE_C; break;
        case 4: t->timeout = (uint32_t)(1 + rnd(g, 5)); break;
        case 5: t->flags |= (uint16_t)(1u << (9 + rnd(g, 7))); break;
        case 6: t->pending_id = 0; break;
        default: t->id = rnd(g, 2) ? 0 : U128_MAX; break;
        }
    }
}

static void gen_ordinary(gen_t *g, model_t *m, ledger_transfer_t *t, uint64_t slot) {
    if (m->s.n_accounts > 4 && rnd(g, 100) < (g->prefer_new ? 50 : 4)) {
        /* one of the newest accounts (imported transfers must postdate their accounts) */
        u128 id = m->acc[m->s.n_accounts - 1 - rnd(g, 4)].id;
        if (rnd(g, 2)) {
            t->debit_account_id = id;
            t->credit_account_id = pick_partner(g, m, id);
        } else {
            t->credit_account_id = id;
            t->debit_account_id = pick_partner(g, m, id);
        }
    } else {
        t->debit_account_id = pick_acct(g, m);
        t->credit_account_id = pick_partner(g, m, t->debit_account_id);
    }
    const ledger_account_t *d = m_acc(m, t->debit_account_id);
    uint32_t r = (uint32_t)rnd(g, 1000);
    t->ledger = d ? d->ledger : (uint32_t)(1 + rnd(g, 2));
    if (r >= 985) t->ledger = (uint32_t)rnd(g, 4);
    t->code = (uint16_t)(1 + rnd(g, 3));
    uint16_t fl = 0;
    if (chance(g, g->ppm_pending)) fl |= TF_PENDING;
    if (chance(g, g->ppm_balancing)) fl |= TF_BAL_D;
    if (chance(g, g->ppm_balancing)) fl |= TF_BAL_C;
    if (chance(g, g->ppm_closing)) {
        fl |= rnd(g, 3) ? (rnd(g, 2) ? TF_CLOSE_D : TF_CLOSE_C) : (TF_CLOSE_D | TF_CLOSE_C);
        if (rnd(g, 10)) fl |= TF_PENDING;
    }
    t->flags = fl;
    t->amount = gen_small_amount(g);
    if ((fl & (TF_BAL_D | TF_BAL_C)) && rnd(g, 3) == 0)
        t->amount = rnd(g, 2) ? U128_MAX : gen_huge_amount(g);
    if (fl & TF_PENDING) {
        t->timeout = gen_timeout(g, slot);
        if ((fl & (TF_CLOSE_D | TF_CLOSE_C)) && rnd(g, 10)) t->timeout = (uint32_t)(1 + rnd(g, 3));
    }
    t->user_data_128 = gen_ud128(g);
    t->user_data_64 = gen_ud64(g);
    t->user_data_32 = gen_ud32(g);
    if (chance(g, g->ppm_bad)) {
        switch (rnd(g, 16)) {
        case 0: t->id = 0; break;
        case 1: t->id = U128_MAX; break;
        case 2: t->flags |= (uint16_t)(1u << (9 + rnd(g, 7))); break;
        case 3: t->debit_account_id = rnd(g, 2) ? 0 : U128_MAX; break;
        case 4: t->credit_account_id = rnd(g, 2) ? 0 : U128_MAX; break;
        case 5: t->credit_account_id = t->debit_account_id; break;
        case 6: t->pending_id = 1 + rnd(g, 100); break;
        case 7:
            t->flags &= (uint16_t)~TF_PENDING;
            t->timeout = (uint32_t)(1 + rnd(g, 5));
            break;
        case 8:
            t->flags &= (uint16_t)~TF_PENDING;
            t->flags |= TF_CLOSE_D;
            break;
        case 9: t->ledger = 0; break;
        case 10: t->ledger = t->ledger == 1 ? 2 : 1; break;
        case 11: t->code = 0; break;
        case 12: t->debit_account_id = MISSING_ACCT_BASE + rnd(g, 100); break;
        case 13: t->credit_account_id = MISSING_ACCT_BASE + rnd(g, 100); break;
        case 14:
            t->flags |= TF_PENDING;
            t->timeout = UINT32_MAX;
            break;
        default: t->credit_account_id = pick_acct(g, m); break; /* maybe another ledger */
        }
    }
}

static void gen_overflow_transfer(gen_t *g, ledger_transfer_t *t) {
    uint32_t gen_no = g->ovf_gen;
    if (g->ovf_gen > 0 && rnd(g, 10) == 0) gen_no--;
    uint32_t a = (uint32_t)rnd(g, 4), b = (uint32_t)rnd(g, 4);
    if (a == b && rnd(g, 10)) b = (a + 1 + (uint32_t)rnd(g, 3)) % 4;
    t->debit_account_id = ovf_id(gen_no, a);
    t->credit_account_id = ovf_id(gen_no, b);
    t->ledger = OVF_LEDGER;
    t->code = 1;
    t->amount = gen_huge_amount(g);
    uint16_t fl = 0;
    if (rnd(g, 100) < 35) fl |= TF_PENDING;
    if (rnd(g, 100) < 10) fl |= TF_BAL_D;
    if (rnd(g, 100) < 10) fl |= TF_BAL_C;
    t->flags = fl;
    if (fl & TF_PENDING) t->timeout = rnd(g, 3) ? 0 : (uint32_t)(1 + rnd(g, 4));
    t->user_data_64 = gen_ud64(g);
}

static void mutate_transfer(gen_t *g, model_t *m, ledger_transfer_t *t) {
    switch (rnd(g, 12)) {
    case 0: {
        static const uint16_t bits[] = {TF_PENDING, TF_BAL_D, TF_BAL_C, TF_CLOSE_D, TF_POST};
        t->flags ^= bits[rnd(g, 5)];
        break;
    }
    case 1: t->pending_id = g->n_pend ? g->pend[ring_pick(g, g->n_pend)] : t->pending_id + 1; break;
    case 2: t->timeout += 1; break;
    case 3: t->debit_account_id = rnd(g, 3) ? pick_acct(g, m) : 0; break;
    case 4: t->credit_account_id = rnd(g, 3) ? pick_acct(g, m) : 0; break;
    case 5:
        if (t->amount == 0)
            t->amount = 1;
        else if (t->amount == U128_MAX)
            t->amount = rnd(g, 2) ? 0 : 1 + rnd(g, 100);
        else
            t->amount = rnd(g, 2) ? t->amount - 1 : t->amount + 1;
        break;
    case 6: t->user_data_128 = rnd(g, 3) ? t->user_data_128 + 1 : 0; break;
    case 7: t->user_data_64 = rnd(g, 3) ? t->user_data_64 + 1 : 0; break;
    case 8: t->user_data_32 = rnd(g, 3) ? t->user_data_32 + 1 : 0; break;
    case 9: t->ledger = rnd(g, 3) ? t->ledger + 1 : 0; break;
    case 10: t->code = rnd(g, 3) ? (uint16_t)(t->code + 1) : 0; break;
    default: t->flags ^= TF_VOID; break;
    }
}

static ledger_transfer_t gen_transfer(gen_t *g, model_t *m, const ledger_transfer_t *batch,
                                      uint32_t i, uint64_t slot) {
    ledger_transfer_t t;
    memset(&t, 0, sizeof t);
    uint32_t r = (uint32_t)rnd(g, 1000000);
    if (g->n_rt > 0 && r < g->ppm_dup) {
        /* resubmit an earlier event: identical (exists / id_already_failed / same outcome) or
         * with one field changed (exists_with_different_*) */
        t = g->rt[ring_pick(g, g->n_rt)];
        t.flags &= (uint16_t) ~(TF_LINKED | TF_IMPORTED);
        t.timestamp = 0;
        if (rnd(g, 2)) mutate_transfer(g, m, &t);
        return t;
    }
    r = (uint32_t)rnd(g, 1000);
    if (i > 0 && r < 20) {
        /* a duplicate inside the same batch (often of a close event: the same chain) */
        t = batch[rnd(g, 2) ? i - 1 - rnd(g, i < 3 ? i : 3) : rnd(g, i)];
        t.flags &= (uint16_t) ~(TF_LINKED | TF_IMPORTED);
        t.timestamp = 0;
        if (rnd(g, 2)) mutate_transfer(g, m, &t);
        return t;
    }
    if (g->n_failed > 0 && r < 45) {
        /* retry of an id that failed for a state reason */
        t.id = g->failed[ring_pick(g, g->n_failed)];
        gen_ordinary(g, m, &t, slot);
        return t;
    }
    t.id = gen_tid(g);
    r = (uint32_t)rnd(g, 1000000);
    if (r < g->ppm_ovf) {
        gen_overflow_transfer(g, &t);
    } else if (r < g->ppm_ovf + g->ppm_postvoid) {
        gen_post_void(g, m, &t);
    } else if (r < g->ppm_ovf + g->ppm_postvoid + 15000) {
        /* garbage: every field random in small ranges */
        t.debit_account_id = rnd(g, 4) ? pick_acct(g, m) : rnd(g, 3);
        t.credit_account_id = rnd(g, 4) ? pick_acct(g, m) : rnd(g, 3);
        t.amount = gen_small_amount(g);
        t.pending_id = rnd(g, 2) ? 0 : (u128)rnd(g, g->next_tid + 1);
        t.timeout = rnd(g, 2) ? 0 : (uint32_t)rnd(g, 5);
        t.ledger = (uint32_t)rnd(g, 4);
        t.code = (uint16_t)rnd(g, 4);
        t.flags = (uint16_t)(rnd(g, 1u << 9) & ~(uint64_t)(TF_LINKED | TF_IMPORTED));
        t.user_data_128 = gen_ud128(g);
    } else {
        gen_ordinary(g, m, &t, slot);
    }
    return t;
}

/* Plans linked chains over a batch: chains of 2..6 events, some reaching past the end of the
 * batch (chain open), sometimes a lone linked last event. */
static void plan_chains(gen_t *g, uint16_t *flags, uint32_t n, uint16_t linked_bit) {
    uint32_t remaining = 0;
    for (uint32_t i = 0; i < n; i++) {
        bool linked = false;
        if (remaining > 1) {
            linked = true;
            remaining--;
        } else if (remaining == 1) {
            remaining = 0;
        } else if (chance(g, g->ppm_chain)) {
            remaining = (uint32_t)(1 + rnd(g, 5)); /* events after this one in the chain */
            linked = true;
        }
        if (linked)
            flags[i] |= linked_bit;
        else
            flags[i] &= (uint16_t)~linked_bit;
    }
    if (n > 0 && chance(g, 20000)) flags[n - 1] |= linked_bit;
}

/* ======================================================================================== */
/* The run                                                                                   */
/* ======================================================================================== */

typedef struct run {
    ledger_t *L;
    model_t *M;
    gen_t G;
    uint64_t batches_in_epoch;
    /* scratch */
    ledger_transfer_t tev[CP_BATCH_EVENTS_MAX + 1];
    ledger_account_t aev[CP_BATCH_EVENTS_MAX];
    ledger_result_t res_l[CP_BATCH_EVENTS_MAX + 1];
    ledger_result_t res_m[CP_BATCH_EVENTS_MAX];
    uint16_t fl[CP_BATCH_EVENTS_MAX];
    u128 ids[ACC_CAP + QMAX + 64];
    ledger_account_t acc_l[ACC_CAP + 64];
    ledger_transfer_t tr_l[QMAX];
    ledger_transfer_t tr_m[QMAX];
    ledger_balance_t bal_l[QMAX];
    ledger_balance_t bal_m[QMAX];
    ledger_account_t qa_l[QMAX];
    ledger_account_t qa_m[QMAX];
    /* coverage counters */
    uint64_t tcount[LEDGER_TRANSFER_RESULT_COUNT];
    uint64_t acount[LEDGER_ACCOUNT_RESULT_COUNT];
    uint64_t expired_total, ticks, queries, nonempty_queries, chains_open, timeout_boundary,
        clamped;
} run_t;

static void dump_transfer_batch(run_t *R, uint64_t batch_ts, uint32_t n, uint32_t focus) {
    char buf[1024];
    fprintf(stderr, "transfer batch: timestamp=%" PRIu64 " count=%" PRIu32 "\n", batch_ts, n);
    uint32_t lo = focus > 40 ? focus - 40 : 0, hi = focus + 10 < n ? focus + 10 : n;
    for (uint32_t i = lo; i < hi; i++) {
        fmt_transfer(buf, sizeof buf, &R->tev[i]);
        fprintf(stderr,
                "  [%" PRIu32 "] slot=%" PRIu64 " %s -> expected %s/%" PRIu64 " actual %s/%" PRIu64
                "%s\n",
                i, batch_ts - n + i + 1, buf, tcode(R->res_m[i].result), R->res_m[i].timestamp,
                tcode(R->res_l[i].result), R->res_l[i].timestamp, i == focus ? "   <=====" : "");
    }
}

static void dump_account_batch(run_t *R, uint64_t batch_ts, uint32_t n, uint32_t focus) {
    char buf[1024];
    fprintf(stderr, "account batch: timestamp=%" PRIu64 " count=%" PRIu32 "\n", batch_ts, n);
    uint32_t lo = focus > 40 ? focus - 40 : 0, hi = focus + 10 < n ? focus + 10 : n;
    for (uint32_t i = lo; i < hi; i++) {
        fmt_account(buf, sizeof buf, &R->aev[i]);
        fprintf(stderr,
                "  [%" PRIu32 "] slot=%" PRIu64 " %s -> expected %s/%" PRIu64 " actual %s/%" PRIu64
                "%s\n",
                i, batch_ts - n + i + 1, buf, acode(R->res_m[i].result), R->res_m[i].timestamp,
                acode(R->res_l[i].result), R->res_l[i].timestamp, i == focus ? "   <=====" : "");
    }
}

/* ---- checks ---- */

typedef struct sum256 {
    u128 lo;
    uint64_t hi;
} sum256_t;

static void sum_add(sum256_t *s, u128 v) {
    s->lo += v;
    if (s->lo < v) s->hi++;
}
static bool sum_eq(const sum256_t *a, const sum256_t *b) {
    return a->lo == b->lo && a->hi == b->hi;
}

typedef struct lsum {
    uint32_t ledger;
    sum256_t dp, dpo, cp, cpo;
} lsum_t;

/* Every model account against the ledger (all fields), a few missing ids, then the balance
 * invariants computed independently from the ledger's own accounts. */
static void check_accounts(run_t *R, const char *when) {
    model_t *m = R->M;
    gen_t *g = &R->G;
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->s.n_accounts; i++) R->ids[n++] = m->acc[i].id;
    /* ids that must be absent */
    uint32_t extra = 0;
    for (int k = 0; k < 4; k++) {
        u128 id = k == 0 ? MISSING_ACCT_BASE + rnd(g, 100) : 1 + rnd(g, g->acct_ids);
        if (!m_acc(m, id)) {
            R->ids[n++] = id;
            extra++;
        }
    }
    /* shuffle a little: put the missing ids at random places */
    for (uint32_t k = 0; k < extra && n > 1; k++) {
        uint32_t a = n - 1 - k, b = (uint32_t)rnd(g, n);
        u128 tmp = R->ids[a];
        R->ids[a] = R->ids[b];
        R->ids[b] = tmp;
    }
    uint32_t got = ledger_lookup_accounts(R->L, R->ids, n, R->acc_l);
    if (got != m->s.n_accounts)
        fail_now("%s: lookup_accounts returned %" PRIu32 " accounts, model has %" PRIu32, when, got,
                 m->s.n_accounts);
    uint32_t k = 0;
    char b1[1024], b2[1024];
    for (uint32_t i = 0; i < n; i++) {
        const ledger_account_t *e = m_acc(m, R->ids[i]);
        if (!e) continue;
        const ledger_account_t *a = &R->acc_l[k++];
        if (memcmp(a, e, sizeof *a) != 0) {
            fmt_account(b1, sizeof b1, e);
            fmt_account(b2, sizeof b2, a);
            fail_now("%s: account %s differs\n  expected %s\n  actual   %s", when, u128s(e->id), b1,
                     b2);
        }
    }
    /* independent invariants from the ledger's accounts */
    lsum_t sums[16];
    uint32_t ns = 0;
    for (uint32_t i = 0; i < got; i++) {
        const ledger_account_t *a = &R->acc_l[i];
        lsum_t *s = NULL;
        for (uint32_t j = 0; j < ns; j++)
            if (sums[j].ledger == a->ledger) s = &sums[j];
        if (!s) {
            MCHECK(ns < 16);
            s = &sums[ns++];
            memset(s, 0, sizeof *s);
            s->ledger = a->ledger;
        }
        sum_add(&s->dp, a->debits_pending);
        sum_add(&s->dpo, a->debits_posted);
        sum_add(&s->cp, a->credits_pending);
        sum_add(&s->cpo, a->credits_posted);
        u128 tot;
        if ((a->flags & AF_DMNEC) &&
            (!u128_add_checked(a->debits_pending, a->debits_posted, &tot) ||
             tot > a->credits_posted)) {
            fmt_account(b1, sizeof b1, a);
            fail_now(
                "%s: invariant: account with debits_must_not_exceed_credits has debits_pending + "
                "debits_posted > credits_posted: %s",
                when, b1);
        }
        if ((a->flags & AF_CMNED) &&
            (!u128_add_checked(a->credits_pending, a->credits_posted, &tot) ||
             tot > a->debits_posted)) {
            fmt_account(b1, sizeof b1, a);
            fail_now(
                "%s: invariant: account with credits_must_not_exceed_debits has credits_pending + "
                "credits_posted > debits_posted: %s",
                when, b1);
        }
        if (!u128_add_checked(a->debits_pending, a->debits_posted, &tot) ||
            !u128_add_checked(a->credits_pending, a->credits_posted, &tot)) {
            fmt_account(b1, sizeof b1, a);
            fail_now("%s: invariant: pending + posted overflows: %s", when, b1);
        }
    }
    for (uint32_t j = 0; j < ns; j++) {
        if (!sum_eq(&sums[j].dpo, &sums[j].cpo))
            fail_now("%s: invariant: ledger %" PRIu32 ": sum debits_posted %s+%" PRIu64
                     "*2^128 != sum credits_posted %s+%" PRIu64 "*2^128",
                     when, sums[j].ledger, u128s(sums[j].dpo.lo), sums[j].dpo.hi,
                     u128s(sums[j].cpo.lo), sums[j].cpo.hi);
        if (!sum_eq(&sums[j].dp, &sums[j].cp))
            fail_now("%s: invariant: ledger %" PRIu32 ": sum debits_pending %s+%" PRIu64
                     "*2^128 != sum credits_pending %s+%" PRIu64 "*2^128",
                     when, sums[j].ledger, u128s(sums[j].dp.lo), sums[j].dp.hi,
                     u128s(sums[j].cp.lo), sums[j].cp.hi);
    }
    const char *inv = ledger_check_invariants(R->L);
    if (inv) fail_now("%s: ledger_check_invariants: %s", when, inv);

    ledger_stats_t st;
    memset(&st, 0, sizeof st);
    ledger_stats(R->L, &st);
    if (st.accounts != m->s.n_accounts || st.transfers != m->s.n_transfers ||
        st.pending_open != m->s.pending_open || st.failed_ids != m->n_failed ||
        st.balances != m->s.balance_rows)
        fail_now("%s: ledger_stats differ: accounts %" PRIu32 "/%" PRIu32 " transfers %" PRIu32
                 "/%" PRIu32 " pending_open %" PRIu32 "/%" PRIu32 " failed_ids %" PRIu32 "/%" PRIu32
                 " balances %" PRIu32 "/%" PRIu32 " (expected/actual)",
                 when, m->s.n_accounts, st.accounts, m->s.n_transfers, st.transfers,
                 m->s.pending_open, st.pending_open, m->n_failed, st.failed_ids, m->s.balance_rows,
                 st.balances);
}

/* Looks up R->ids[0..n) (distinct) in both and compares. */
static void check_transfer_lookup(run_t *R, uint32_t n, const char *when) {
    model_t *m = R->M;
    uint32_t got = ledger_lookup_transfers(R->L, R->ids, n, R->tr_l);
    uint32_t k = 0;
    char b1[1024], b2[1024];
    for (uint32_t i = 0; i < n; i++) {
        const mtr_t *e = m_tr(m, R->ids[i]);
        if (!e) continue;
        if (k >= got)
            fail_now("%s: lookup_transfers: transfer %s missing (got %" PRIu32 " of %" PRIu32
                     " ids)",
                     when, u128s(R->ids[i]), got, n);
        const ledger_transfer_t *a = &R->tr_l[k++];
        if (memcmp(a, &e->t, sizeof *a) != 0) {
            fmt_transfer(b1, sizeof b1, &e->t);
            fmt_transfer(b2, sizeof b2, a);
            fail_now("%s: transfer %s differs\n  expected %s\n  actual   %s", when, u128s(e->t.id),
                     b1, b2);
        }
    }
    if (k != got)
        fail_now("%s: lookup_transfers returned %" PRIu32 " transfers, expected %" PRIu32
                 " (an id that should be absent was found)",
                 when, got, k);
}

static void check_batch_transfers(run_t *R, uint32_t n_events) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < n_events && n < 64; i++) {
        u128 id = R->tev[i].id;
        bool dup = false;
        for (uint32_t j = 0; j < n; j++)
            if (R->ids[j] == id) dup = true;
        if (!dup) R->ids[n++] = id;
    }
    check_transfer_lookup(R, n, "after batch: lookup of the batch's transfer ids");
}

static void check_sample_transfers(run_t *R) {
    model_t *m = R->M;
    gen_t *g = &R->G;
    uint32_t n = 0;
    if (m->s.n_transfers > 0) {
        for (int k = 0; k < 256; k++) {
            u128 id = m->tr[rnd(g, m->s.n_transfers)].t.id;
            bool dup = false;
            for (uint32_t j = 0; j < n; j++)
                if (R->ids[j] == id) dup = true;
            if (!dup) R->ids[n++] = id;
        }
    }
    for (uint32_t k = 0; k < 8 && g->n_failed > 0; k++) {
        u128 id = g->failed[rnd(g, g->n_failed < RING ? g->n_failed : RING)];
        bool dup = false;
        for (uint32_t j = 0; j < n; j++)
            if (R->ids[j] == id) dup = true;
        if (!dup) R->ids[n++] = id;
    }
    R->ids[n++] = 0;
    R->ids[n++] = U128_MAX;
    check_transfer_lookup(R, n, "periodic transfer lookup sample");
}

static void check_all_transfers(run_t *R) {
    model_t *m = R->M;
    for (uint32_t base = 0; base < m->s.n_transfers; base += 4096) {
        uint32_t n = 0;
        for (uint32_t i = base; i < m->s.n_transfers && n < 4096; i++) R->ids[n++] = m->tr[i].t.id;
        check_transfer_lookup(R, n, "full transfer sweep");
    }
}

static uint64_t pick_filter_ts(gen_t *g, model_t *m) {
    uint32_t r = (uint32_t)rnd(g, 100);
    uint64_t base = 0;
    if (m->s.n_transfers > 0 && r < 70)
        base = m->tr[rnd(g, m->s.n_transfers)].t.timestamp;
    else if (m->s.n_accounts > 0)
        base = m->acc[rnd(g, m->s.n_accounts)].timestamp;
    else
        base = 1 + rnd(g, 1000);
    r = (uint32_t)rnd(g, 3);
    if (r == 0 && base > 1) return base - 1;
    if (r == 1 && base < TS_MAX) return base + 1;
    return base;
}

static void gen_ts_range(gen_t *g, model_t *m, uint64_t *lo, uint64_t *hi) {
    uint32_t r = (uint32_t)rnd(g, 100);
    *lo = 0;
    *hi = 0;
    if (r < 35) return;
    if (r < 55) {
        *lo = pick_filter_ts(g, m);
    } else if (r < 75) {
        *hi = pick_filter_ts(g, m);
    } else if (r < 92) {
        uint64_t a = pick_filter_ts(g, m), b = pick_filter_ts(g, m);
        *lo = a < b ? a : b;
        *hi = a < b ? b : a;
    } else if (r < 95) {
        uint64_t a = pick_filter_ts(g, m), b = pick_filter_ts(g, m);
        if (a == b) b++;
        *lo = a > b ? a : b; /* min > max: invalid */
        *hi = a > b ? b : a;
    } else {
        switch (rnd(g, 7)) {
        case 0: *lo = TS_MAX + 1; break;
        case 1: *hi = UINT64_MAX; break;
        case 5: *hi = TS_MAX + 1 + rnd(g, 1000); break;
        case 6:
            *lo = 1 + rnd(g, 3);
            *hi = TS_MAX + 1 + rnd(g, (uint64_t)1 << 62);
            break;
        case 2: *lo = TS_MAX; break;
        case 3:
            *hi = TS_MAX;
            *lo = 1;
            break;
        default:
            *lo = UINT64_MAX;
            *hi = UINT64_MAX;
            break;
        }
    }
}

static uint32_t gen_limit(gen_t *g) {
    uint32_t r = (uint32_t)rnd(g, 100);
    if (r < 55) return (uint32_t)(1 + rnd(g, 10));
    if (r < 80) return (uint32_t)(1 + rnd(g, 300));
    if (r < 85) return 0;
    if (r < 92) return QMAX;
    return (uint32_t)(QMAX + 1 + rnd(g, 100000));
}

static void check_queries(run_t *R) {
    model_t *m = R->M;
    gen_t *g = &R->G;
    char b1[1024], b2[1024], fdesc[512];
    for (int q = 0; q < 3; q++) {
        /* ---- account filter: get_account_transfers and get_account_balances ---- */
        ledger_account_filter_t af;
        memset(&af, 0, sizeof af);
        uint32_t r = (uint32_t)rnd(g, 100);
        if (r < 20 && m->s.n_accounts > 0 && g->ppm_hub)
            af.account_id = m->acc[0].id;
        else if (r < 85 && m->s.n_accounts > 0)
            af.account_id = m->acc[rnd(g, m->s.n_accounts)].id;
        else if (r < 92)
            af.account_id = 1 + rnd(g, g->acct_ids);
        else if (r < 96)
            af.account_id = 0;
        else
            af.account_id = U128_MAX;
        if (rnd(g, 5) == 0) af.user_data_128 = 1 + rnd(g, 3);
        if (rnd(g, 5) == 0) af.user_data_64 = 1 + rnd(g, 3);
        if (rnd(g, 5) == 0) af.user_data_32 = (uint32_t)(1 + rnd(g, 3));
        if (rnd(g, 5) == 0) af.code = (uint16_t)(1 + rnd(g, 3));
        gen_ts_range(g, m, &af.timestamp_min, &af.timestamp_max);
        af.limit = gen_limit(g);
        r = (uint32_t)rnd(g, 100);
        af.flags = r < 40   ? LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS
                   : r < 65 ? LEDGER_FILTER_DEBITS
                   : r < 90 ? LEDGER_FILTER_CREDITS
                            : 0;
        if (rnd(g, 2)) af.flags |= LEDGER_FILTER_REVERSED;
        if (rnd(g, 100) == 0) af.flags |= (uint16_t)(1u << (3 + rnd(g, 13)));
        if (rnd(g, 20) == 0) { /* everything of the account: may pass the clamp */
            af.user_data_128 = af.user_data_64 = af.user_data_32 = af.code = 0;
            af.timestamp_min = af.timestamp_max = 0;
            af.limit = UINT32_MAX - (uint32_t)rnd(g, 2) * (UINT32_MAX - QMAX - 1);
            af.flags = (uint16_t)(LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS |
                                  (af.flags & LEDGER_FILTER_REVERSED));
        }
        snprintf(fdesc, sizeof fdesc,
                 "account filter {account_id=%s ud128=%s ud64=%" PRIu64 " ud32=%" PRIu32
                 " code=%u ts_min=%" PRIu64 " ts_max=%" PRIu64 " limit=%" PRIu32 " flags=0x%x}",
                 u128s(af.account_id), u128s(af.user_data_128), af.user_data_64, af.user_data_32,
                 (unsigned)af.code, af.timestamp_min, af.timestamp_max, af.limit,
                 (unsigned)af.flags);

        uint32_t ne = m_account_query(m, &af, R->tr_m, NULL);
        uint32_t na = ledger_get_account_transfers(R->L, &af, R->tr_l);
        R->queries++;
        if (ne) R->nonempty_queries++;
        if (ne == QMAX) R->clamped++;
        if (ne != na)
            fail_now("get_account_transfers: %" PRIu32 " results, expected %" PRIu32 "; %s", na, ne,
                     fdesc);
        for (uint32_t i = 0; i < ne; i++)
            if (memcmp(&R->tr_m[i], &R->tr_l[i], sizeof R->tr_m[i]) != 0) {
                fmt_transfer(b1, sizeof b1, &R->tr_m[i]);
                fmt_transfer(b2, sizeof b2, &R->tr_l[i]);
                fail_now("get_account_transfers: row %" PRIu32
                         " differs; %s\n  expected %s\n  actual   %s",
                         i, fdesc, b1, b2);
            }
        ne = m_account_query(m, &af, NULL, R->bal_m);
        na = ledger_get_account_balances(R->L, &af, R->bal_l);
        R->queries++;
        if (ne) R->nonempty_queries++;
        if (ne == QMAX) R->clamped++;
        if (ne != na)
            fail_now("get_account_balances: %" PRIu32 " results, expected %" PRIu32 "; %s", na, ne,
                     fdesc);
        for (uint32_t i = 0; i < ne; i++)
            if (memcmp(&R->bal_m[i], &R->bal_l[i], sizeof R->bal_m[i]) != 0) {
                fmt_balance(b1, sizeof b1, &R->bal_m[i]);
                fmt_balance(b2, sizeof b2, &R->bal_l[i]);
                fail_now("get_account_balances: row %" PRIu32
                         " differs; %s\n  expected %s\n  actual   %s",
                         i, fdesc, b1, b2);
            }

        /* ---- query filter: query_transfers and query_accounts ---- */
        ledger_query_filter_t qf;
        memset(&qf, 0, sizeof qf);
        if (rnd(g, 4) == 0) qf.user_data_128 = 1 + rnd(g, 3);
        if (rnd(g, 4) == 0) qf.user_data_64 = 1 + rnd(g, 3);
        if (rnd(g, 4) == 0) qf.user_data_32 = (uint32_t)(1 + rnd(g, 3));
        r = (uint32_t)rnd(g, 100);
        qf.ledger = r < 70   ? 0
                    : r < 85 ? 1
                    : r < 95 ? 2
                    : r < 98 ? OVF_LEDGER
                             : (uint32_t)rnd(g, 10);
        if (rnd(g, 4) == 0) qf.code = (uint16_t)(1 + rnd(g, 3));
        gen_ts_range(g, m, &qf.timestamp_min, &qf.timestamp_max);
        qf.limit = gen_limit(g);
        if (rnd(g, 2)) qf.flags |= LEDGER_FILTER_REVERSED;
        if (rnd(g, 100) == 0) qf.flags |= (uint16_t)(1u << (3 + rnd(g, 13)));
        if (rnd(g, 20) == 0) { /* everything: may pass the clamp */
            memset(&qf, 0, sizeof qf);
            qf.limit = UINT32_MAX - (uint32_t)rnd(g, 2) * (UINT32_MAX - QMAX - 1);
            if (rnd(g, 2)) qf.flags = LEDGER_FILTER_REVERSED;
        }
        snprintf(fdesc, sizeof fdesc,
                 "query filter {ud128=%s ud64=%" PRIu64 " ud32=%" PRIu32 " ledger=%" PRIu32
                 " code=%u ts_min=%" PRIu64 " ts_max=%" PRIu64 " limit=%" PRIu32 " flags=0x%x}",
                 u128s(qf.user_data_128), qf.user_data_64, qf.user_data_32, qf.ledger,
                 (unsigned)qf.code, qf.timestamp_min, qf.timestamp_max, qf.limit,
                 (unsigned)qf.flags);
        ne = m_query_transfers(m, &qf, R->tr_m);
        na = ledger_query_transfers(R->L, &qf, R->tr_l);
        R->queries++;
        if (ne) R->nonempty_queries++;
        if (ne == QMAX) R->clamped++;
        if (ne != na)
            fail_now("query_transfers: %" PRIu32 " results, expected %" PRIu32 "; %s", na, ne,
                     fdesc);
        for (uint32_t i = 0; i < ne; i++)
            if (memcmp(&R->tr_m[i], &R->tr_l[i], sizeof R->tr_m[i]) != 0) {
                fmt_transfer(b1, sizeof b1, &R->tr_m[i]);
                fmt_transfer(b2, sizeof b2, &R->tr_l[i]);
                fail_now("query_transfers: row %" PRIu32
                         " differs; %s\n  expected %s\n  actual   %s",
                         i, fdesc, b1, b2);
            }
        ne = m_query_accounts(m, &qf, R->qa_m);
        na = ledger_query_accounts(R->L, &qf, R->qa_l);
        R->queries++;
        if (ne) R->nonempty_queries++;
        if (ne == QMAX) R->clamped++;
        if (ne != na)
            fail_now("query_accounts: %" PRIu32 " results, expected %" PRIu32 "; %s", na, ne,
                     fdesc);
        for (uint32_t i = 0; i < ne; i++)
            if (memcmp(&R->qa_m[i], &R->qa_l[i], sizeof R->qa_m[i]) != 0) {
                fmt_account(b1, sizeof b1, &R->qa_m[i]);
                fmt_account(b2, sizeof b2, &R->qa_l[i]);
                fail_now("query_accounts: row %" PRIu32
                         " differs; %s\n  expected %s\n  actual   %s",
                         i, fdesc, b1, b2);
            }
    }
}

/* ---- batches ---- */

static uint32_t gen_count(gen_t *g) {
    uint32_t r = (uint32_t)rnd(g, 1000);
    if (r < 100) return 1;
    if (r < 600) return (uint32_t)(2 + rnd(g, 15));
    if (r < 960) return (uint32_t)(17 + rnd(g, 84));
    if (r < 997) return (uint32_t)(101 + rnd(g, 900));
    return (uint32_t)(1001 + rnd(g, BATCH_MAX_GEN - 1000)); /* up to the largest batch */
}

static uint64_t gen_gap(gen_t *g) {
    uint32_t r = (uint32_t)rnd(g, 1000);
    if (r < 700) return rnd(g, 10);
    if (r < 900) return rnd(g, 1000000);
    if (r < 990) return rnd(g, 2 * NS_PER_S);
    return rnd(g, 10 * NS_PER_S);
}

/* Imported timestamps: mostly increasing in the gap before the batch, sometimes invalid. */
static uint64_t gen_import_ts(gen_t *g, model_t *m, uint64_t *cur, uint64_t batch_ts,
                              bool accounts) {
    uint32_t r = (uint32_t)rnd(g, 1000);
    if (r < 780) {
        *cur += 1 + rnd(g, 3);
        return *cur;
    }
    if (r < 830) {
        /* an existing object's timestamp (regress / collision) */
        if (!accounts && m->s.n_accounts > 0 && rnd(g, 2))
            return m->acc[m->s.n_accounts - 1 - rnd(g, m->s.n_accounts < 3 ? m->s.n_accounts : 3)]
                .timestamp;
        if (m->s.n_transfers > 0 && (!accounts || rnd(g, 2)))
            return m->tr[m->s.n_transfers - 1 - rnd(g, m->s.n_transfers < 3 ? m->s.n_transfers : 3)]
                .t.timestamp;
        if (m->s.n_accounts > 0) return m->acc[m->s.n_accounts - 1].timestamp;
        return *cur;
    }
    if (r < 850) return 0;
    if (r < 865) return rnd(g, 2) ? TS_MAX + 1 + rnd(g, 10) : UINT64_MAX;
    if (r < 890) return batch_ts + rnd(g, 3); /* must not advance */
    if (r < 910) return *cur;                 /* same as the previous event */
    if (r < 930) return 1 + rnd(g, 1000);
    /* anywhere from a little before the last timestamp to the batch timestamp */
    uint64_t from = g->last_ts > 50 ? g->last_ts - 50 : 1;
    return from + rnd(g, batch_ts - from);
}

static void record_transfer_outcomes(run_t *R, uint32_t n) {
    gen_t *g = &R->G;
    for (uint32_t i = 0; i < n; i++) {
        const ledger_transfer_t *t = &R->tev[i];
        uint32_t r = R->res_m[i].result;
        R->tcount[r]++;
        g->rt[g->n_rt++ % RING] = *t;
        if (r == T_(CREATED) && (t->flags & TF_PENDING)) g->pend[g->n_pend++ % RING] = t->id;
        if (tr_transient(r)) g->failed[g->n_failed++ % RING] = t->id;
        if (r == T_(LINKED_EVENT_CHAIN_OPEN)) R->chains_open++;
    }
}

static void compare_transfer_results(run_t *R, uint64_t batch_ts, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (R->res_l[i].result != R->res_m[i].result ||
            R->res_l[i].timestamp != R->res_m[i].timestamp) {
            char buf[1024];
            dump_transfer_batch(R, batch_ts, n, i);
            fmt_transfer(buf, sizeof buf, &R->tev[i]);
            fail_now("create_transfers event %" PRIu32 " of %" PRIu32 " (batch timestamp %" PRIu64
                     ", slot %" PRIu64 "): %s\n  expected %s (timestamp %" PRIu64
                     ")\n  actual   %s (timestamp %" PRIu64 ")",
                     i, n, batch_ts, batch_ts - n + i + 1, buf, tcode(R->res_m[i].result),
                     R->res_m[i].timestamp, tcode(R->res_l[i].result), R->res_l[i].timestamp);
        }
    }
}

static void compare_account_results(run_t *R, uint64_t batch_ts, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (R->res_l[i].result != R->res_m[i].result ||
            R->res_l[i].timestamp != R->res_m[i].timestamp) {
            char buf[1024];
            dump_account_batch(R, batch_ts, n, i);
            fmt_account(buf, sizeof buf, &R->aev[i]);
            fail_now("create_accounts event %" PRIu32 " of %" PRIu32 " (batch timestamp %" PRIu64
                     ", slot %" PRIu64 "): %s\n  expected %s (timestamp %" PRIu64
                     ")\n  actual   %s (timestamp %" PRIu64 ")",
                     i, n, batch_ts, batch_ts - n + i + 1, buf, acode(R->res_m[i].result),
                     R->res_m[i].timestamp, acode(R->res_l[i].result), R->res_l[i].timestamp);
        }
    }
}

/* A pending transfer that is still open and has a timeout, from the recent ones; NULL if none. */
static const mtr_t *pick_open_timed_pending(gen_t *g, model_t *m) {
    for (int tries = 0; tries < 8 && g->n_pend > 0; tries++) {
        const mtr_t *p = m_tr(m, g->pend[ring_pick(g, g->n_pend)]);
        /* only near ones: jumping the clock to a far expiry would exhaust the timestamp space */
        if (p && p->status == ST_PENDING && p->t.timeout > 0 &&
            expires_at(&p->t) < g->last_ts + 120 * NS_PER_S)
            return p;
    }
    return NULL;
}

/* Returns the number of events applied. */
static uint32_t run_batch(run_t *R) {
    gen_t *g = &R->G;
    model_t *m = R->M;
    const bool few_accounts = m->s.n_accounts < g->acct_ids / 3 + 4;
    const bool accounts = chance(g, few_accounts ? 400000 : 40000);
    uint32_t n = gen_count(g);
    if (accounts && n > 100) n = 1 + (uint32_t)rnd(g, 100);
    bool imported = chance(g, g->ppm_import);
    bool prefer_new = false;
    if (!accounts && g->after_accounts && g->ppm_import > 0 && rnd(g, 3) == 0) {
        /* right after an account batch: imported transfers that may predate the new accounts */
        imported = true;
        prefer_new = true;
    }
    g->after_accounts = accounts;
    uint64_t gap = gen_gap(g);
    if (imported) gap += 4u * n + 16u + rnd(g, 100);
    uint64_t batch_ts = g->last_ts + gap + n;
    int64_t forced = -1;
    const mtr_t *target = NULL;
    if (!accounts && !imported && chance(g, g->ppm_target)) {
        /* put a post/void of an open pending transfer exactly around its expiry time */
        target = pick_open_timed_pending(g, m);
        if (target) {
            uint64_t s = expires_at(&target->t) + rnd(g, 3) - 1;
            uint32_t k = (uint32_t)rnd(g, n);
            if (s - k > g->last_ts && s - k + n - 1 <= TS_MAX) {
                batch_ts = s - k + n - 1;
                forced = k;
            } else {
                target = NULL;
            }
        }
    }
    int64_t forced_timeout = -1;
    if (!accounts && !imported && forced < 0 && chance(g, g->ppm_target) &&
        (TS_MAX - g->last_ts) / NS_PER_S < UINT32_MAX - 100) {
        /* a pending transfer whose timeout ends exactly at 2^63-1 (valid) or one second later */
        uint64_t s = g->last_ts + 1 + n;
        s += (TS_MAX - s) % NS_PER_S; /* the first timestamp >= s with (2^63-1 - ts) % 1e9 == 0 */
        uint32_t k = (uint32_t)rnd(g, n);
        if (s - k > g->last_ts && (TS_MAX - s) / NS_PER_S < UINT32_MAX) {
            batch_ts = s - k + n - 1;
            forced_timeout = k;
        }
    }
    MCHECK(batch_ts <= TS_MAX && batch_ts - n >= g->last_ts);
    g_batch++;
    R->batches_in_epoch++;

    if (accounts) {
        for (uint32_t i = 0; i < n; i++) {
            R->aev[i] = gen_account(g, m);
            R->fl[i] = R->aev[i].flags;
        }
        plan_chains(g, R->fl, n, AF_LINKED);
        for (uint32_t i = 1; i + 1 < n; i++)
            if ((R->fl[i - 1] & AF_LINKED) && (R->fl[i] & AF_LINKED) && chance(g, 30000)) {
                R->aev[i] = R->aev[i - 1];
                R->fl[i] = R->fl[i - 1];
            }
        uint64_t cur = g->last_ts;
        for (uint32_t i = 0; i < n; i++) {
            ledger_account_t *a = &R->aev[i];
            a->flags = R->fl[i];
            if (imported) {
                a->flags |= AF_IMPORTED;
                if (chance(g, 15000)) a->flags &= (uint16_t)~AF_IMPORTED;
                a->timestamp = gen_import_ts(g, m, &cur, batch_ts, true);
            } else {
                a->flags &= (uint16_t)~AF_IMPORTED;
                if (chance(g, 5000)) a->flags |= AF_IMPORTED;
            }
        }
        ledger_status_t st = ledger_create_accounts(R->L, batch_ts, R->aev, n, R->res_l);
        if (st != LEDGER_OK)
            fail_now("ledger_create_accounts returned status %s (batch timestamp %" PRIu64
                     ", count %" PRIu32 ")",
                     ledger_status_str(st), batch_ts, n);
        m_create_accounts(m, batch_ts, R->aev, n, R->res_m);
        compare_account_results(R, batch_ts, n);
        for (uint32_t i = 0; i < n; i++) {
            R->acount[R->res_m[i].result]++;
            g->ra[g->n_ra++ % RING] = R->aev[i];
        }
    } else {
        g->prefer_new = prefer_new || (imported && rnd(g, 3) == 0);
        for (uint32_t i = 0; i < n; i++) {
            const uint64_t slot = batch_ts - n + i + 1;
            if ((int64_t)i == forced) {
                ledger_transfer_t t;
                memset(&t, 0, sizeof t);
                t.id = (u128)g->next_tid++;
                t.pending_id = target->t.id;
                if (rnd(g, 2)) {
                    t.flags = TF_POST;
                    t.amount = rnd(g, 2) ? U128_MAX : target->t.amount;
                } else {
                    t.flags = TF_VOID;
                    t.amount = rnd(g, 2) ? 0 : target->t.amount;
                }
                R->tev[i] = t;
            } else {
                R->tev[i] = gen_transfer(g, m, R->tev, i, slot);
                if ((int64_t)i == forced_timeout) {
                    ledger_transfer_t *t = &R->tev[i];
                    t->flags = (uint16_t)((t->flags & ~(TF_POST | TF_VOID)) | TF_PENDING);
                    t->pending_id = 0;
                    t->timeout = (uint32_t)((TS_MAX - slot) / NS_PER_S + rnd(g, 2));
                    R->timeout_boundary++;
                }
            }
            R->fl[i] = R->tev[i].flags;
        }
        plan_chains(g, R->fl, n, TF_LINKED);
        /* an exact copy of the previous event inside one chain: `exists` of an object the
         * same chain created (and then rolls back) */
        for (uint32_t i = 1; i + 1 < n; i++)
            if ((R->fl[i - 1] & TF_LINKED) && (R->fl[i] & TF_LINKED) && chance(g, 30000)) {
                R->tev[i] = R->tev[i - 1];
                R->fl[i] = R->fl[i - 1];
            }
        uint64_t cur = g->last_ts;
        if (imported && m->s.n_transfers > 0 && (g->prefer_new || rnd(g, 6) == 0))
            cur = m->tr[m->s.n_transfers - 1].t.timestamp; /* may predate newer accounts */
        for (uint32_t i = 0; i < n; i++) {
            ledger_transfer_t *t = &R->tev[i];
            t->flags = R->fl[i];
            if (imported) {
                t->flags |= TF_IMPORTED;
                if (chance(g, 15000)) t->flags &= (uint16_t)~TF_IMPORTED;
                t->timestamp = gen_import_ts(g, m, &cur, batch_ts, false);
                if (rnd(g, 10)) t->timeout = 0;
            } else {
                t->flags &= (uint16_t)~TF_IMPORTED;
                t->timestamp = 0;
                if (chance(g, 3000)) t->flags |= TF_IMPORTED;
                if (chance(g, 3000)) t->timestamp = 1 + rnd(g, batch_ts);
            }
        }
        ledger_status_t st = ledger_create_transfers(R->L, batch_ts, R->tev, n, R->res_l);
        if (st != LEDGER_OK)
            fail_now("ledger_create_transfers returned status %s (batch timestamp %" PRIu64
                     ", count %" PRIu32 ")",
                     ledger_status_str(st), batch_ts, n);
        m_create_transfers(m, batch_ts, R->tev, n, R->res_m);
        compare_transfer_results(R, batch_ts, n);
        record_transfer_outcomes(R, n);
    }
    g->last_ts = batch_ts;
    g->last_batch_ts = batch_ts;

    check_accounts(R, "after batch");
    if (!accounts) {
        check_batch_transfers(R, n);
        uint64_t ne = m_next_expiry(m), na = ledger_next_expiry(R->L);
        if (ne != na)
            fail_now("ledger_next_expiry after batch: expected %" PRIu64 ", actual %" PRIu64, ne,
                     na);
    }
    if (R->batches_in_epoch % 256 == 0) check_all_transfers(R);
    if (R->batches_in_epoch % 32 == 0) check_sample_transfers(R);
    if (R->batches_in_epoch % 8 == 0) check_queries(R);

    /* rejected batches (the timestamp does not advance, is past 2^63-1, or too many events):
     * the call fails as a whole and nothing may change */
    if (chance(g, 3000) && g->last_batch_ts > 1) {
        ledger_transfer_t t;
        memset(&t, 0, sizeof t);
        t.id = (u128)g->next_tid;
        t.debit_account_id = pick_acct(g, m);
        t.credit_account_id = pick_partner(g, m, t.debit_account_id);
        t.ledger = 1;
        t.code = 1;
        ledger_account_t a;
        memset(&a, 0, sizeof a);
        a.id = g->next_aid;
        a.ledger = 1;
        a.code = 1;
        ledger_status_t st;
        const char *what;
        switch (rnd(g, 4)) {
        case 0:
            what = "create_transfers with a batch timestamp that does not advance";
            st = ledger_create_transfers(R->L, g->last_batch_ts - rnd(g, 2), &t, 1, R->res_l);
            if (st != LEDGER_ERR_CLOCK)
                fail_now("%s: status %s, expected %s", what, ledger_status_str(st),
                         ledger_status_str(LEDGER_ERR_CLOCK));
            break;
        case 1:
            what = "create_accounts with a batch timestamp that does not advance";
            st = ledger_create_accounts(R->L, g->last_batch_ts, &a, 1, R->res_l);
            if (st != LEDGER_ERR_CLOCK)
                fail_now("%s: status %s, expected %s", what, ledger_status_str(st),
                         ledger_status_str(LEDGER_ERR_CLOCK));
            break;
        case 2:
            what = "create_transfers with a batch timestamp past 2^63-1";
            st = ledger_create_transfers(R->L, TS_MAX + 1 + rnd(g, 1000), &t, 1, R->res_l);
            if (st == LEDGER_OK) fail_now("%s: accepted", what);
            break;
        default:
            what = "create_transfers with more than CP_BATCH_EVENTS_MAX events";
            for (uint32_t i = 0; i <= CP_BATCH_EVENTS_MAX; i++) {
                R->tev[i] = t;
                R->tev[i].id = (u128)g->next_tid + i;
            }
            st = ledger_create_transfers(R->L, g->last_ts + CP_BATCH_EVENTS_MAX + 10, R->tev,
                                         CP_BATCH_EVENTS_MAX + 1, R->res_l);
            if (st != LEDGER_ERR_BATCH_TOO_LARGE)
                fail_now("%s: status %s, expected %s", what, ledger_status_str(st),
                         ledger_status_str(LEDGER_ERR_BATCH_TOO_LARGE));
            break;
        }
        check_accounts(R, what);
    }

    /* expiry tick */
    if (chance(g, g->ppm_tick)) {
        uint64_t now = 0;
        const mtr_t *p = rnd(g, 3) == 0 ? pick_open_timed_pending(g, m) : NULL;
        if (p) {
            uint64_t x = expires_at(&p->t) + rnd(g, 3) - 1;
            if (x > g->last_ts) now = x;
        }
        if (now == 0) {
            uint32_t r = (uint32_t)rnd(g, 100);
            now = g->last_ts + 1 +
                  (r < 60   ? rnd(g, NS_PER_S)
                   : r < 95 ? rnd(g, 5 * NS_PER_S)
                            : rnd(g, 30 * NS_PER_S));
        }
        if (now <= TS_MAX) {
            uint64_t ne = m_next_expiry(m), na = ledger_next_expiry(R->L);
            if (ne != na)
                fail_now("ledger_next_expiry before tick: expected %" PRIu64 ", actual %" PRIu64,
                         ne, na);
            uint32_t ce = m_expire(m, now);
            uint32_t ca = ledger_expire(R->L, now);
            R->ticks++;
            R->expired_total += ce;
            if (ce != ca)
                fail_now("ledger_expire(now=%" PRIu64 "): expired %" PRIu32 ", expected %" PRIu32,
                         now, ca, ce);
            g->last_ts = now;
            ne = m_next_expiry(m);
            na = ledger_next_expiry(R->L);
            if (ne != na)
                fail_now("ledger_next_expiry after tick(now=%" PRIu64 "): expected %" PRIu64
                         ", actual %" PRIu64,
                         now, ne, na);
            check_accounts(R, "after expiry tick");
        }
    }
    return n;
}

static void setup_epoch_knobs(gen_t *g) {
    static const uint32_t ids[] = {4, 12, 40, 100, 200};
    g->acct_ids = ids[rnd(g, 5)];
    static const uint32_t chain[] = {10000, 40000, 100000};
    g->ppm_chain = chain[rnd(g, 3)];
    static const uint32_t bad[] = {5000, 30000, 100000};
    g->ppm_bad = bad[rnd(g, 3)];
    static const uint32_t imp[] = {0, 20000, 60000};
    g->ppm_import = imp[rnd(g, 3)];
    g->ppm_dup = (uint32_t)(40000 + rnd(g, 120000));
    g->ppm_postvoid = (uint32_t)(120000 + rnd(g, 200000));
    g->ppm_pending = (uint32_t)(100000 + rnd(g, 350000));
    g->ppm_tick = (uint32_t)(30000 + rnd(g, 150000));
    g->ppm_target = (uint32_t)(10000 + rnd(g, 50000));
    g->ppm_ovf = (uint32_t)(10000 + rnd(g, 40000));
    g->ppm_balancing = (uint32_t)(20000 + rnd(g, 100000));
    g->ppm_closing = (uint32_t)(2000 + rnd(g, 10000));
    g->ppm_hub = rnd(g, 3) == 0 ? 450000 : 0;
    /* where the clock starts: near 0, somewhere, or high enough for timeouts to overflow */
    switch (rnd(g, 3)) {
    case 0: g->last_ts = rnd(g, 1000); break;
    case 1: g->last_ts = rnd(g, (uint64_t)1 << 50); break;
    default: g->last_ts = 4940000000000000000ull + rnd(g, 100000000000000000ull); break;
    }
    g->last_batch_ts = 0;
    g->next_tid = 1;
    g->next_aid = g->acct_ids + 1;
    g->ovf_gen = 0;
    g->n_rt = g->n_ra = g->n_pend = g->n_failed = 0;
}

static void print_coverage(const run_t *R) {
    fprintf(stderr, "transfer result coverage:\n");
    for (uint32_t i = 0; i < LEDGER_TRANSFER_RESULT_COUNT; i++)
        fprintf(stderr, "  %-55s %" PRIu64 "\n", tcode(i), R->tcount[i]);
    fprintf(stderr, "account result coverage:\n");
    for (uint32_t i = 0; i < LEDGER_ACCOUNT_RESULT_COUNT; i++)
        fprintf(stderr, "  %-55s %" PRIu64 "\n", acode(i), R->acount[i]);
    fprintf(stderr,
            "ticks=%" PRIu64 " expired=%" PRIu64 " queries=%" PRIu64 " (non-empty %" PRIu64
            ", clamped to %u: %" PRIu64 ") chains_open=%" PRIu64 " timeout_boundary=%" PRIu64
            " exists_in_chain=%" PRIu64 "\n",
            R->ticks, R->expired_total, R->queries, R->nonempty_queries, QMAX, R->clamped,
            R->chains_open, R->timeout_boundary, g_cov_exists_in_chain);
}

static uint64_t env_u64(const char *name, uint64_t dflt, bool *found) {
    const char *s = getenv(name);
    if (found) *found = false;
    if (!s || !*s) return dflt;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 0);
    if (!end || *end != '\0') return dflt;
    if (found) *found = true;
    return (uint64_t)v;
}

static void test_ledger_random(void **state) {
    bool sanitized = env_u64("CELLPAY_SANITIZED", 0, NULL) == 1;
    uint64_t total = env_u64("CELLPAY_RANDOM_EVENTS", sanitized ? 200000 : 1000000, NULL);
    if (total == 0) total = sanitized ? 200000 : 1000000;
    g_events_total = total;

    run_t *R = calloc(1, sizeof *R);
    assert_non_null(R);
    *state = R; /* freed by the teardown, also after a failure */
    R->G.r.state = g_seed;

    uint64_t done = 0;
    g_epoch = 0;
    while (done < total) {
        gen_t *g = &R->G;
        g_epoch++;
        const uint64_t epoch_len = 20000 + rnd(g, 80001);
        uint64_t todo = total - done < epoch_len ? total - done : epoch_len;
        setup_epoch_knobs(g);
        const uint32_t tr_cap = (uint32_t)epoch_len + BATCH_MAX_GEN + 16;
        ledger_config_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.accounts_max = LEDGER_ACCOUNTS_MAX;
        cfg.transfers_max = tr_cap;
        R->L = ledger_create(&cfg);
        assert_non_null(R->L);
        R->M = m_new(tr_cap, epoch_len + BATCH_MAX_GEN + 64);
        R->batches_in_epoch = 0;
        uint64_t in_epoch = 0, next_ovf_gen = 4000;
        while (in_epoch < todo) {
            in_epoch += run_batch(R);
            if (in_epoch >= next_ovf_gen) { /* fresh overflow accounts from time to time */
                g->ovf_gen++;
                next_ovf_gen += 4000;
            }
        }
        check_all_transfers(R);
        done += in_epoch;
        ledger_destroy(R->L);
        R->L = NULL;
        m_free(R->M);
        R->M = NULL;
    }
    print_coverage(R);
    fprintf(stderr, "seed=%" PRIu64 " events=%" PRIu64 " epochs=%" PRIu32 " batches=%" PRIu64 "\n",
            g_seed, done, g_epoch, g_batch);
}

static int teardown_run(void **state) {
    run_t *R = *state;
    if (R) {
        if (R->L) ledger_destroy(R->L);
        m_free(R->M);
        free(R);
        *state = NULL;
    }
    return 0;
}

int main(void) {
    bool found = false;
    uint64_t seed = env_u64("CELLPAY_SEED", 0, &found);
    if (!found) {
        struct timespec tsp;
        clock_gettime(CLOCK_REALTIME, &tsp);
        prng_t mix = {.state = (uint64_t)tsp.tv_sec * NS_PER_S + (uint64_t)tsp.tv_nsec};
        seed = prng_next(&mix);
    }
    g_seed = seed;
    printf("seed=%" PRIu64 "\n", seed);
    fflush(stdout);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ledger_random, teardown_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
