/* The relay's recovery on real processes: two cells of one replica each (`cellpay node --cell 1
 * --zones 0-49` and `--cell 2 --zones 50-99`, both with --routes and --tcc-recover-after 1).
 * A cross-cell payment from a buyer of cell 1 to a merchant of cell 2, then a refund of it left
 * as a dead gateway leaves it: recorded trying in cell 1 and held by a Try in cell 2, never
 * decided. Within seconds cell 1's relay decides it cancelled (status relay_recovered), the
 * refund's key answers the cancel, and the Cancel reaches cell 2 and is acknowledged (the
 * outbox is empty again; a later Try is refused as cancelled: the branch is cancelled, its
 * hold voided in the same entry).
 *
 * usage: proc_relay_recover CELLPAY_BINARY */
#include "two_cells_proc.h"

/* The order in cell 2 and the payment in cell 1; returns when its credit is acknowledged. */
static u128 cross_cell_payment(void) {
    uint32_t cny = pay_currency_pack("CNY");
    two_cells_parties();
    pay_request_t r = {.kind = PAY_KIND_ORDER,
                       .idem_key = 1,
                       .body_hash = 1,
                       .actor = MERCHANT,
                       .uid = BUYER,
                       .amount = 100,
                       .currency = cny,
                       .funding = 1};
    strcpy(r.text, "otn-1");
    pay_object_t o = pay1(2, &r);
    if (o.code != PAY_CREATED) FAIL("order: %u", o.code);
    r.kind = PAY_KIND_PAYMENT;
    r.payment_id = r.idem_key = o.id;
    r.peer_cell = 2;
    if (pay1(1, &r).code != PAY_CREATED) FAIL("payment");
    uint64_t until = np_now_ms() + WAIT_MS;
    while (status(1).outbox_backlog != 0)
        if (np_now_ms() > until)
            FAIL("the credit was not delivered");
        else
            np_sleep_ms(50);
    return o.id;
}

static pay_request_t refund_request(u128 p) {
    pay_request_t r = {.kind = PAY_KIND_REFUND,
                       .idem_key = 2,
                       .body_hash = 2,
                       .actor = MERCHANT,
                       .payment_id = p,
                       .amount = 40,
                       .peer_cell = 2};
    strcpy(r.text, "r-1");
    return r;
}

static pay_request_t try_request(u128 rid) {
    return (pay_request_t){.kind = PAY_KIND_TRY,
                           .payment_id = rid,
                           .actor = MERCHANT,
                           .uid = BUYER,
                           .amount = 40,
                           .currency = pay_currency_pack("CNY"),
                           .peer_cell = 1};
}

int main(int argc, char **argv) {
    if (argc < 2) FAIL("usage: proc_relay_recover CELLPAY_BINARY");
    two_cells_start(argv[1], "recover");
    u128 p = cross_cell_payment();
    pay_request_t rr = refund_request(p);
    pay_object_t o = pay1(1, &rr);
    if (o.kind != PAY_KIND_REFUND || o.code != PAY_TRYING)
        FAIL("refund: kind %u code %u", o.kind, o.code);
    u128 rid = o.id;
    pay_request_t tr = try_request(rid);
    if (pay1(2, &tr).code != PAY_CREATED) FAIL("try");
    if (status(1).tcc_trying != 1) FAIL("the status does not count the activity trying");
    /* The gateway is gone: nothing decides but the relay of cell 1, after 1 s. */
    uint64_t until = np_now_ms() + WAIT_MS;
    for (;;) {
        proto_status_reply_t s = status(1);
        if (s.relay_recovered >= 1 && s.outbox_backlog == 0 && s.tcc_trying == 0) break;
        if (np_now_ms() > until)
            FAIL("not recovered: relay_recovered %llu, outbox %llu, trying %llu",
                 (unsigned long long)s.relay_recovered, (unsigned long long)s.outbox_backlog,
                 (unsigned long long)s.tcc_trying);
        np_sleep_ms(100);
    }
    o = pay1(1, &rr);
    if (o.kind != PAY_KIND_REFUND || o.code != PAY_ERR_CANCELLED || !o.replayed)
        FAIL("the refund's key answers kind %u code %u", o.kind, o.code);
    if (pay1(2, &tr).code != PAY_ERR_CANCELLED) FAIL("the Cancel did not reach cell 2");
    two_cells_stop();
    printf("proc_relay_recover: ok\n");
    return 0;
}
