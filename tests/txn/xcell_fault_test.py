#!/usr/bin/env python3
"""Cross-cell payments under faults: every acknowledged payment debited once and credited once.

Two cells of three `cellpay node` replicas each (cell 1 zones 0-49, cell 2 zones 50-99), all
with `--routes` (their relays find each other there) and `--relay-faults`: each relay batch
may be lost on its way, have its answer lost, be sent twice, or be held back so that later
batches overtake it. `cellpay gateway` in front. Payment threads pay merchants of the other
cell (and a few of their own), each payment with its own key, sent again with the same key
after a 503 or a broken connection until it gets a final answer. Meanwhile the leader of one
cell or the other, where that cell's relay runs, is killed with SIGKILL at random moments and
started again.

When the load stops and the relays are idle:
  - every acknowledged payment reads back with merchant_credit "credited";
  - each buyer's balance is its top-up minus its acknowledged payments (debited once);
  - `cellpay admin check` passes: per cell and ledger debits equal credits, and each pair of
    clearing accounts nets to zero (credited once: a credit made twice or lost would show);
  - each cell's replicas report one state hash.

Refunds of cross-cell payments and transfers between users of the two cells (TCC:
docs/cross-cell.md) run in the same load: a thread refunds part of one of its acknowledged
payments now and then, and moves money from one buyer to a buyer of the other cell. The
gateway is killed too, now and then, so refunds and transfers are left between their steps; a
thread whose refund or transfer got no answer gives it up (it never sends it again), and the
initiating cell's relay must then decide it cancelled (`--tcc-recover-after`). Payments too
may be given up: one given up after its order was reserved leaves the order to the merchant
cell's resolver, which must release it unless the buyer's cell paid it. Once idle, no TCC
activity is left trying and no order reserved, each given-up payment, refund or transfer sent
again with its key answers its final outcome (201, or 409 cancelled), and the buyers' balances
count every refund and transfer that answered 201 exactly once; `cellpay admin check` would
name a hold left pending in either cell (its clearing position would not net to zero).

usage: xcell_fault_test.py path/to/cellpay   (XCELL_FAULT_SEED=N repeats a run's choices)
"""
import http.client
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
from apilib import (Checks, Procs, addrs_of, admin_headers, cell_status, encode,  # noqa: E402
                    err_code, free_ports, leader_of, peers_of, request, run_guarded,
                    settled_status, signed_headers)

CELLPAY = sys.argv[1]
SEED = int(os.environ.get("XCELL_FAULT_SEED") or random.SystemRandom().randrange(1, 1 << 31))
TMP = tempfile.mkdtemp(prefix="cellpay-xcell-fault-")
ROUTES = os.path.join(TMP, "routes")
THREADS = 4
CHAOS_SECONDS = 20
TOPUP = 10**12
FAULT_PCT = "20"
check = Checks()
PROCS = Procs(CELLPAY, TMP)
LOCK = threading.Lock()
STOP = threading.Event()
ACKS = []  # (merchant cell, buyer, amount, payment id)
REFUNDS = []  # (buyer, amount, refund id): answered 201
GIVEN_UP = []  # (merchant, body, key, buyer, amount): refunds that never got an answer
TRANSFERS = []  # (sender, recipient, amount): answered 201
GIVEN_UP_T = []  # (body, key, sender, recipient, amount): transfers that never got an answer
GIVEN_UP_P = []  # (merchant cell, body, key, buyer, amount): payments that never got an answer
STATS = {"attempts": 0, "retries": 0, "refused": 0, "refunds_cancelled": 0,
         "transfers_cancelled": 0, "gateway_kills": 0}
RECOVER_AFTER_S = 2

# zone(uid) = (uid / 10) mod 100
MERCHANTS = {1: 100050, 2: 100600}  # zones 5 and 60
BUYERS = {1: [4_000_000 + z * 10 + 1 for z in (2, 13, 27, 38, 44)],
          2: [4_000_000 + z * 10 + 2 for z in (52, 61, 77, 85, 93)]}

# ---- HTTP ----

GW = None  # the gateway: .port, .admin_key


def conn():
    return http.client.HTTPConnection("127.0.0.1", GW.port, timeout=30)


def admin(c, method, path, body=None):
    """(status, parsed JSON) of an operator's request on connection c."""
    return request(c, method, path, encode(body), admin_headers(GW.admin_key))[:2]


# ---- load and chaos ----

def send_until_final(c, m, path, data, key, give_up=False):
    """POSTs with the same key until a final answer (not 503, not a broken connection), signed
    by merchant m, or as the operator when m is None. With give_up, a broken connection makes
    the sender give up: returns (None, None, c)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        with LOCK:
            STATS["attempts"] += 1
        try:
            h = (dict(admin_headers(GW.admin_key), **{"Idempotency-Key": key}) if m is None
                 else signed_headers(m, "POST", path, data, key))
            s, j, _, _ = request(c, "POST", path, data, h)
        except (OSError, http.client.HTTPException):
            c.close()
            c = conn()
            if give_up:
                return None, None, c
            s, j = None, None
        if s is not None and s != 503:
            return s, j, c
        with LOCK:
            STATS["retries"] += 1
        time.sleep(0.02)
    return None, None, c


def pay_one(c, tid, n, rng, merchants, mine):
    bcell = rng.choice((1, 2))
    buyer = rng.choice(BUYERS[bcell])
    mcell = bcell if rng.random() < 0.1 else 3 - bcell  # mostly cross-cell
    amount = rng.randint(1, 9999)
    data = encode({"buyer_uid": str(buyer), "amount": str(amount), "currency": "CNY",
                   "out_trade_no": f"s{SEED}-t{tid}-{n}"})
    key = f"k{SEED}-t{tid}-{n}"
    s, j, c = send_until_final(c, merchants[mcell], "/v1/payments", data, key,
                               give_up=rng.random() < 0.5)
    if s is None:
        with LOCK:
            GIVEN_UP_P.append((mcell, data, key, buyer, amount))
    elif s == 201:
        with LOCK:
            ACKS.append((mcell, buyer, amount, j["id"]))
        if mcell != bcell:
            mine.append([merchants[mcell], buyer, j["id"], amount])
    else:
        with LOCK:
            STATS["refused"] += 1
        print(f"refused: {s} {j}", flush=True)
    return c


def refund_one(c, tid, n, rng, mine):
    """Refunds part of one of this thread's cross-cell payments (its refundable rest shrinks
    by the amount asked, whatever the outcome, so no later refund can exceed the payment)."""
    entry = rng.choice(mine)
    m, buyer, pid, rest = entry
    amount = rng.randint(1, rest)
    entry[3] -= amount
    if entry[3] == 0:
        mine.remove(entry)
    data = encode({"payment_id": pid, "amount": str(amount),
                   "out_request_no": f"r{SEED}-t{tid}-{n}"})
    key = f"rk{SEED}-t{tid}-{n}"
    s, j, c = send_until_final(c, m, "/v1/refunds", data, key, give_up=True)
    with LOCK:
        if s == 201:
            REFUNDS.append((buyer, amount, j["id"]))
        elif s is None:
            GIVEN_UP.append((m, data, key, buyer, amount))
        elif (s, err_code(j)) in ((409, "cancelled"), (402, "insufficient_funds")):
            STATS["refunds_cancelled"] += 1
        else:
            STATS["refused"] += 1
            print(f"refund refused: {s} {j}", flush=True)
    return c


def transfer_one(c, tid, n, rng):
    """Moves money from a buyer of one cell to a buyer of the other, as the operator."""
    scell = rng.choice((1, 2))
    sender, recipient = rng.choice(BUYERS[scell]), rng.choice(BUYERS[3 - scell])
    amount = rng.randint(1, 9999)
    data = encode({"from_uid": str(sender), "to_uid": str(recipient), "amount": str(amount),
                   "currency": "CNY"})
    key = f"tk{SEED}-t{tid}-{n}"
    s, j, c = send_until_final(c, None, "/v1/transfers", data, key, give_up=True)
    with LOCK:
        if s == 201:
            TRANSFERS.append((sender, recipient, amount))
        elif s is None:
            GIVEN_UP_T.append((data, key, sender, recipient, amount))
        elif (s, err_code(j)) == (409, "cancelled"):
            STATS["transfers_cancelled"] += 1
        else:
            STATS["refused"] += 1
            print(f"transfer refused: {s} {j}", flush=True)
    return c


def worker(tid, merchants):
    rng = random.Random(SEED * 1000 + tid)
    c = conn()
    n = 0
    mine = []  # [merchant, buyer, payment id, refundable rest]
    while not STOP.is_set():
        n += 1
        x = rng.random()
        if mine and x < 0.3:
            c = refund_one(c, tid, n, rng, mine)
        elif x > 0.85:
            c = transfer_one(c, tid, n, rng)
        else:
            c = pay_one(c, tid, n, rng, merchants, mine)
    c.close()


def chaos(cells, rng):
    """Kills a cell's leader (its relay with it), or now and then the gateway, with SIGKILL
    and starts it again."""
    kills = 0
    t_end = time.time() + CHAOS_SECONDS
    while time.time() < t_end:
        time.sleep(rng.uniform(1.0, 2.5))
        if rng.random() < 0.4:
            p, args, _ = PROCS["gateway"]
            p.send_signal(signal.SIGKILL)
            p.wait()
            STATS["gateway_kills"] += 1
            time.sleep(rng.uniform(0.1, 0.5))
            PROCS.spawn("gateway", args)
            continue
        cell = rng.choice((1, 2))
        leader = leader_of(CELLPAY, cells[cell]["addrs"])
        name = cells[cell]["names"][cells[cell]["addrs"].index(leader)]
        p, args, _ = PROCS[name]
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        time.sleep(rng.uniform(0.2, 1.0))
        PROCS.spawn(name, args)
    return kills


def main():
    global GW
    print(f"xcell_fault_test: seed {SEED} (XCELL_FAULT_SEED={SEED} repeats it)", flush=True)
    rng = random.Random(SEED)
    ports = free_ports(13)
    cells = {}
    for cell in (1, 2):
        base = (cell - 1) * 6
        cells[cell] = {"addrs": addrs_of(ports[base:base + 3]),
                       "peers": peers_of(ports[base + 3:base + 6]), "names": []}
    with open(ROUTES, "w") as f:
        f.write("version 1\nrule 10 100\n")
        for cell in (1, 2):
            f.write(f"cell {cell} {','.join(cells[cell]['addrs'])}\n")
        f.write("zones 0-49 -> 1\nzones 50-99 -> 2\n")
    for cell, zones in ((1, "0-49"), (2, "50-99")):
        for r in range(3):
            name = f"c{cell}r{r + 1}"
            cells[cell]["names"].append(name)
            PROCS.spawn(name, ["node", "--data", os.path.join(TMP, name),
                               "--listen", cells[cell]["addrs"][r], "--cell", str(cell),
                               "--id", str(r + 1), "--peers", cells[cell]["peers"],
                               "--zones", zones, "--routes", ROUTES, "--relay-faults", FAULT_PCT,
                               "--tcc-recover-after", str(RECOVER_AFTER_S)])
    for cell in (1, 2):
        leader_of(CELLPAY, cells[cell]["addrs"])
    gw_data = os.path.join(TMP, "gw")
    GW = PROCS.spawn_gateway(ROUTES, gw_data, f"127.0.0.1:{ports[12]}")

    c = conn()
    merchants = {}
    for cell, uid in MERCHANTS.items():
        s, j = admin(c, "POST", "/v1/merchants", {"uid": str(uid)})
        check(f"merchant {uid} created", s == 201, (s, j))
        merchants[cell] = {"uid": uid, "secret": (j or {}).get("secret", "")}
    for bs in BUYERS.values():
        for b in bs:
            s1, _ = admin(c, "POST", "/v1/users", {"uid": str(b), "currency": "CNY"})
            s2, j = admin(c, "POST", f"/v1/users/{b}/topups",
                          {"amount": str(TOPUP), "currency": "CNY"})
            check(f"buyer {b} opened and topped up", s1 == 201 and s2 == 201, (s1, s2, j))
    if check.fails:
        return

    threads = [threading.Thread(target=worker, args=(t, merchants)) for t in range(THREADS)]
    for t in threads:
        t.start()
    kills = chaos(cells, rng)
    STOP.set()
    for t in threads:
        t.join(timeout=180)
    print(f"load: {len(ACKS)} payments, {len(REFUNDS)} refunds and {len(TRANSFERS)} transfers "
          f"acknowledged, {len(GIVEN_UP)} refunds and {len(GIVEN_UP_T)} transfers given up, "
          f"{kills} processes killed, {STATS}", flush=True)
    check("payments were made", len(ACKS) > 100, len(ACKS))
    check("refunds were made", len(REFUNDS) > 10, len(REFUNDS))
    check("transfers were made", len(TRANSFERS) > 10, len(TRANSFERS))
    check("no payment refused", STATS["refused"] == 0, STATS)
    verify(c, cells, merchants)
    c.close()


def tcc_settle(c, cells, merchants):
    """The relays' recovery decides every refund and transfer left trying; then each given-up
    one, sent again with its key, answers its outcome."""
    deadline = time.time() + 60
    out = ""
    while time.time() < deadline:
        outs = [cell_status(CELLPAY, cells[cell]["addrs"])[1] for cell in (1, 2)]
        out = "".join(outs)
        trying = re.findall(r" tcc_trying=(\d+)", out)
        reserved = re.findall(r" orders_reserved=(\d+)", out)
        if len(trying) == 6 and set(trying) == {"0"} and reserved == ["0"] * 6:
            break
        time.sleep(0.5)
    check("no TCC activity left trying", re.findall(r" tcc_trying=(\d+)", out) == ["0"] * 6,
          out)
    check("no order left reserved", re.findall(r" orders_reserved=(\d+)", out) == ["0"] * 6,
          out)
    resolved = sum(int(x) for x in re.findall(r" relay_resolved=(\d+)", out))
    print(f"orders: {len(GIVEN_UP_P)} payments given up, {resolved} orders released by the "
          "relays' resolver (counted since each process started)", flush=True)
    recovered = sum(int(x) for x in re.findall(r" relay_recovered=(\d+)", out))
    print(f"TCC: {len(GIVEN_UP)} refunds and {len(GIVEN_UP_T)} transfers given up, {recovered} "
          "decided by the relays' recovery (counted since each process started)", flush=True)
    for m, data, key, buyer, amount in GIVEN_UP:
        s, j, c = send_until_final(c, m, "/v1/refunds", data, key)
        if s == 201:
            REFUNDS.append((buyer, amount, j["id"]))
        else:
            check("a given-up refund answers 201 or 409 cancelled",
                  (s, err_code(j)) in ((409, "cancelled"), (402, "insufficient_funds")),
                  (s, j))
    for mcell, data, key, buyer, amount in GIVEN_UP_P:
        s, j, c = send_until_final(c, merchants[mcell], "/v1/payments", data, key)
        if s == 201:
            ACKS.append((mcell, buyer, amount, j["id"]))
        else:
            check("a given-up payment answers 201 or 409 cancelled",
                  (s, err_code(j)) == (409, "cancelled"), (s, j))
    for data, key, sender, recipient, amount in GIVEN_UP_T:
        s, j, c = send_until_final(c, None, "/v1/transfers", data, key)
        if s == 201:
            TRANSFERS.append((sender, recipient, amount))
        else:
            check("a given-up transfer answers 201 or 409 cancelled",
                  (s, err_code(j)) == (409, "cancelled"), (s, j))
    return c


def verify(c, cells, merchants):
    c = tcc_settle(c, cells, merchants)
    # The relays drain: every acknowledged payment's credit arrives.
    deadline = time.time() + 90
    pending = list(ACKS)
    while pending and time.time() < deadline:
        still = []
        for p in pending:
            path = f"/v1/payments/{p[3]}"
            s, j, _, _ = request(c, "GET", path, b"",
                                 signed_headers(merchants[p[0]], "GET", path, b""))
            if not (s == 200 and j.get("merchant_credit") == "credited"):
                still.append(p)
        pending = still
        if pending:
            time.sleep(0.5)
    check("every acknowledged payment credited", not pending, (len(pending), pending[:3]))
    spent = {}
    for _, buyer, amount, _ in ACKS:
        spent[buyer] = spent.get(buyer, 0) + amount
    for buyer, amount, _ in REFUNDS:
        spent[buyer] -= amount
    for sender, recipient, amount in TRANSFERS:
        spent[sender] = spent.get(sender, 0) + amount
        spent[recipient] = spent.get(recipient, 0) - amount
    for bs in BUYERS.values():
        for b in bs:
            s, j = admin(c, "GET", f"/v1/users/{b}/balance?currency=CNY")
            want = TOPUP - spent.get(b, 0)
            check(f"buyer {b}: debited its acknowledged payments, credited its refunds, transfers counted once",
                  s == 200 and j["available"] == str(want), (s, j, want))
    r = subprocess.run([CELLPAY, "admin", "check", "--routes", ROUTES], capture_output=True,
                       text=True, timeout=120)
    out = r.stdout + r.stderr
    check("admin check: books balance and clearing nets to zero",
          r.returncode == 0 and "clearing cells 1 and 2" in out, out)
    logs = ""
    for name in PROCS:
        if name.startswith("c"):
            with open(PROCS[name][2], errors="replace") as f:
                logs += f.read()
    check("the relays' faults happened", "lost on purpose" in logs and
          "faults on purpose in " + FAULT_PCT in logs)
    for cell in (1, 2):
        rc, out = settled_status(CELLPAY, cells[cell]["addrs"])
        hashes = set(re.findall(r" hash=([0-9a-f]+)", out))
        check(f"cell {cell}: three replicas, one state hash",
              len(hashes) == 1 and len(re.findall(r" hash=", out)) == 3, out)


def cleanup():
    STOP.set()
    PROCS.stop_all()


if __name__ == "__main__":
    run_guarded(main, check, cleanup)
    print(f"xcell_fault_test: seed {SEED}, {check.count} checks, {len(check.fails)} failed",
          flush=True)
    if check.fails:
        print("kept", TMP, flush=True)
        for name in PROCS:
            if name.startswith("c") or name == "gateway":
                print(f"--- {name}\n{PROCS.log_tail(name)}", flush=True)
    else:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(1 if check.fails else 0)
