#!/usr/bin/env python3
"""Cross-cell payments (docs/cross-cell.md) through the API of a real `cellpay start`.

The merchant's cell keeps its keys and out_trade_no's; the buyer's cell pays; the relay
credits the merchant. Checked: the answers and errors, replays byte for byte, duplicates
across cells and against local payments, a refused payment giving its out_trade_no back, the
credit arriving (merchant_credit turns "credited"), refunds of cross-cell payments (TCC: the
buyer's cell holds the amount, the merchant's cell tries, the buyer's cell decides; the relay
takes the decision to the merchant's cell), and, under load with SIGKILL and restart,
that every acknowledged payment is debited once and credited once (`cellpay admin check`
nets every pair of cells' clearing accounts to zero).

usage: xcell_test.py path/to/cellpay
"""
import os
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apilib import Api, Checks, Server, err_code, pay_body, transfer, zone  # noqa: E402

CELLPAY = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="cellpay-xcell-")
check = Checks()
SERVER = Server(CELLPAY, TMP, cells=4)

# 4 cells: zones 0-24 cell 1, 25-49 cell 2, 50-74 cell 3, 75-99 cell 4.
M1, M3 = 100030, 100600           # merchants in cells 1 and 3
B1, B2, B4 = 200040, 200300, 200800  # buyers in cells 1, 2 and 4
POOR = 200310                     # cell 2, 5 CNY
UNKNOWN = 200390                  # cell 2, never opened
LOAD_BUYERS = [300000 + 10 * z for z in range(25, 100, 3)]  # cells 2-4
assert all(zone(u) >= 25 for u in LOAD_BUYERS)


def setup(api):
    ms = {}
    for uid in (M1, M3):
        s, j, _, _ = api.admin("POST", "/v1/merchants", {"uid": str(uid)})
        check(f"merchant {uid}", s == 201, (s, j))
        ms[uid] = {"uid": uid, "secret": j["secret"]}
    for uid, amount in [(B1, 10000), (B2, 10000), (B4, 10000), (POOR, 5)] + \
            [(u, 1000000) for u in LOAD_BUYERS]:
        api.admin("POST", "/v1/users", {"uid": str(uid), "currency": "CNY"})
        s, j, _, _ = api.admin("POST", f"/v1/users/{uid}/topups",
                               {"amount": str(amount), "currency": "CNY"})
        check(f"top-up {uid}", s == 201, (s, j))
    return ms


def wait_credited(api, m, pay_id, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        s, j, _, _ = api.merchant(m, "GET", f"/v1/payments/{pay_id}")
        if s == 200 and j.get("merchant_credit") == "credited":
            return j
        time.sleep(0.05)
    return None


def test_flow(api, ms):
    m1, m3 = ms[M1], ms[M3]
    body = pay_body(B2, 100, "x-1")
    s, j, raw, h = api.merchant(m1, "POST", "/v1/payments", body, key="xk-1")
    check("cross-cell payment: 201, pending", s == 201 and j["status"] == "succeeded" and
          j["merchant_credit"] == "pending" and j["buyer_uid"] == str(B2) and
          j["merchant_uid"] == str(M1) and j["amount"] == "100" and j["out_trade_no"] == "x-1",
          (s, j))
    pay = j
    check("buyer debited in its cell", api.balance(B2) == 9900)
    s2, _, raw2, h2 = api.merchant(m1, "POST", "/v1/payments", body, key="xk-1")
    check("replay: same bytes, replay header", s2 == 201 and raw2 == raw and
          h2.get("Idempotent-Replayed") == "true", (s2, raw2, raw, h2))
    check("replay moved nothing", api.balance(B2) == 9900)
    s, j, _, _ = api.merchant(m1, "POST", "/v1/payments", pay_body(B2, 101, "x-1"), key="xk-1")
    check("same key, other body: 409", s == 409 and err_code(j) == "idempotency_conflict", (s, j))
    s, j, _, _ = api.merchant(m1, "POST", "/v1/payments", pay_body(B4, 7, "x-1"), key="xk-2")
    check("same out_trade_no, buyer in a third cell: 409",
          s == 409 and err_code(j) == "duplicate_out_trade_no", (s, j))
    s, j, _, _ = api.merchant(m1, "POST", "/v1/payments", pay_body(B1, 7, "x-1"), key="xk-3")
    check("same out_trade_no, buyer in the merchant's cell: 409",
          s == 409 and err_code(j) == "duplicate_out_trade_no", (s, j))
    check("duplicates moved nothing", api.balance(B4) == 10000 and api.balance(B1) == 10000)
    s, j, _, _ = api.merchant(m1, "POST", "/v1/payments", pay_body(B1, 5, "l-1"), key="lk-1")
    check("local payment", s == 201 and j["merchant_credit"] == "credited", (s, j))
    s, j, _, _ = api.merchant(m1, "POST", "/v1/payments", pay_body(B2, 5, "l-1"), key="lk-2")
    check("cross-cell with a local payment's out_trade_no: 409",
          s == 409 and err_code(j) == "duplicate_out_trade_no", (s, j))
    # A refusal in the buyer's cell gives the out_trade_no back; its key keeps the refusal.
    s, j, raw_poor, _ = api.merchant(m1, "POST", "/v1/payments", pay_body(POOR, 6, "x-poor"),
                                     key="pk-1")
    check("cross-cell, insufficient funds: 402",
          s == 402 and err_code(j) == "insufficient_funds", (s, j))
    s, j, raw, h = api.merchant(m1, "POST", "/v1/payments", pay_body(POOR, 6, "x-poor"),
                                key="pk-1")
    check("refusal replayed", s == 402 and raw == raw_poor and
          h.get("Idempotent-Replayed") == "true", (s, raw, h))
    api.admin("POST", f"/v1/users/{POOR}/topups", {"amount": "10", "currency": "CNY"})
    s, j, _, _ = api.merchant(m1, "POST", "/v1/payments", pay_body(POOR, 6, "x-poor"), key="pk-2")
    check("after a refusal, the out_trade_no is free", s == 201, (s, j))
    poor_pay = j if s == 201 else None
    s, j, raw, _ = api.merchant(m1, "POST", "/v1/payments", pay_body(POOR, 6, "x-poor"),
                                key="pk-1")
    check("the refused key still answers its refusal", s == 402 and raw == raw_poor, (s, raw))
    check("poor buyer paid once", api.balance(POOR) == 9)
    s, j, _, _ = api.merchant(m1, "POST", "/v1/payments", pay_body(UNKNOWN, 1, "x-u"), key="uk")
    check("unknown buyer in another cell: 404", s == 404 and err_code(j) == "not_found", (s, j))
    # The credit arrives.
    j = wait_credited(api, m1, pay["id"])
    check("merchant credited", j is not None and dict(j, merchant_credit="pending") == pay, (j, pay))
    check("the other one too", poor_pay is not None and wait_credited(api, m1, poor_pay["id"]))
    s, j, _, _ = api.merchant(m3, "GET", f"/v1/payments/{pay['id']}")
    check("another merchant does not see it", s == 404, (s, j))
    s, j, _, _ = api.admin("GET", f"/v1/users/{B2}/payments")
    check("in the buyer's list", s == 200 and [p["id"] for p in j["data"]] == [pay["id"]], (s, j))
    return pay, raw2


# ---- refunds of cross-cell payments (TCC) ----

CNY = 0x594E43  # pay_currency_pack("CNY"): the three letters' bytes, little-endian
CELL_OF = {M1: 1, M3: 3}


def cell_addrs():
    """{cell: its client addresses}, from the route table `cellpay start` wrote."""
    cells = {}
    with open(os.path.join(SERVER.data, "routes")) as f:
        for line in f:
            p = line.split()
            if len(p) == 3 and p[0] == "cell":
                cells[int(p[1])] = p[2]
    return cells


def receivable(merchant_uid):
    """(available, pending) of a merchant's receivable, read from its cell's ledger: the API
    shows users' balances only."""
    acc = (merchant_uid << 64) | (2 << 32) | CNY  # pay_account_id(uid, MERCHANT, CNY)
    req = json.dumps({"op": "lookup_accounts", "ids": [str(acc)]}) + "\n"
    r = subprocess.run([CELLPAY, "client", "--addr", cell_addrs()[CELL_OF[merchant_uid]]],
                       input=req, capture_output=True, text=True, timeout=30)
    accounts = json.loads(r.stdout).get("accounts") or [None]
    a = accounts[0]
    if a is None:
        return (0, 0)
    pending = int(a["debits_pending"])
    return (int(a["credits_posted"]) - int(a["debits_posted"]) - pending, pending)


def pending_of(api, uid):
    s, j, _, _ = api.admin("GET", f"/v1/users/{uid}/balance?currency=CNY")
    return j["pending"] if s == 200 else None


def wait_for(fn, want, seconds=20):
    deadline = time.time() + seconds
    got = fn()
    while got != want and time.time() < deadline:
        time.sleep(0.05)
        got = fn()
    return got


def refund(api, m, pay_id, amount, orn, key):
    return api.merchant(m, "POST", "/v1/refunds",
                        {"payment_id": pay_id, "amount": str(amount), "out_request_no": orn},
                        key=key)


def refunded(api, m, pay_id):
    s, j, _, _ = api.merchant(m, "GET", f"/v1/payments/{pay_id}")
    return j.get("refunded") if s == 200 else None


def test_refunds(api, ms, pay):
    """pay: B2 (cell 2) paid M1 (cell 1) 100, credited."""
    m1, m3 = ms[M1], ms[M3]
    recv0, bal0 = receivable(M1), api.balance(B2)
    s, j, raw, h = refund(api, m1, pay["id"], 30, "r-1", "rk-1")
    check("cross-cell refund: 201", s == 201 and j["object"] == "refund" and
          j["status"] == "succeeded" and j["payment_id"] == pay["id"] and j["amount"] == "30" and
          j["out_request_no"] == "r-1" and j["buyer_uid"] == str(B2) and
          j["merchant_uid"] == str(M1) and "Idempotent-Replayed" not in h, (s, j, h))
    if s != 201:
        return
    check("buyer refunded in its cell", api.balance(B2) == bal0 + 30, (api.balance(B2), bal0))
    got = wait_for(lambda: receivable(M1), (recv0[0] - 30, 0))
    check("merchant's receivable debited once the confirm is applied",
          got == (recv0[0] - 30, 0), (got, recv0))
    check("payment's refunded grew", refunded(api, m1, pay["id"]) == "30")
    s2, j2, _, _ = api.merchant(m1, "GET", f"/v1/refunds/{j['id']}")
    check("GET the refund", s2 == 200 and j2 == j, (s2, j2, j))
    s2, j2, _, _ = api.merchant(m3, "GET", f"/v1/refunds/{j['id']}")
    check("another merchant does not see the refund", s2 == 404 and err_code(j2) == "not_found",
          (s2, j2))
    s2, _, raw2, h2 = refund(api, m1, pay["id"], 30, "r-1", "rk-1")
    check("refund replayed: same bytes, replay header", s2 == 201 and raw2 == raw and
          h2.get("Idempotent-Replayed") == "true", (s2, raw2, raw, h2))
    check("the replay moved nothing", api.balance(B2) == bal0 + 30 and
          refunded(api, m1, pay["id"]) == "30")
    s2, j2, _, _ = refund(api, m1, pay["id"], 31, "r-1", "rk-1")
    check("same key, other body: 409", s2 == 409 and err_code(j2) == "idempotency_conflict",
          (s2, j2))
    s2, j2, _, _ = refund(api, m1, pay["id"], 5, "r-1", "rk-dup")
    check("duplicate out_request_no: 409", s2 == 409 and
          err_code(j2) == "duplicate_out_request_no", (s2, j2))
    s2, j2, _, _ = refund(api, m1, pay["id"], 71, "r-2", "rk-2")
    check("more than is left: 409", s2 == 409 and err_code(j2) == "refund_exceeds_payment",
          (s2, j2))
    for i, amount in enumerate((20, 20, 30)):  # 30 + 70: exactly the payment
        s2, j2, _, _ = refund(api, m1, pay["id"], amount, f"r-s{i}", f"rk-s{i}")
        check(f"partial refund {i}: 201", s2 == 201 and j2["amount"] == str(amount), (s2, j2))
    s2, j2, _, _ = refund(api, m1, pay["id"], 1, "r-last", "rk-last")
    check("one more after the whole payment: 409", s2 == 409 and
          err_code(j2) == "refund_exceeds_payment", (s2, j2))
    check("refunded whole", refunded(api, m1, pay["id"]) == "100")
    check("buyer got the whole payment back", api.balance(B2) == bal0 + 100,
          (api.balance(B2), bal0))
    got = wait_for(lambda: receivable(M1), (recv0[0] - 100, 0))
    check("merchant's receivable down by the whole payment, nothing pending",
          got == (recv0[0] - 100, 0), (got, recv0))
    check("buyer's balance: nothing pending", pending_of(api, B2) == "0")


def test_refunds_parallel(api, ms):
    """Refunds of one payment at once, from a third cell (4 -> 1): the buyer's cell holds each
    refund's amount while it is trying, so together they never pass the payment."""
    m1 = ms[M1]
    s, pay, _, _ = api.merchant(m1, "POST", "/v1/payments", pay_body(B4, 100, "x-par"),
                                key="xpar")
    check("payment from cell 4", s == 201, (s, pay))
    check("credited", wait_credited(api, m1, pay["id"]) is not None)
    recv0, bal0 = receivable(M1), api.balance(B4)
    results = []

    def one(i):
        s, j, _, _ = refund(Api(SERVER), m1, pay["id"], 25, f"r-par{i}", f"rk-par{i}")
        results.append((s, err_code(j)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ok = [r for r in results if r[0] == 201]
    over = [r for r in results if r == (409, "refund_exceeds_payment")]
    check("five refunds of a quarter at once: four made, one refused",
          len(ok) == 4 and len(over) == 1, results)
    check("refunded whole", refunded(api, m1, pay["id"]) == "100")
    check("buyer got 100", api.balance(B4) == bal0 + 100, (api.balance(B4), bal0))
    got = wait_for(lambda: receivable(M1), (recv0[0] - 100, 0))
    check("merchant's receivable down by 100, nothing pending", got == (recv0[0] - 100, 0),
          (got, recv0))


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def set_cell_addrs(cell, addrs):
    r = subprocess.run([CELLPAY, "admin", "routes", "set", "--file",
                        os.path.join(SERVER.data, "routes"), "--cell", str(cell),
                        "--addrs", addrs], capture_output=True, text=True, timeout=30)
    return r.returncode == 0


def test_refund_refused(api, ms):
    """A Try the merchant's cell refuses: the refund is cancelled and answered with the
    refusal, and its out_request_no is free again. Made deterministic by hiding M3's cell from
    the relays (they read DIR/routes; the gateway of `cellpay start` does not): the payment's
    credit cannot arrive, so M3's receivable (nothing before) cannot hold the refund."""
    m3 = ms[M3]
    addrs = cell_addrs()[3]
    check("cell 3 hidden from the relays", set_cell_addrs(3, f"127.0.0.1:{closed_port()}"))
    pay = None
    try:
        time.sleep(1.5)  # a relay looks at the file every 0.5 s
        s, pay, _, _ = api.merchant(m3, "POST", "/v1/payments", pay_body(B2, 50, "x-early"),
                                    key="xe-1")
        check("payment to M3", s == 201, (s, pay))
        bal = api.balance(B2)
        s, j, raw, _ = refund(api, m3, pay["id"], 20, "r-early", "re-1")
        check("refund before the merchant was credited: 402", s == 402 and
              err_code(j) == "insufficient_funds", (s, j))
        s, j, raw2, h = refund(api, m3, pay["id"], 20, "r-early", "re-1")
        check("refusal replayed", s == 402 and raw2 == raw and
              h.get("Idempotent-Replayed") == "true", (s, raw2, raw, h))
        check("the refusal moved nothing", api.balance(B2) == bal and
              refunded(api, m3, pay["id"]) == "0")
    finally:
        check("cell 3 shown to the relays again", set_cell_addrs(3, addrs))
    if not pay or "id" not in pay:
        return
    check("credited once the relays see cell 3", wait_credited(api, m3, pay["id"]) is not None)
    s, j, _, _ = refund(api, m3, pay["id"], 20, "r-early", "re-2")
    check("the out_request_no is free again: 201", s == 201, (s, j))
    check("buyer refunded", api.balance(B2) == bal + 20, (api.balance(B2), bal))
    s, j, _, _ = refund(api, m3, pay["id"], 20, "r-early", "re-1")
    check("the refused key keeps its refusal", s == 402, (s, j))
    got = wait_for(lambda: receivable(M3), (30, 0))
    check("M3: 50 credited, 20 refunded, nothing pending", got == (30, 0), got)


# Transfers: senders and recipients of their own, so the balances above stay as they are.
T1, T1B = 400040, 400050  # cell 1
T2 = 400300               # cell 2
T3_USD = 400600           # cell 3, a USD account only
T4_UNKNOWN = 400890       # cell 4, never opened


def transfer_get(api, tid):
    s, j, _, _ = api.admin("GET", f"/v1/transfers/{tid}")
    return j if s == 200 else None


def test_transfers(api):
    """User-to-user transfers: within cell 1 in one step, and from cell 1 to other cells by TCC
    (the sender's money held, the recipient's cell tries a credit, the sender's cell decides;
    the relay confirms the credit)."""
    for uid, cur, amount in [(T1, "CNY", 1000), (T1B, "CNY", 0), (T2, "CNY", 0),
                             (T3_USD, "USD", 0)]:
        s, j, _, _ = api.admin("POST", "/v1/users", {"uid": str(uid), "currency": cur})
        check(f"transfer user {uid}", s == 201, (s, j))
        if amount:
            s, j, _, _ = api.admin("POST", f"/v1/users/{uid}/topups",
                                   {"amount": str(amount), "currency": cur})
            check(f"transfer top-up {uid}", s == 201, (s, j))
    s, j, _, _ = transfer(api, T1, T1B, 100, "tk-local")
    check("local transfer: 201", s == 201 and j["object"] == "transfer" and
          j["id"].startswith("tr_") and len(j["id"]) == 35 and j["from_uid"] == str(T1) and
          j["to_uid"] == str(T1B) and j["amount"] == "100" and j["currency"] == "CNY" and
          j["status"] == "succeeded" and isinstance(j["created_at"], int), (s, j))
    check("local transfer moved the money", api.balance(T1) == 900 and api.balance(T1B) == 100)
    g = transfer_get(api, j["id"]) if s == 201 else None
    check("local transfer's GET", g is not None and g["status"] == "succeeded" and
          g["recipient_credit"] == "credited" and g["amount"] == "100", g)

    s, j, raw, h = transfer(api, T1, T2, 200, "tk-x")
    check("cross-cell transfer: 201 succeeded", s == 201 and j["status"] == "succeeded" and
          j["to_uid"] == str(T2) and "Idempotent-Replayed" not in h, (s, j, h))
    check("sender debited at once", api.balance(T1) == 700 and pending_of(api, T1) == "0")
    got = wait_for(lambda: api.balance(T2), 200)
    check("recipient credited once the relay confirms", got == 200, got)
    if s == 201:
        got = wait_for(lambda: (transfer_get(api, j["id"]) or {}).get("recipient_credit"),
                       "credited")
        check("GET: recipient_credit credited", got == "credited", got)
        g = transfer_get(api, j["id"])
        check("GET: the transfer as created", g is not None and g["status"] == "succeeded" and
              {k: g[k] for k in j} == j, (g, j))
    s2, _, raw2, h2 = transfer(api, T1, T2, 200, "tk-x")
    check("cross-cell transfer replayed", s2 == 201 and raw2 == raw and
          h2.get("Idempotent-Replayed") == "true", (s2, raw2, raw, h2))
    s, j, _, _ = transfer(api, T1, T2, 201, "tk-x")
    check("same key, other body: 409", s == 409 and err_code(j) == "idempotency_conflict", (s, j))
    check("replay and conflict moved nothing", api.balance(T1) == 700 and api.balance(T2) == 200)

    s, j, raw, _ = transfer(api, T1, T2, 701, "tk-poor")
    check("cross-cell, insufficient funds: 402",
          s == 402 and err_code(j) == "insufficient_funds", (s, j))
    s, j, _, _ = transfer(api, T1, T4_UNKNOWN, 50, "tk-unknown")
    check("unknown recipient in another cell: 404", s == 404 and err_code(j) == "not_found", (s, j))
    s, j, _, _ = transfer(api, T1, T3_USD, 50, "tk-cur")
    check("recipient in another cell without CNY: 400 currency_mismatch",
          s == 400 and err_code(j) == "currency_mismatch", (s, j))
    s, j, _, _ = transfer(api, T1, T2, 5, "tk-usd", currency="USD")
    check("sender without the currency: 400 currency_mismatch",
          s == 400 and err_code(j) == "currency_mismatch", (s, j))
    s, j, _, _ = transfer(api, T1, T1, 5, "tk-self")
    check("to oneself: 400", s == 400 and err_code(j) == "invalid_request", (s, j))
    check("refusals moved nothing, nothing held",
          api.balance(T1) == 700 and pending_of(api, T1) == "0" and api.balance(T2) == 200,
          (api.balance(T1), pending_of(api, T1), api.balance(T2)))
    s, j, _, _ = api.admin("GET", "/v1/transfers/tr_" + "0" * 32)
    check("GET of no transfer: 404", s == 404 and err_code(j) == "not_found", (s, j))
    # A cancelled transfer's answer is its refusal, without its id; the cell draws ids in
    # sequence, so the next transfer of the same sender has the id after it.
    s, j, _, _ = transfer(api, T1, T4_UNKNOWN, 50, "tk-unknown-2")
    check("unknown recipient again: 404", s == 404, (s, j))
    s, j, _, _ = transfer(api, T1, T1B, 1, "tk-after")
    check("a local transfer after it", s == 201, (s, j))
    if s == 201:
        cancelled = "tr_%032x" % (int(j["id"][3:], 16) - 1)
        g = transfer_get(api, cancelled)
        check("GET: the cancelled transfer and why", g is not None and
              g["status"] == "cancelled" and g["cancel_reason"] == "not_found" and
              g["from_uid"] == str(T1) and g["to_uid"] == str(T4_UNKNOWN) and
              g["amount"] == "50" and "recipient_credit" not in g, g)


def admin_check():
    r = subprocess.run([CELLPAY, "admin", "check", "--data", SERVER.data],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


# ---- load with a SIGKILL in the middle ----

class Load:
    def __init__(self, ms):
        self.ms = ms
        self.lock = threading.Lock()
        self.acked = []  # (id, buyer, amount, merchant uid)
        self.refused = 0
        self.stop = False

    def worker(self, tid):
        api = Api(SERVER)
        rng = random.Random(tid)
        n = 0
        while not self.stop:
            n += 1
            buyer = rng.choice(LOAD_BUYERS)
            m = self.ms[rng.choice((M1, M3))]
            amount = rng.randint(1, 50)
            body = pay_body(buyer, amount, f"load-{tid}-{n}")
            while True:  # the same key until a definitive answer: applied once at most
                try:
                    s, j, _, _ = api.merchant(m, "POST", "/v1/payments", body, key=f"lk-{tid}-{n}")
                except OSError:
                    s, j = None, None
                if s == 201:
                    with self.lock:
                        self.acked.append((j["id"], buyer, amount, m["uid"]))
                    break
                if s is not None and 400 <= s < 500:
                    with self.lock:
                        self.refused += 1
                    break
                time.sleep(0.05)


def test_load_kill(ms, before):
    load = Load(ms)
    threads = [threading.Thread(target=load.worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    check("load made payments", len(load.acked) > 0, len(load.acked))
    SERVER.stop(signal.SIGKILL)
    time.sleep(0.5)
    SERVER.start()
    time.sleep(2)
    load.stop = True
    for t in threads:
        t.join(timeout=120)
    check("no refusals under load", load.refused == 0, load.refused)
    api = Api(SERVER)
    spent = {}
    for _, buyer, amount, _ in load.acked:
        spent[buyer] = spent.get(buyer, 0) + amount
    wrong = [(u, before[u], spent.get(u, 0), api.balance(u)) for u in LOAD_BUYERS
             if api.balance(u) != before[u] - spent.get(u, 0)]
    check("every acknowledged payment debited exactly once", not wrong, wrong[:5])
    pending = [p for p in load.acked if not wait_credited(api, ms[p[3]], p[0], seconds=30)]
    check("every acknowledged payment credited", not pending, pending[:5])
    rc, out = admin_check()
    check("admin check clean after the load", rc == 0 and "clearing cells" in out and
          "MISMATCH" not in out, out)
    print(f"load: {len(load.acked)} payments acknowledged across a SIGKILL", flush=True)


def main():
    try:
        SERVER.start()
        api = Api(SERVER)
        ms = setup(api)
        pay, first_raw = test_flow(api, ms)
        test_refunds(api, ms, pay)
        test_refunds_parallel(api, ms)
        test_refund_refused(api, ms)
        test_transfers(api)
        rc, out = admin_check()
        check("admin check: clearing nets to zero", rc == 0 and "MISMATCH" not in out and
              ("clearing cells 1 and 2" in out or "clearing cells 2 and 1" in out), out)
        before = {u: api.balance(u) for u in LOAD_BUYERS}
        test_load_kill(ms, before)
        api = Api(SERVER)
        s, _, raw, _ = api.merchant(ms[M1], "POST", "/v1/payments", pay_body(B2, 100, "x-1"),
                                    key="xk-1")
        check("after SIGKILL and restart the first answer is replayed", s == 201 and
              raw == first_raw, (s, raw))
        for m in (M1, M3):
            got = wait_for(lambda: receivable(m)[1], 0)
            check(f"merchant {m}: nothing left pending", got == 0, got)
        check("clean stop", SERVER.stop() == 0)
    finally:
        if SERVER.proc:
            SERVER.proc.kill()
        if not check.fails:
            shutil.rmtree(TMP, ignore_errors=True)
        else:
            print("kept", TMP, flush=True)
    check.finish("xcell_test")


if __name__ == "__main__":
    main()
