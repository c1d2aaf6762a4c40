#!/usr/bin/env python3
"""The HTTP API (shared/docs/api-v1.md, docs/api.md) against a real `cellpay start` process.

Every endpoint and error code, signatures and timestamps, idempotent replay and conflict,
duplicate order numbers, refund limits, merchant isolation, malformed, oversized, slow and
partial requests, a client that disconnects mid-request, and a restart (clean, then SIGKILL)
with the data intact. Python's standard library only.

usage: api_test.py path/to/cellpay
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apilib import Api, Checks, Server, err_code, pay_body, sign  # noqa: E402

CELLPAY = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="cellpay-api-")
check = Checks()
SERVER = Server(CELLPAY, TMP, cells=4)
DATA = SERVER.data
API = Api(SERVER, timeout=10)  # one keep-alive connection, reopened once when it breaks
call, admin, merchant_call = API.call, API.admin, API.merchant


# uids: zone(uid) = (uid / 10) mod 100; 4 cells split the zones 0-24, 25-49, 50-74, 75-99.
MA, MB, MC = 100030, 100050, 100600  # merchants in zones 3, 5 (cell 1) and 60 (cell 3)
BUYER, OTHER, POOR = 200040, 200070, 200080  # zones 4, 7, 8: cell 1
# 200190 (zone 19, cell 1) is never opened.


def test_health_and_operator_auth():
    s, j, _, _ = call("GET", "/v1/health")
    check("health 200", s == 200 and j.get("status") == "ok", j)
    s, j, _, _ = call("POST", "/v1/users", {"uid": "5", "currency": "CNY"})
    check("no admin key: 401 unauthorized", s == 401 and err_code(j) == "unauthorized", (s, j))
    s, j, _, _ = call("POST", "/v1/users", {"uid": "5", "currency": "CNY"},
                      {"Authorization": "Bearer " + "0" * 64})
    check("wrong admin key: 401 unauthorized", s == 401 and err_code(j) == "unauthorized", (s, j))
    s, j, _, _ = call("GET", "/v1/nowhere")
    check("unknown path: 404 not_found", s == 404 and err_code(j) == "not_found", (s, j))
    s, j, _, _ = admin("DELETE", "/v1/users")
    check("unsupported method answered 4xx/5xx with the error object",
          s in (404, 405, 501) and err_code(j) is not None, (s, j))


def test_merchants_and_users():
    ms = {}
    for uid in (MA, MB, MC):
        s, j, _, _ = admin("POST", "/v1/merchants", {"uid": str(uid)})
        check(f"merchant {uid} created 201", s == 201 and j["object"] == "merchant" and
              j["id"] == str(uid) and j["uid"] == str(uid) and
              re.fullmatch(r"[0-9a-f]{64}", j.get("secret", "")), (s, j))
        ms[uid] = {"uid": uid, "secret": j["secret"]}
    s, j, _, _ = admin("POST", "/v1/merchants", {"uid": str(MA)})
    check("merchant twice: 409 merchant_exists, no secret",
          s == 409 and err_code(j) == "merchant_exists" and b"secret" not in _, (s, j))
    for uid in (BUYER, OTHER, POOR, MA):
        s, j, _, _ = admin("POST", "/v1/users", {"uid": str(uid), "currency": "CNY"})
        check(f"user {uid} opened 201", s == 201 and j["object"] == "user" and
              j["uid"] == str(uid) and j["currency"] == "CNY" and j["id"] == str(uid) and
              j["account_id"].isdigit(), (s, j))
    s1, j1, raw1, _ = admin("POST", "/v1/users", {"uid": str(BUYER), "currency": "CNY"})
    check("user opened twice: 200, the same user", s1 == 200 and j1["uid"] == str(BUYER), (s1, j1))
    s, j, _, _ = admin("POST", "/v1/users", {"uid": str(BUYER), "currency": "CNY", "x": 1})
    check("unknown field: 400 invalid_request naming it",
          s == 400 and err_code(j) == "invalid_request" and j["error"].get("param") == "x", (s, j))
    s, j, _, _ = admin("POST", "/v1/users", {"uid": "12a", "currency": "CNY"})
    check("bad uid: 400 param uid", s == 400 and j["error"].get("param") == "uid", (s, j))
    s, j, _, _ = call("POST", "/v1/users", raw=b'{"uid":"1",', headers={"Authorization": "Bearer " + SERVER.admin_key})
    check("malformed JSON: 400 invalid_request", s == 400 and err_code(j) == "invalid_request", (s, j))
    return ms


def test_topups_and_balance():
    s, j, _, _ = admin("POST", f"/v1/users/{BUYER}/topups", {"amount": "10000", "currency": "CNY"})
    check("topup 201", s == 201 and j["object"] == "topup" and j["amount"] == "10000" and
          j["currency"] == "CNY" and j["id"].startswith("tu_"), (s, j))
    admin("POST", f"/v1/users/{OTHER}/topups", {"amount": "500", "currency": "CNY"})
    admin("POST", f"/v1/users/{POOR}/topups", {"amount": "5", "currency": "CNY"})
    s, j, _, _ = admin("POST", "/v1/users/200190/topups", {"amount": "1", "currency": "CNY"})
    check("topup of an unknown user: 404 not_found", s == 404 and err_code(j) == "not_found", (s, j))
    s, j, _, _ = admin("POST", f"/v1/users/{BUYER}/topups", {"amount": "1", "currency": "USD"})
    check("topup in another currency: 400 currency_mismatch",
          s == 400 and err_code(j) == "currency_mismatch", (s, j))
    s, j, _, _ = admin("POST", f"/v1/users/{BUYER}/topups", {"amount": "1.5", "currency": "CNY"})
    check("fractional amount: 400 param amount", s == 400 and j["error"].get("param") == "amount", (s, j))
    s, j, _, _ = admin("POST", f"/v1/users/{BUYER}/topups", {"amount": 15, "currency": "CNY"})
    check("numeric amount: 400 param amount", s == 400 and j["error"].get("param") == "amount", (s, j))
    check("balance after topup", balance(BUYER) == "10000")
    s, j, _, _ = admin("GET", "/v1/users/200190/balance?currency=CNY")
    check("balance of an unknown user: 404", s == 404 and err_code(j) == "not_found", (s, j))


def balance(uid, cur="CNY"):
    s, j, _, _ = admin("GET", f"/v1/users/{uid}/balance?currency={cur}")
    check(f"balance {uid} 200", s == 200 and j["object"] == "balance" and j["uid"] == str(uid) and
          j["currency"] == cur and j["pending"] == "0", (s, j))
    return j.get("available")


def test_payments(ms):
    a, b, c = ms[MA], ms[MB], ms[MC]
    body = pay_body(BUYER, 1999, "order-1")
    s, j, raw, h = merchant_call(a, "POST", "/v1/payments", body, key="key-1")
    check("payment 201", s == 201 and j["object"] == "payment" and j["status"] == "succeeded" and
          j["buyer_uid"] == str(BUYER) and j["merchant_uid"] == str(MA) and
          j["amount"] == "1999" and j["currency"] == "CNY" and j["out_trade_no"] == "order-1" and
          j["refunded"] == "0" and j["merchant_credit"] == "credited" and
          isinstance(j["created_at"], int) and abs(j["created_at"] / 1000 - time.time()) < 60 and
          j["id"].startswith("pay_"), (s, j))
    pay = j
    check("buyer paid", balance(BUYER) == "8001")
    # Idempotency: the same key and body answer the first response again; nothing moves.
    s2, j2, raw2, h2 = merchant_call(a, "POST", "/v1/payments", body, key="key-1")
    check("replay: same status and body", s2 == 201 and raw2 == raw, (s2, raw2, raw))
    check("replay moved nothing", balance(BUYER) == "8001")
    s, j, _, _ = merchant_call(a, "POST", "/v1/payments", pay_body(BUYER, 5, "order-x"), key="key-1")
    check("same key, other body: 409 idempotency_conflict",
          s == 409 and err_code(j) == "idempotency_conflict", (s, j))
    s, j, _, _ = merchant_call(a, "POST", "/v1/payments", pay_body(BUYER, 7, "order-1"), key="key-2")
    check("duplicate out_trade_no: 409", s == 409 and err_code(j) == "duplicate_out_trade_no", (s, j))
    check("duplicate moved nothing", balance(BUYER) == "8001")
    s, j, _, _ = merchant_call(b, "POST", "/v1/payments", pay_body(BUYER, 1, "order-1"), key="key-1")
    check("another merchant may use the same order number and key", s == 201, (s, j))
    s, j, _, _ = merchant_call(a, "POST", "/v1/payments", pay_body(POOR, 6, "order-poor"), key="k3")
    check("insufficient funds: 402", s == 402 and err_code(j) == "insufficient_funds", (s, j))
    check("refused payment moved nothing", balance(POOR) == "5")
    s, j, _, _ = merchant_call(a, "POST", "/v1/payments", pay_body(200190, 1, "o-unknown"), key="k4")
    check("unknown buyer: 404", s == 404 and err_code(j) == "not_found", (s, j))
    # Cross-cell (tests/api/xcell_test.py has the rest): the buyer pays now, the credit follows.
    s, j, _, _ = merchant_call(c, "POST", "/v1/payments", pay_body(BUYER, 1, "o-cross"), key="k5")
    check("merchant in another cell: 201, credit pending", s == 201 and
          j["merchant_credit"] == "pending" and j["merchant_uid"] == str(MC), (s, j))
    check("cross-cell payment debited the buyer", balance(BUYER) == "7999")
    s, j, _, _ = merchant_call(a, "POST", "/v1/payments", pay_body(BUYER, 1, "o-k"), key="x" * 65)
    check("idempotency key over 64 chars: 400", s == 400 and err_code(j) == "invalid_request", (s, j))
    # Signatures and timestamps: 401 and nothing changes.
    body = pay_body(BUYER, 10, "order-sig")
    s, j, _, _ = merchant_call(a, "POST", "/v1/payments", body, sig="0" * 64)
    check("wrong signature: 401 invalid_signature", s == 401 and err_code(j) == "invalid_signature", (s, j))
    s, j, _, _ = merchant_call(a, "POST", "/v1/payments", body, ts=str(int(time.time()) - 1000))
    check("old timestamp: 401 stale_timestamp", s == 401 and err_code(j) == "stale_timestamp", (s, j))
    s, j, _, _ = merchant_call(a, "POST", "/v1/payments", body, ts=str(int(time.time()) + 1000))
    check("future timestamp: 401 stale_timestamp", s == 401 and err_code(j) == "stale_timestamp", (s, j))
    forged = {"uid": MB, "secret": a["secret"]}
    s, j, _, _ = merchant_call(forged, "POST", "/v1/payments", body)
    check("signed with another merchant's secret: 401", s == 401 and err_code(j) == "invalid_signature", (s, j))
    s, j, _, _ = merchant_call({"uid": 100990, "secret": "ab" * 32}, "POST", "/v1/payments", body)
    check("unknown merchant: 401 unauthorized", s == 401 and err_code(j) == "unauthorized", (s, j))
    s, j, _, _ = call("POST", "/v1/payments", body)
    check("unsigned: 401 unauthorized", s == 401 and err_code(j) == "unauthorized", (s, j))
    check("failed signatures moved nothing", balance(BUYER) == "7999")
    # Reading a payment: the owner sees it; another merchant does not.
    s, j, _, _ = merchant_call(a, "GET", f"/v1/payments/{pay['id']}")
    check("GET payment", s == 200 and j == pay, (s, j, pay))
    s, j, _, _ = merchant_call(b, "GET", f"/v1/payments/{pay['id']}")
    check("another merchant's payment: 404", s == 404 and err_code(j) == "not_found", (s, j))
    s, j, _, _ = merchant_call(a, "GET", "/v1/payments/pay_" + "0" * 32)
    check("unknown payment: 404", s == 404 and err_code(j) == "not_found", (s, j))
    s, j, _, _ = merchant_call(a, "GET", "/v1/payments/garbage")
    check("malformed payment id: 404", s == 404 and err_code(j) == "not_found", (s, j))
    return pay


def test_refunds(ms, pay):
    a, b = ms[MA], ms[MB]
    rb = {"payment_id": pay["id"], "amount": "999", "out_request_no": "r-1"}
    s, j, raw, _ = merchant_call(a, "POST", "/v1/refunds", rb, key="rk-1")
    check("refund 201", s == 201 and j["object"] == "refund" and j["payment_id"] == pay["id"] and
          j["amount"] == "999" and j["status"] == "succeeded" and j["id"].startswith("re_"), (s, j))
    refund = j
    check("refund credited the buyer", balance(BUYER) == "8998")
    s2, _, raw2, _ = merchant_call(a, "POST", "/v1/refunds", rb, key="rk-1")
    check("refund replay: same answer", s2 == 201 and raw2 == raw, (s2, raw2))
    s, j, _, _ = merchant_call(a, "POST", "/v1/refunds", dict(rb, out_request_no="r-2", amount="1001"), key="rk-2")
    check("refund beyond the payment: 409 refund_exceeds_payment",
          s == 409 and err_code(j) == "refund_exceeds_payment", (s, j))
    s, j, _, _ = merchant_call(a, "POST", "/v1/refunds", dict(rb, amount="5"), key="rk-3")
    check("duplicate out_request_no: 409", s == 409 and err_code(j) == "duplicate_out_request_no", (s, j))
    s, j, _, _ = merchant_call(a, "POST", "/v1/refunds", dict(rb, out_request_no="r-3", amount="1000"), key="rk-4")
    check("refund of the rest: 201", s == 201, (s, j))
    s, j, _, _ = merchant_call(a, "POST", "/v1/refunds", dict(rb, out_request_no="r-4", amount="1"), key="rk-5")
    check("nothing left to refund: 409", s == 409 and err_code(j) == "refund_exceeds_payment", (s, j))
    check("buyer has the whole payment back", balance(BUYER) == "9998")
    s, j, _, _ = merchant_call(b, "POST", "/v1/refunds", dict(rb, out_request_no="r-b", amount="1"), key="rk-6")
    check("another merchant refunding: 404", s == 404 and err_code(j) == "not_found", (s, j))
    s, j, _, _ = merchant_call(a, "GET", f"/v1/refunds/{refund['id']}")
    check("GET refund", s == 200 and j == refund, (s, j))
    s, j, _, _ = merchant_call(b, "GET", f"/v1/refunds/{refund['id']}")
    check("another merchant's refund: 404", s == 404, (s, j))
    s, j, _, _ = merchant_call(a, "GET", f"/v1/payments/{pay['id']}")
    check("payment shows refunded", s == 200 and j["refunded"] == "1999", (s, j))
    return refund


def test_lists(ms):
    a = ms[MA]
    ids = []
    for i in range(5):
        s, j, _, _ = merchant_call(a, "POST", "/v1/payments", pay_body(OTHER, 10 + i, f"list-{i}"), key=f"lk-{i}")
        ids.append(j["id"])
    s, j, _, _ = admin("GET", f"/v1/users/{OTHER}/payments?limit=2")
    check("list: object list, newest first, has_more",
          s == 200 and j["object"] == "list" and [p["id"] for p in j["data"]] == ids[::-1][:2] and
          j["has_more"] is True, (s, j))
    s, j, _, _ = admin("GET", f"/v1/users/{OTHER}/payments?limit=2&starting_after={ids[3]}")
    check("list: starting_after", s == 200 and [p["id"] for p in j["data"]] == [ids[2], ids[1]] and
          j["has_more"] is True, (s, j))
    s, j, _, _ = admin("GET", f"/v1/users/{OTHER}/payments?starting_after={ids[1]}")
    check("list: the end", s == 200 and [p["id"] for p in j["data"]] == [ids[0]] and
          j["has_more"] is False, (s, j))
    s, j, _, _ = admin("GET", f"/v1/users/{OTHER}/payments")
    check("list: default limit 10 holds all 5", s == 200 and len(j["data"]) == 5 and
          j["has_more"] is False, (s, j))
    s, j, _, _ = admin("GET", f"/v1/users/{OTHER}/payments?limit=101")
    check("list: limit above 100 is 400", s == 400 and err_code(j) == "invalid_request", (s, j))
    s, j, _, _ = admin("GET", f"/v1/users/{POOR}/payments")
    check("list: a user with no payments", s == 200 and j["data"] == [] and j["has_more"] is False, (s, j))
    return ids


def raw_exchange(data, wait=0.0, shutdown=True, timeout=15):
    s = socket.create_connection(("127.0.0.1", SERVER.port), timeout=timeout)
    for i, part in enumerate(data if isinstance(data, list) else [data]):
        if i:
            time.sleep(wait)
        s.sendall(part)
    if shutdown:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    s.close()
    return out


def test_bad_http():
    big = b"x" * (64 * 1024 + 1)
    out = raw_exchange(b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
    check("body over 64 KiB: 413", out.startswith(b"HTTP/1.1 413"), out[:80])
    out = raw_exchange(b"GARBAGE\r\n\r\n")
    check("malformed request line: 400", out.startswith(b"HTTP/1.1 400"), out[:80])
    # Slow but whole: pieces a little apart are one request.
    req = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    out = raw_exchange([req[:7], req[7:20], req[20:]], wait=0.3)
    check("slow request answered", out.startswith(b"HTTP/1.1 200"), out[:80])
    # Partial then gone: the server must go on serving others.
    s = socket.create_connection(("127.0.0.1", SERVER.port))
    s.sendall(b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"uid\":")
    s.close()
    s = socket.create_connection(("127.0.0.1", SERVER.port))
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
    s.shutdown(socket.SHUT_WR)
    s.close()
    s, j, _, _ = call("GET", "/v1/health")
    check("still serving after clients vanished mid-request", s == 200)
    # A payment whose client disconnects before the answer: it happens once or not at all.
    c = socket.create_connection(("127.0.0.1", SERVER.port))
    body = json.dumps(pay_body(BUYER, 1, "gone-1"), separators=(",", ":")).encode()
    ts = str(int(time.time()))
    sig = sign(MS[MA]["secret"], "POST", "/v1/payments", ts, body)
    c.sendall(b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Idempotency-Key: gone-1\r\nX-Cellpay-Merchant: %d\r\nX-Cellpay-Timestamp: %s\r\n"
              b"X-Cellpay-Signature: %s\r\nContent-Length: %d\r\n\r\n" % (MA, ts.encode(), sig.encode(), len(body)) + body)
    c.close()
    time.sleep(0.5)
    before = int(balance(BUYER))
    s, j, _, _ = merchant_call(MS[MA], "POST", "/v1/payments", pay_body(BUYER, 1, "gone-1"), key="gone-1")
    after = int(balance(BUYER))
    check("retry after a disconnect: applied exactly once", s == 201 and after in (before, before - 1) and
          after == 9997, (s, j, before, after))
    out = raw_exchange(b"GET /v1/health HTTP/2.0\r\n\r\n")
    check("HTTP/2 over cleartext is refused", out[:12] in (b"HTTP/1.1 505", b"HTTP/1.1 400"), out[:80])


def snapshot_state(ms, pay, refund, list_ids):
    st = {"balances": {u: balance(u) for u in (BUYER, OTHER, POOR)}}
    st["pay"] = merchant_call(ms[MA], "GET", f"/v1/payments/{pay['id']}")[2]
    st["refund"] = merchant_call(ms[MA], "GET", f"/v1/refunds/{refund['id']}")[2]
    st["list"] = admin("GET", f"/v1/users/{OTHER}/payments")[2]
    st["replay"] = merchant_call(ms[MA], "POST", "/v1/payments", pay_body(BUYER, 1999, "order-1"), key="key-1")[2]
    return st


def test_restart(ms, pay, refund, list_ids):
    before = snapshot_state(ms, pay, refund, list_ids)
    for sig, name in ((signal.SIGTERM, "clean stop"), (signal.SIGKILL, "SIGKILL")):
        rc = SERVER.stop(sig, timeout=30)
        if sig == signal.SIGTERM:
            check("clean stop exits 0", rc == 0, rc)
        API.reset()
        SERVER.start()
        after = snapshot_state(ms, pay, refund, list_ids)
        check(f"after {name}: every answer is the same", after == before,
              json.dumps({k: (before[k], after[k]) for k in before if before[k] != after[k]},
                         default=str)[:600])
        s, j, _, _ = admin("POST", "/v1/merchants", {"uid": str(MA)})
        check(f"after {name}: merchants remembered", s == 409, (s, j))


def test_restart_refused_cells():
    r = subprocess.run([CELLPAY, "start", "--data", DATA, "--listen", "127.0.0.1:0", "--cells", "3"],
                       capture_output=True, timeout=30)
    check("another --cells on the same data is refused", r.returncode != 0 and b"cells" in r.stderr,
          r.stderr[-300:])


def main():
    global MS
    try:
        SERVER.start()
        key_path = os.path.join(DATA, "admin.key")
        check("admin.key is 0600", (os.stat(key_path).st_mode & 0o777) == 0o600)
        test_health_and_operator_auth()
        MS = test_merchants_and_users()
        test_topups_and_balance()
        pay = test_payments(MS)
        refund = test_refunds(MS, pay)
        ids = test_lists(MS)
        test_bad_http()
        test_restart(MS, pay, refund, ids)
        SERVER.stop(timeout=30)
        test_restart_refused_cells()
    finally:
        if SERVER.proc:
            SERVER.proc.kill()
            SERVER.proc.wait()
        if check.fails:
            print("--- server log:")
            sys.stdout.write(open(os.path.join(TMP, "start.log"), errors="replace").read()[-4000:])
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"api_test: {check.count - len(check.fails)} of {check.count} checks passed")
    sys.exit(1 if check.fails else 0)


MS = None
if __name__ == "__main__":
    main()
