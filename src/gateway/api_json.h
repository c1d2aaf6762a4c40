/* Decoding of the HTTP API's request bodies (shared/docs/api-v1.md) into fixed structs, with
 * the contract's rules checked on the way: uids are decimal strings of u64 (not 0), money is a
 * decimal string of integer minor units (never a JSON number, never a fraction, above 0, no
 * leading zeros), currencies are three capital letters, merchant-given numbers 1 to 64
 * printable ASCII characters. A body is one JSON object; a field the endpoint does not take, a
 * field given twice, a missing required field or a value of the wrong form is refused with an
 * error naming the field (`invalid_request`, param). Decoding allocates nothing. */
#ifndef CP_API_JSON_H
#define CP_API_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/u128.h"

#define API_TEXT_MAX 64u   /* out_trade_no, out_request_no, payment ids */
#define API_TOKENS_MAX 64u /* JSON tokens in one body: the bodies are small and flat */

typedef enum api_funding { API_FUNDING_BALANCE = 1, API_FUNDING_CREDIT = 2 } api_funding_t;

typedef struct api_error {
    const char *code; /* "invalid_request" */
    char param[32];   /* the field, "" for the body as a whole */
    char message[160];
} api_error_t;

typedef struct api_merchant_req {
    uint64_t uid;
} api_merchant_req_t;

typedef struct api_user_req {
    uint64_t uid;
    char currency[4];
} api_user_req_t;

typedef struct api_topup_req {
    u128 amount;
    char currency[4];
} api_topup_req_t;

typedef struct api_payment_req {
    uint64_t buyer_uid;
    u128 amount;
    char currency[4];
    char out_trade_no[API_TEXT_MAX + 1];
    uint8_t funding; /* api_funding_t; "balance" when absent */
} api_payment_req_t;

typedef struct api_refund_req {
    char payment_id[API_TEXT_MAX + 1];
    u128 amount;
    char out_request_no[API_TEXT_MAX + 1];
} api_refund_req_t;

typedef struct api_transfer_req {
    uint64_t from_uid;
    uint64_t to_uid;
    u128 amount;
    char currency[4];
} api_transfer_req_t;

/* Each: true with *out filled, or false with *err saying why. len bytes of body (any bytes). */
bool api_decode_merchant(const char *body, size_t len, api_merchant_req_t *out, api_error_t *err);
bool api_decode_user(const char *body, size_t len, api_user_req_t *out, api_error_t *err);
bool api_decode_topup(const char *body, size_t len, api_topup_req_t *out, api_error_t *err);
bool api_decode_payment(const char *body, size_t len, api_payment_req_t *out, api_error_t *err);
bool api_decode_refund(const char *body, size_t len, api_refund_req_t *out, api_error_t *err);
/* Also refuses from_uid == to_uid (param to_uid): a transfer to oneself moves nothing. */
bool api_decode_transfer(const char *body, size_t len, api_transfer_req_t *out, api_error_t *err);

#endif
