/* The payment API of shared/docs/api-v1.md without the network: which endpoint a method and
 * path name, the ids of the API's objects, an HTTP request turned into the cell's
 * pay_request_t / pay_query_t, and the cell's answer rendered as the API's JSON with its HTTP
 * status. Pure functions over caller-owned buffers: gateway.c runs them on its loop, the unit
 * tests and fuzz/fuzz_api.c call them directly. Nothing here allocates or logs. */
#ifndef CP_API_H
#define CP_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/u128.h"
#include "cell/pay.h"
#include "gateway/api_json.h"
#include "gateway/http.h"
#include "gateway/json_out.h"

#define API_ID_HEX 32u               /* hex digits of a u128 id */
#define API_ID_MAX 40u               /* "pay_" + 32 hex + NUL, with room */
#define API_IDEMPOTENCY_KEY_MAX 64u  /* Idempotency-Key: 1 ..= 64 printable ASCII characters */
#define API_LIST_LIMIT_DEFAULT 10u   /* a list's `limit` when absent */
#define API_RENDER_MAX (128u << 10u) /* the largest answer: a list of 100 payments fits */

typedef enum api_endpoint {
    API_EP_NONE = 0,
    API_EP_HEALTH,          /* GET /v1/health */
    API_EP_MERCHANT_CREATE, /* POST /v1/merchants (operator) */
    API_EP_USER_CREATE,     /* POST /v1/users (operator) */
    API_EP_TOPUP_CREATE,    /* POST /v1/users/{uid}/topups (operator) */
    API_EP_BALANCE,         /* GET /v1/users/{uid}/balance?currency=XXX (operator) */
    API_EP_USER_PAYMENTS,   /* GET /v1/users/{uid}/payments (operator) */
    API_EP_PAYMENT_CREATE,  /* POST /v1/payments (merchant) */
    API_EP_PAYMENT_GET,     /* GET /v1/payments/{id} (merchant) */
    API_EP_REFUND_CREATE,   /* POST /v1/refunds (merchant) */
    API_EP_REFUND_GET,      /* GET /v1/refunds/{id} (merchant) */
    API_EP_TRANSFER_CREATE, /* POST /v1/transfers (operator) */
    API_EP_TRANSFER_GET,    /* GET /v1/transfers/{id} (operator) */
    API_EP_COUNT,
} api_endpoint_t;

typedef enum api_auth {
    API_AUTH_NONE = 0,     /* health */
    API_AUTH_OPERATOR = 1, /* Authorization: Bearer <admin key> */
    API_AUTH_MERCHANT = 2, /* X-Cellpay-Merchant / -Timestamp / -Signature */
} api_auth_t;

/* What a method and path name. status 0: an endpoint; 404: no such path (also a path whose
 * uid or id is malformed: nothing can live there); 405: the path exists, not with this method
 * (allow: the methods it takes, for the Allow header). HEAD is taken wherever GET is. */
typedef struct api_match {
    api_endpoint_t endpoint;
    int status;
    const char *allow;
    uint64_t uid; /* /v1/users/{uid}/... */
    u128 id;      /* /v1/payments/{id}, /v1/refunds/{id}, /v1/transfers/{id} */
} api_match_t;

void api_match(const char *method, const char *path, size_t path_len, api_match_t *out);
api_auth_t api_endpoint_auth(api_endpoint_t e);
const char *api_endpoint_name(api_endpoint_t e);

/* Ids: prefix ("pay_", "re_", "tu_", "tr_") and the u128 as exactly 32 lowercase hex digits.
 * api_id_format writes a NUL-terminated id into out (API_ID_MAX) and returns its length;
 * api_id_parse takes exactly that form (len bytes, no NUL needed). */
size_t api_id_format(const char *prefix, u128 id, char out[API_ID_MAX]);
bool api_id_parse(const char *prefix, const char *s, size_t len, u128 *out);
/* A uid as the contract writes it: decimal u64 above 0, no sign, no leading zero. */
bool api_uid_parse(const char *s, size_t len, uint64_t *out);

/* The value of name in a query string (a=1&b=2; no percent-decoding: every value the API
 * takes is plain), or false when absent. The first occurrence wins. */
bool api_query_param(const char *query, size_t query_len, const char *name, const char **value,
                     size_t *value_len);

/* A request for a cell: the op and its one item. */
typedef struct api_call {
    uint8_t op;     /* PROTO_OP_PAY or PROTO_OP_PAY_QUERY */
    uint32_t limit; /* a list: the limit the client asked (the query asks limit, +1 is added by
                       the cell's reply for has_more) */
    union {
        pay_request_t req;
        pay_query_t query;
    } u;
} api_call_t;

/* A refusal before any cell is asked: status and the contract's error object. */
typedef struct api_fail {
    int status;
    const char *code;
    char param[32];
    char message[160];
} api_fail_t;

/* Turns an authenticated request of endpoint m into a call: the body decoded (api_json.h),
 * path and query parameters checked, idem_key = XXH3-128 of the Idempotency-Key header (0 when
 * absent), body_hash = XXH3-128 of METHOD "\n" PATH "\n" BODY, actor the signed merchant (0:
 * the operator). A merchant's new secret is left zero: the caller draws it. False with *fail
 * filled (400 invalid_request with param) when the request is not acceptable. */
bool api_build(const api_match_t *m, const http_request_t *r, uint64_t actor, api_call_t *out,
               api_fail_t *fail);
/* The uid the call is routed by (pay_request_route_uid / pay_query_route_uid). */
uint64_t api_call_route_uid(const api_call_t *c);

/* The HTTP status and error code of a pay_code_t (pay.h); message: a short text for errors.
 * PAY_OK 200, PAY_CREATED 201, the rest as listed in pay.h; an unknown code 500
 * internal_error. */
int api_code_status(uint32_t code, const char **error_code, const char **message);

/* One object as the API's JSON (payment, refund, top-up, user, merchant, balance, transfer:
 * as a write answers it, without recipient_credit, which only its query knows). */
void api_render_object(json_out_t *o, const pay_object_t *obj);

/* The answer to a call of endpoint e: status is the client's (a negative client_error_t, or
 * the cell's proto status), objs/n the reply items, limit the list's. Writes the JSON body
 * into buf (cap bytes, API_RENDER_MAX is enough) and returns its length; *http_status the
 * status; *replayed whether it is an idempotent replay of an earlier answer. */
size_t api_render_reply(api_endpoint_t e, int32_t status, const pay_object_t *objs, uint32_t n,
                        uint32_t limit, char *buf, size_t cap, int *http_status, bool *replayed);

#endif
