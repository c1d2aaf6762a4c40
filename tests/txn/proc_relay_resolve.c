/* The relay's resolver on real processes: two cells of one replica each (`cellpay node --cell 1
 * --zones 0-49` and `--cell 2 --zones 50-99`, both with --routes and --tcc-recover-after 1).
 * An order in cell 2 (the merchant's) for a buyer of cell 1, naming cell 1 as the buyer's, left
 * as a dead gateway leaves it: never paid. Within seconds cell 2's relay asks cell 1 (which
 * stores its tombstone) and releases the order (status relay_resolved): the order's key answers
 * cancelled, the dead gateway's late payment in cell 1 is answered cancelled (replayed) and
 * debits nothing, and the out_trade_no is free for a new order.
 *
 * usage: proc_relay_resolve CELLPAY_BINARY */
#include "two_cells_proc.h"

static pay_request_t order_request(u128 key) {
    pay_request_t r = {.kind = PAY_KIND_ORDER,
                       .idem_key = key,
                       .body_hash = 7,
                       .actor = MERCHANT,
                       .uid = BUYER,
                       .amount = 100,
                       .currency = pay_currency_pack("CNY"),
                       .funding = 1,
                       .peer_cell = 1};
    strcpy(r.text, "otn-1");
    return r;
}

static u128 balance(void) {
    pay_query_t q = {.kind = PAY_Q_BALANCE, .uid = BUYER, .currency = pay_currency_pack("CNY")};
    pay_object_t o = {0};
    uint32_t size = 0;
    int32_t st =
        client_call_once(np[0].addr, PROTO_OP_PAY_QUERY, &q, sizeof q, &o, sizeof o, &size, 5000);
    if (st != 0 || size != sizeof o || o.code != PAY_OK) FAIL("balance query");
    return o.amount;
}

int main(int argc, char **argv) {
    if (argc < 2) FAIL("usage: proc_relay_resolve CELLPAY_BINARY");
    two_cells_start(argv[1], "resolve");
    two_cells_parties();
    pay_request_t ro = order_request(1);
    pay_object_t o = pay1(2, &ro);
    if (o.kind != PAY_KIND_ORDER || o.code != PAY_CREATED)
        FAIL("order: kind %u code %u", o.kind, o.code);
    u128 p = o.id;
    if (status(2).orders_reserved != 1) FAIL("the status does not count the order reserved");
    /* The gateway is gone: nothing pays nor releases but the resolver of cell 2, after 1 s. */
    uint64_t until = np_now_ms() + WAIT_MS;
    for (;;) {
        proto_status_reply_t s = status(2);
        if (s.relay_resolved >= 1 && s.orders_reserved == 0) break;
        if (np_now_ms() > until)
            FAIL("not resolved: relay_resolved %llu", (unsigned long long)s.relay_resolved);
        np_sleep_ms(100);
    }
    o = pay1(2, &ro);
    if (o.kind != PAY_KIND_PAYMENT || o.code != PAY_ERR_CANCELLED || !o.replayed)
        FAIL("the order's key answers kind %u code %u", o.kind, o.code);
    /* The dead gateway's payment, late: the tombstone. */
    pay_request_t late = ro;
    late.kind = PAY_KIND_PAYMENT;
    late.payment_id = late.idem_key = p;
    late.peer_cell = 2;
    o = pay1(1, &late);
    if (o.kind != PAY_KIND_PAYMENT || o.code != PAY_ERR_CANCELLED || !o.replayed)
        FAIL("the late payment: kind %u code %u", o.kind, o.code);
    if (balance() != 1000) FAIL("the late payment moved money");
    pay_request_t again = order_request(2);
    if (pay1(2, &again).code != PAY_CREATED) FAIL("the out_trade_no is not free again");
    two_cells_stop();
    printf("proc_relay_resolve: ok\n");
    return 0;
}
