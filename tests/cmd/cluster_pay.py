#!/usr/bin/env python3
"""A signed payment through the gateway of scripts/cluster.sh (test_cluster_script.sh).

In cell 1 (zones 0-24) and cell 4 (zones 75-99), three replicas each: open a merchant and a
buyer, top the buyer up, pay signed with the merchant's secret, read the payment back and
the buyer's balance, and check that a replay with the same Idempotency-Key moves nothing.
Then cell 4's buyer pays cell 1's merchant, and cell 4's relay credits it.
Prints what failed and exits 1; Python's standard library only.

usage: cluster_pay.py HOST:PORT path/to/admin.key
"""
import http.client
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
from apilib import Checks, admin_headers, encode, request, signed_headers  # noqa: E402

HOST, PORT = sys.argv[1].rsplit(":", 1)
ADMIN = open(sys.argv[2]).read().strip()
C = http.client.HTTPConnection(HOST, int(PORT), timeout=30)
check = Checks()


def call(method, path, body=None, headers=None):
    """(status, parsed JSON, headers) on C; an answer that is not JSON raises ValueError."""
    s, j, text, h = request(C, method, path, encode(body), headers)
    if text and j is None:
        raise ValueError(f"not JSON: {text[:200]!r}")
    return s, j, h


def admin(method, path, body=None):
    return call(method, path, body, admin_headers(ADMIN))


def signed(m, method, path, body=None, key=None):
    return call(method, path, body, signed_headers(m, method, path, encode(body), key))


def pay_in_cell(cell, merchant_uid, buyer_uid):
    s, j, _ = admin("POST", "/v1/merchants", {"uid": str(merchant_uid)})
    check(f"cell {cell}: merchant created", s == 201 and len(j.get("secret", "")) == 64, (s, j))
    m = {"uid": merchant_uid, "secret": (j or {}).get("secret", "")}
    MERCHANTS[cell] = m
    s, j, _ = admin("POST", "/v1/users", {"uid": str(buyer_uid), "currency": "CNY"})
    check(f"cell {cell}: buyer opened", s == 201, (s, j))
    s, j, _ = admin("POST", f"/v1/users/{buyer_uid}/topups", {"amount": "10000", "currency": "CNY"})
    check(f"cell {cell}: top-up", s == 201 and j["amount"] == "10000", (s, j))
    body = {"buyer_uid": str(buyer_uid), "amount": "1999", "currency": "CNY",
            "out_trade_no": f"cluster-{cell}", "funding": "balance"}
    s, j, h = signed(m, "POST", "/v1/payments", body, key=f"cluster-{cell}")
    check(f"cell {cell}: signed payment 201", s == 201 and j["status"] == "succeeded" and
          j["amount"] == "1999" and j["buyer_uid"] == str(buyer_uid), (s, j))
    pay = j or {}
    s2, j2, h2 = signed(m, "POST", "/v1/payments", body, key=f"cluster-{cell}")
    check(f"cell {cell}: replay answers the same", s2 == 201 and j2 == pay and
          h2.get("Idempotent-Replayed") == "true", (s2, j2, h2))
    s, j, _ = signed(m, "GET", f"/v1/payments/{pay.get('id')}")
    check(f"cell {cell}: the payment reads back", s == 200 and j == pay, (s, j))
    s, j, _ = admin("GET", f"/v1/users/{buyer_uid}/balance?currency=CNY")
    check(f"cell {cell}: balance 10000 - 1999, once", s == 200 and j["available"] == "8001", (s, j))


def pay_across(m, buyer_uid):
    """Cell 4's buyer pays cell 1's merchant: debited at once, the merchant credited by cell
    4's relay (its leader, whichever replica that is) moments later."""
    body = {"buyer_uid": str(buyer_uid), "amount": "1", "currency": "CNY",
            "out_trade_no": "cluster-across"}
    s, j, _ = signed(m, "POST", "/v1/payments", body, key="cluster-across")
    check("cross-cell payment 201, credit pending", s == 201 and j["merchant_credit"] == "pending",
          (s, j))
    deadline = time.time() + 20
    while s == 201 and time.time() < deadline:
        s2, j2, _ = signed(m, "GET", f"/v1/payments/{j['id']}")
        if s2 == 200 and j2["merchant_credit"] == "credited":
            break
        time.sleep(0.1)
    check("cross-cell payment credited by the relay", s == 201 and s2 == 200 and
          j2["merchant_credit"] == "credited", (s, j))
    s, j, _ = admin("GET", f"/v1/users/{buyer_uid}/balance?currency=CNY")
    check("cross-cell: the buyer paid once", s == 200 and j["available"] == "8000", (s, j))


MERCHANTS = {}
try:
    pay_in_cell(1, 100030, 200040)  # zones 3 and 4
    pay_in_cell(4, 100900, 200950)  # zones 90 and 95
    pay_across(MERCHANTS[1], 200950)
except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as e:
    check("the gateway answers", False, repr(e))
sys.exit(1 if check.fails else 0)
