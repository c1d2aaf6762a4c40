/* libFuzzer target: the ledger state machine fed raw 128-byte events. The input is a series
 * of batches: a header byte (bit 7: transfers, else accounts; bit 6: run expiry first; low 6
 * bits: events in the batch) followed by that many 128-byte events (a short tail is zero
 * padded). Whatever the events say, the ledger must not crash, must answer every event, and
 * its invariants must hold after every batch. */
#include <stdint.h>
#include <string.h>

#include "base/assert.h"
#include "ledger/ledger.h"

#define EVENTS_MAX 63

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ledger_config_t cfg = {.accounts_max = 256, .transfers_max = 1024};
    ledger_t *l = ledger_create(&cfg);
    cp_assert(l != NULL);
    static union {
        ledger_transfer_t transfers[EVENTS_MAX];
        ledger_account_t accounts[EVENTS_MAX];
    } ev;
    ledger_transfer_t *events = ev.transfers;
    static ledger_result_t results[EVENTS_MAX];
    uint64_t clock = 1000;
    size_t pos = 0;
    while (pos < size) {
        uint8_t h = data[pos++];
        uint32_t n = h & 0x3f;
        memset(&ev, 0, sizeof ev);
        size_t bytes = (size_t)n * 128;
        size_t take = size - pos < bytes ? size - pos : bytes;
        memcpy(events, data + pos, take);
        pos += take;
        /* Give the clock a fuzzed step too, so timeouts and imported timestamps meet it. */
        clock += 1 + n + (h & 0x40 ? (uint64_t)(events[0].user_data_64 & 0xffffffffffull) : 0);
        if (h & 0x40) ledger_expire(l, clock - n);
        ledger_status_t st;
        for (uint32_t i = 0; i < n; i++) results[i].result = UINT32_MAX;
        if (h & 0x80)
            st = ledger_create_transfers(l, clock, events, n, results);
        else
            st = ledger_create_accounts(l, clock, ev.accounts, n, results);
        if (st == LEDGER_OK) {
            for (uint32_t i = 0; i < n; i++)
                cp_assert((h & 0x80) ? results[i].result < LEDGER_TRANSFER_RESULT_COUNT
                                     : results[i].result < LEDGER_ACCOUNT_RESULT_COUNT);
        }
        const char *err = ledger_check_invariants(l);
        if (err) {
            fprintf(stderr, "invariant broken: %s\n", err);
            abort();
        }
    }
    ledger_destroy(l);
    return 0;
}
