#!/usr/bin/env python3
"""Route-table changes under load lose and duplicate nothing (docs/gateway.md, "Route tables").

Two cells as `cellpay node` processes: cell 1 with three replicas (zones 0-49), cell 2 with
one (zones 50-99); a route file; `cellpay gateway --routes` in front. Merchants, buyers and
top-ups through the API, then signed payments from several threads, each on its own
keep-alive connection, each payment with a unique out_trade_no and Idempotency-Key. A thread
retries the same request (same key, same body, a fresh signature) on a 503 or a broken
connection, as a client is meant to. Meanwhile the route file is rewritten:

  - cell 1's addresses reordered; one follower's address dropped; put back;
  - zones 10-19 sent to cell 2 (which does not own them): those buyers get 503 wrong_cell,
    so do an operator's user and balance requests there, and nothing is applied; restored;
  - zones 70-79 sent to cell 1, the same the other way round; restored;
  - an invalid table, which the gateway keeps its table through; then a valid one again.

Each change waits until the gateway's log names the new version (and for the wrong-cell
windows, until a payment thread has seen wrong_cell), and then until more payments are
acknowledged, so every change happens under load.

At the end: every payment answered 201 reads back (GET /v1/payments/{id}); each buyer's
payments (GET /v1/users/{uid}/payments, paged) are exactly the acknowledged ones, no
out_trade_no twice; each buyer's balance is its top-up minus its acknowledged payments;
nothing was refused 503 unavailable and no connection broke (requests in flight during a
reload finish on the old clients); wrong_cell came only for buyers of a misrouted zone; the
probe users opened during the wrong-cell windows exist nowhere; every replica of cell 1
reports the same state hash.

usage: routes_live_test.py path/to/cellpay   (ROUTES_LIVE_SEED=N repeats a run's choices)
"""
import collections
import http.client
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apilib import (Api, Checks, Procs, addrs_of, cell_status, encode, err_code,  # noqa: E402
                    free_ports, leader_of, peers_of, request, run_guarded, settled_status,
                    signed_headers, zone)

CELLPAY = sys.argv[1]
SEED = int(os.environ.get("ROUTES_LIVE_SEED") or random.SystemRandom().randrange(1, 1 << 31))
TMP = tempfile.mkdtemp(prefix="cellpay-routes-live-")
ROUTES = os.path.join(TMP, "routes")
GW_LOG = os.path.join(TMP, "gateway.log")
THREADS = 6
TOPUP = 10**12
check = Checks(detail_max=800)
PROCS = Procs(CELLPAY, TMP)


def wait_cell(addrs):
    """Until every replica answers and one leads; returns the leader's address."""
    return leader_of(CELLPAY, addrs, all_answer=True, watch=PROCS.all_running)


# ---- the route file ----

VERSION = 0


def write_routes(cell1, cell2, zones):
    """zones: [(LIST, cell)]. Written whole to ROUTES.tmp and renamed over ROUTES."""
    global VERSION
    VERSION += 1
    text = f"# routes_live_test\nversion {VERSION}\nrule 10 100\n"
    text += f"cell 1 {','.join(cell1)}\ncell 2 {','.join(cell2)}\n"
    text += "".join(f"zones {z} -> {c}\n" for z, c in zones)
    with open(ROUTES + ".tmp", "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(ROUTES + ".tmp", ROUTES)
    return VERSION


def gateway_log():
    with open(GW_LOG, errors="replace") as f:
        return f.read()


def wait_log(pattern, what):
    deadline = time.time() + 15
    while time.time() < deadline:
        PROCS.all_running()
        if re.search(pattern, gateway_log(), re.M):
            return True
        time.sleep(0.05)
    return check(what, False, gateway_log()[-1000:])


def wait_version(v):
    return wait_log(rf"^cellpay gateway: route table version {v}, ",
                    f"the gateway takes route table version {v}")


# ---- HTTP ----

GW = None  # the gateway: .port, .admin_key
MAIN = None  # Api: the operator's keep-alive connection


def conn():
    return http.client.HTTPConnection("127.0.0.1", GW.port, timeout=30)


def admin(method, path, body=None):
    """(status, parsed JSON, headers) of an operator's request, on MAIN."""
    try:
        s, j, _, h = MAIN.admin(method, path, body)
    except (OSError, http.client.HTTPException):
        raise SystemExit(f"the gateway does not answer {method} {path}")
    return s, j, h


# ---- the people ----

# zone(uid) = (uid / 10) mod 100. Cell 1 owns zones 0-49, cell 2 50-99.
MERCHANTS = {1: 100050, 2: 100600}  # zones 5 and 60
BUYER_ZONES = {1: [2, 7, 12, 15, 18, 25, 33, 41, 47], 2: [55, 63, 71, 74, 78, 88, 96]}
BUYERS = {c: [3_000_000 * (i + 1) + z * 10 + c for i, z in enumerate(zs)]
          for c, zs in BUYER_ZONES.items()}
MISROUTES = [("10-19", 2, 1), ("70-79", 1, 2)]  # zones, the wrong cell, the right one
PROBES = {"10-19": 5_000_140, "70-79": 5_000_750}  # users opened only in the wrong cell


def misrouted(uid, zones):
    lo, hi = (int(x) for x in zones.split("-"))
    return lo <= zone(uid) <= hi


# ---- the payment threads ----

STOP = threading.Event()
LOCK = threading.Lock()
ACKS = []            # (merchant cell, buyer, amount, out_trade_no, payment id, replayed)
OUTCOMES = []        # payments that ended other than 201
STATS = {"attempts": 0, "wrong_cell": 0, "unavailable": 0, "conn_errors": 0, "replayed": 0}
WRONG_CELL_UIDS = set()
UNAVAILABLE_MSGS = set()


def worker(tid, secrets):
    """Pays until STOP, then until its payments are all answered. A payment answered 503 or
    lost with the connection waits in `pending` and is sent again, the same request with the
    same key, before the thread's next new payment: a buyer whose cell is unreachable for a
    while does not hold up the others."""
    rng = random.Random(SEED * 1000 + tid)
    state = {"conn": conn()}
    pending = collections.deque()
    n = 0
    all_buyers = [(cell, b) for cell, bs in BUYERS.items() for b in bs]
    while True:
        if pending:
            p = pending.popleft()
            if not attempt(state, p):
                pending.append(p)
                if STOP.is_set() or len(pending) >= 4:
                    time.sleep(0.01)  # a client's backoff while only retries are left
        if STOP.is_set():
            if not pending:
                break
            continue
        cell, buyer = rng.choice(all_buyers)
        amount = rng.randint(1, 9999)
        otn = f"s{SEED}-t{tid}-{n}"
        n += 1
        data = encode({"buyer_uid": str(buyer), "amount": str(amount), "currency": "CNY",
                       "out_trade_no": otn, "funding": "balance"})
        p = {"cell": cell, "buyer": buyer, "amount": amount, "otn": otn, "data": data,
             "m": {"uid": MERCHANTS[cell], "secret": secrets[cell]},
             "deadline": time.time() + 60}
        if not attempt(state, p):
            pending.append(p)
    state["conn"].close()


def attempt(state, p):
    """Sends payment p once; False when it is to be sent again (503, or no answer)."""
    with LOCK:
        STATS["attempts"] += 1
    try:
        s, j, _, h = request(state["conn"], "POST", "/v1/payments", p["data"],
                             signed_headers(p["m"], "POST", "/v1/payments", p["data"], key=p["otn"]))
    except (OSError, http.client.HTTPException) as e:
        with LOCK:
            STATS["conn_errors"] += 1
            UNAVAILABLE_MSGS.add("connection: " + repr(e))
        state["conn"].close()
        state["conn"] = conn()
        s, j, h = None, None, {}
    if s == 503:
        with LOCK:
            if err_code(j) == "wrong_cell":
                STATS["wrong_cell"] += 1
                WRONG_CELL_UIDS.add(p["buyer"])
            else:
                STATS["unavailable"] += 1
                UNAVAILABLE_MSGS.add(json.dumps(j))
    if (s == 503 or s is None) and time.time() < p["deadline"]:
        return False
    with LOCK:
        if s == 201 and j and j.get("out_trade_no") == p["otn"]:
            replayed = h.get("Idempotent-Replayed") == "true"
            STATS["replayed"] += replayed
            ACKS.append((p["cell"], p["buyer"], p["amount"], p["otn"], j["id"], replayed))
        else:
            OUTCOMES.append((p["otn"], p["buyer"], s, j))
    return True


def acked():
    with LOCK:
        return len(ACKS)


def wait_progress(more, what):
    """Until `more` payments more than now are acknowledged."""
    target = acked() + more
    deadline = time.time() + 20
    while time.time() < deadline:
        PROCS.all_running()
        if acked() >= target:
            return True
        time.sleep(0.02)
    return check(f"payments go on: {what}", False, f"{acked()} of {target} acknowledged")


def wait_wrong_cell(zones):
    deadline = time.time() + 20
    while time.time() < deadline:
        with LOCK:
            if any(misrouted(u, zones) for u in WRONG_CELL_UIDS):
                return True
        time.sleep(0.02)
    return check(f"a payment thread sees wrong_cell for zones {zones}", False)


# ---- the run ----

def main():
    global GW, MAIN
    print(f"routes_live_test: seed {SEED} (ROUTES_LIVE_SEED={SEED} repeats it)", flush=True)
    ports = free_ports(8)
    c1 = addrs_of(ports[0:3])
    c1_peers = peers_of(ports[3:6])
    c2 = addrs_of(ports[6:7])
    gw_data = os.path.join(TMP, "gw")
    for r in range(3):
        PROCS.spawn(f"c1r{r + 1}", ["node", "--data", os.path.join(TMP, f"c1r{r + 1}"),
                                    "--listen", c1[r], "--cell", "1", "--id", str(r + 1),
                                    "--peers", c1_peers, "--zones", "0-49"])
    PROCS.spawn("c2r1", ["node", "--data", os.path.join(TMP, "c2r1"), "--listen", c2[0],
                         "--cell", "2", "--zones", "50-99"])
    leader = wait_cell(c1)
    wait_cell(c2)
    base_zones = [("0-49", 1), ("50-99", 2)]
    write_routes(c1, c2, base_zones)
    GW = PROCS.spawn_gateway(ROUTES, gw_data, "127.0.0.1:0")
    MAIN = Api(GW, timeout=30)

    secrets = {}
    for cell, uid in MERCHANTS.items():
        s, j, _ = admin("POST", "/v1/merchants", {"uid": str(uid)})
        check(f"merchant {uid} created", s == 201, (s, j))
        secrets[cell] = (j or {}).get("secret", "")
    for cell, bs in BUYERS.items():
        for b in bs:
            s, j, _ = admin("POST", "/v1/users", {"uid": str(b), "currency": "CNY"})
            check(f"buyer {b} opened", s == 201, (s, j))
            s, j, _ = admin("POST", f"/v1/users/{b}/topups",
                            {"amount": str(TOPUP), "currency": "CNY"})
            check(f"buyer {b} topped up", s == 201, (s, j))
    if check.fails:
        return

    threads = [threading.Thread(target=worker, args=(t, secrets)) for t in range(THREADS)]
    for t in threads:
        t.start()
    t0 = time.time()
    try:
        wait_progress(100, "before any change")
        # (a) cell 1's addresses: reordered, a follower's dropped, all back.
        wait_version(write_routes(c1[::-1], c2, base_zones))
        wait_progress(100, "after reordering cell 1's addresses")
        follower = [a for a in c1 if a != leader][0]
        wait_version(write_routes([a for a in c1 if a != follower], c2, base_zones))
        wait_progress(100, f"after dropping {follower} from cell 1")
        wait_version(write_routes(c1, c2, base_zones))
        wait_progress(100, "with cell 1's three addresses back")
        # (b) a zone range at the wrong cell, then back: both ways.
        for zones, wrong, right in MISROUTES:
            lo, hi = (int(x) for x in zones.split("-"))
            if lo >= 50:
                table = [("0-49", 1), (f"50-{lo - 1}", 2), (zones, wrong), (f"{hi + 1}-99", 2)]
            else:
                table = [(f"0-{lo - 1}", 1), (zones, wrong), (f"{hi + 1}-49", 1), ("50-99", 2)]
            wait_version(write_routes(c1, c2, table))
            probe = PROBES[zones]
            s, j, _ = admin("POST", "/v1/users", {"uid": str(probe), "currency": "CNY"})
            check(f"zones {zones} at cell {wrong}: opening a user is 503 wrong_cell",
                  s == 503 and err_code(j) == "wrong_cell", (s, j))
            b = next(u for u in BUYERS[right] if misrouted(u, zones))
            s, j, _ = admin("GET", f"/v1/users/{b}/balance?currency=CNY")
            check(f"zones {zones} at cell {wrong}: a balance is 503 wrong_cell",
                  s == 503 and err_code(j) == "wrong_cell", (s, j))
            s, j, _ = admin("POST", f"/v1/users/{b}/topups", {"amount": "1", "currency": "CNY"})
            check(f"zones {zones} at cell {wrong}: a top-up is 503 wrong_cell",
                  s == 503 and err_code(j) == "wrong_cell", (s, j))
            wait_wrong_cell(zones)
            wait_progress(50, f"other zones while {zones} are at cell {wrong}")
            wait_version(write_routes(c1, c2, base_zones))
            wait_progress(100, f"zones {zones} back at cell {right}")
        # An invalid table (zones 50-99 unassigned) is logged and ignored; a valid one after.
        bad_version = VERSION + 1
        write_routes(c1, c2, [("0-49", 1)])
        wait_log(rf"^cellpay gateway: keeping route table version {bad_version - 1}: ",
                 "an invalid table is refused, the table kept")
        wait_progress(100, "after an invalid table")
        wait_version(write_routes(c1[1:] + c1[:1], c2, base_zones))
        wait_progress(100, "after the last change")
    finally:
        STOP.set()
        for t in threads:
            t.join(timeout=90)
    load_s = time.time() - t0
    check("every payment thread finished", not any(t.is_alive() for t in threads))
    verify(secrets, c1, c2)
    print(f"routes_live_test: seed {SEED}: {len(ACKS)} payments acknowledged in {load_s:.1f} s "
          f"over {VERSION} route tables; {STATS['attempts']} attempts, "
          f"{STATS['wrong_cell']} wrong_cell answers ({len(WRONG_CELL_UIDS)} buyers), "
          f"{STATS['unavailable']} unavailable, {STATS['conn_errors']} connection errors, "
          f"{STATS['replayed']} replayed", flush=True)


def verify(secrets, c1, c2):
    check("every payment ended 201", not OUTCOMES, OUTCOMES[:5])
    check("no 503 unavailable and no broken connection while the routes changed",
          STATS["unavailable"] == 0 and STATS["conn_errors"] == 0,
          (STATS, sorted(UNAVAILABLE_MSGS)[:5]))
    stray = [u for u in WRONG_CELL_UIDS if not any(misrouted(u, z) for z, _, _ in MISROUTES)]
    check("wrong_cell only for buyers of a misrouted zone", not stray, stray)
    for zones, _, _ in MISROUTES:
        s, j, _ = admin("GET", f"/v1/users/{PROBES[zones]}/balance?currency=CNY")
        check(f"the user opened while zones {zones} were misrouted exists nowhere",
              s == 404 and err_code(j) == "not_found", (s, j))
    # Every acknowledged payment reads back as acknowledged.
    c = conn()
    bad = []
    for cell, buyer, amount, otn, pid, _ in ACKS:
        m = {"uid": MERCHANTS[cell], "secret": secrets[cell]}
        s, j, _, _ = request(c, "GET", f"/v1/payments/{pid}", b"",
                             signed_headers(m, "GET", f"/v1/payments/{pid}", b""))
        if not (s == 200 and j["out_trade_no"] == otn and j["amount"] == str(amount) and
                j["buyer_uid"] == str(buyer)):
            bad.append((pid, otn, s, j))
    c.close()
    check("every acknowledged payment is found", not bad, (len(bad), bad[:3]))
    by_buyer = {}
    for cell, buyer, amount, otn, pid, _ in ACKS:
        by_buyer.setdefault(buyer, []).append((otn, pid, amount))
    for cell, bs in BUYERS.items():
        for b in bs:
            listed, after = [], None
            while True:
                q = f"/v1/users/{b}/payments?limit=100" + (f"&starting_after={after}" if after else "")
                s, j, _ = admin("GET", q)
                if not check(f"buyer {b}: list page", s == 200, (s, j)):
                    break
                listed += j["data"]
                if not j["has_more"]:
                    break
                after = j["data"][-1]["id"]
            mine = by_buyer.get(b, [])
            otns = [p["out_trade_no"] for p in listed]
            check(f"buyer {b}: no out_trade_no twice", len(otns) == len(set(otns)),
                  [o for o in set(otns) if otns.count(o) > 1][:5])
            check(f"buyer {b}: the payments listed are the acknowledged ones",
                  sorted((p["out_trade_no"], p["id"]) for p in listed) ==
                  sorted((o, i) for o, i, _ in mine),
                  (len(listed), len(mine)))
            s, j, _ = admin("GET", f"/v1/users/{b}/balance?currency=CNY")
            want = TOPUP - sum(a for _, _, a in mine)
            check(f"buyer {b}: balance is the top-up minus its acknowledged payments",
                  s == 200 and j["available"] == str(want) and j["pending"] == "0",
                  (s, j, want))
    # The replicas of cell 1 agree: once all applied the same index, one state hash.
    rc, out = settled_status(CELLPAY, c1)
    hashes = set(re.findall(r" hash=([0-9a-f]+)", out))
    check("cell 1's three replicas applied alike and report one state hash",
          len(set(re.findall(r" applied=(\d+)", out))) == 1 and len(hashes) == 1 and
          len(re.findall(r" hash=", out)) == 3, out)
    rc, out = cell_status(CELLPAY, c2)
    check("cell 2 answers", rc == 0, out)


def cleanup():
    STOP.set()
    PROCS.stop_all()
    if check.fails:
        for name in PROCS:
            print(f"--- the end of {name}.log:\n{PROCS.log_tail(name, 8)}", end="")
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    run_guarded(main, check, cleanup)
    print(f"routes_live_test: seed {SEED}: {check.count - len(check.fails)} of {check.count} "
          "checks passed", flush=True)
    sys.exit(1 if check.fails else 0)
