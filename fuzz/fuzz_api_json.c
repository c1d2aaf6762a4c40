/* The API's request bodies (src/gateway/api_json.h) on arbitrary bytes: every decoder runs;
 * nothing may crash, an error names a code and a message, and an accepted payment written
 * back as JSON decodes to the same request. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/assert.h"
#include "gateway/api_json.h"

static void roundtrip(const api_payment_req_t *p) {
    char amount[U128_DEC_MAX + 1], body[512];
    u128_format(p->amount, amount);
    int n = snprintf(body, sizeof body,
                     "{\"buyer_uid\":\"%llu\",\"amount\":\"%s\",\"currency\":\"%s\","
                     "\"out_trade_no\":\"%s\",\"funding\":\"%s\"}",
                     (unsigned long long)p->buyer_uid, amount, p->currency, p->out_trade_no,
                     p->funding == API_FUNDING_CREDIT ? "credit" : "balance");
    api_payment_req_t q;
    api_error_t e;
    cp_assert(n > 0 && (size_t)n < sizeof body && api_decode_payment(body, (size_t)n, &q, &e));
    cp_assert(memcmp(p, &q, sizeof q) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *body = (const char *)data;
    api_error_t e;
    api_payment_req_t p;
    api_merchant_req_t m;
    api_user_req_t u;
    api_topup_req_t t;
    api_refund_req_t r;
    if (api_decode_payment(body, size, &p, &e))
        roundtrip(&p);
    else
        cp_assert(e.code && e.message[0]);
    (void)api_decode_merchant(body, size, &m, &e);
    (void)api_decode_user(body, size, &u, &e);
    (void)api_decode_topup(body, size, &t, &e);
    (void)api_decode_refund(body, size, &r, &e);
    return 0;
}
