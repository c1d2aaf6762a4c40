"""Helpers shared by the process tests (tests/api, tests/txn, tests/cmd): a check counter, a
`cellpay start` process, `cellpay node` / `cellpay gateway` processes on free loopback ports,
their cells' status, keep-alive HTTP calls and merchant signatures. Standard library only.

Tests outside tests/api import it with
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
"""
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
from types import SimpleNamespace


class Checks:
    """check(name, cond, detail): counts, prints `FAIL: name detail` when cond is false (detail
    cut to detail_max characters when given), returns cond."""

    def __init__(self, detail_max=None):
        self.count = 0
        self.fails = []
        self.detail_max = detail_max

    def __call__(self, name, cond, detail=""):
        self.count += 1
        if not cond:
            self.fails.append(name)
            if self.detail_max is not None:
                detail = str(detail)[:self.detail_max]
            print(f"FAIL: {name} {detail}", flush=True)
        return cond

    def finish(self, what):
        print(f"{what}: {self.count} checks, {len(self.fails)} failed", flush=True)
        sys.exit(1 if self.fails else 0)


def run_guarded(main, check, cleanup):
    """Runs main(); a SystemExit or any exception it raises is printed and counted as a failed
    check; cleanup() runs after it either way."""
    try:
        main()
    except SystemExit as e:
        print(f"FAIL: {e}", flush=True)
        check.fails.append(str(e))
    except Exception:  # a broken answer or connection while checking: fail with the logs
        traceback.print_exc()
        check.fails.append("exception")
    finally:
        cleanup()


def zone(uid):
    """The default zone rule: (uid / 10) mod 100."""
    return (uid // 10) % 100


# ---- processes ----

class Server:
    """`cellpay start` on an ephemeral port, its stderr in TMP/start.log."""

    def __init__(self, cellpay, tmp, cells=4):
        self.cellpay, self.tmp, self.cells = cellpay, tmp, cells
        self.data = os.path.join(tmp, "data")
        self.proc = self.port = self.out = None

    def start(self, extra=()):
        self.out = open(os.path.join(self.tmp, "start.log"), "ab")
        self.proc = subprocess.Popen(
            [self.cellpay, "start", "--data", self.data, "--listen", "127.0.0.1:0",
             "--cells", str(self.cells), *extra], stdout=subprocess.PIPE, stderr=self.out)
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            m = re.search(r"cellpay start: listening on \S*?127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                with open(os.path.join(self.data, "admin.key")) as f:
                    self.admin_key = f.read().strip()
                return
        raise SystemExit("cellpay start did not say where it listens; see " + self.out.name)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.proc.stdout.close()
        self.out.close()
        self.proc = None
        return rc


def free_ports(n):
    """n distinct bindable loopback ports below the kernel's ephemeral range (a port in it can
    be the local port of any outgoing connection, the nodes' own included)."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng, held, ports = random.Random(), [], []
    try:
        while len(ports) < n:
            p = rng.randrange(10000, low)
            if p in ports:
                continue
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                s.close()
                continue
            held.append(s)
            ports.append(p)
    finally:
        for s in held:
            s.close()
    return ports


def addrs_of(ports):
    """["127.0.0.1:P", ...]: a cell's replica addresses."""
    return [f"127.0.0.1:{p}" for p in ports]


def peers_of(ports):
    """`--peers` of a cell: "1=127.0.0.1:P1,2=127.0.0.1:P2,..."."""
    return ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(ports))


class Procs:
    """Named `cellpay` processes, each logging (stdout unless piped, and stderr) to
    TMP/NAME.log. Spawning a name again replaces the entry (a restart)."""

    def __init__(self, cellpay, tmp):
        self.cellpay, self.tmp = cellpay, tmp
        self.procs = {}  # name -> (Popen, args, log path)

    def spawn(self, name, args, stdout=None):
        log = os.path.join(self.tmp, name + ".log")
        f = open(log, "ab")
        p = subprocess.Popen([self.cellpay, *args], stdin=subprocess.DEVNULL,
                             stdout=stdout if stdout is not None else f, stderr=f)
        f.close()
        self.procs[name] = (p, args, log)
        return p

    def spawn_gateway(self, routes, data, listen, name="gateway"):
        """`cellpay gateway --routes ROUTES --data DATA --listen LISTEN`; waits for its first
        line and returns an endpoint for Api (.port, .admin_key)."""
        gw = self.spawn(name, ["gateway", "--routes", routes, "--data", data, "--listen", listen],
                        stdout=subprocess.PIPE)
        line = gw.stdout.readline().decode()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            raise SystemExit(f"the gateway does not listen: {line!r}\n{self.log_tail(name)}")
        with open(os.path.join(data, "admin.key")) as f:
            return SimpleNamespace(port=int(m.group(1)), admin_key=f.read().strip())

    def __iter__(self):
        return iter(self.procs)

    def __getitem__(self, name):
        """(Popen, args, log path)."""
        return self.procs[name]

    def log_tail(self, name, lines=10):
        try:
            with open(self.procs[name][2], errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def all_running(self, tail=8):
        """SystemExit naming the first process that has exited, with the end of its log."""
        for name, (p, _, _) in self.procs.items():
            if p.poll() is not None:
                raise SystemExit(f"{name} exited ({p.returncode}):\n{self.log_tail(name, tail)}")

    def stop_all(self):
        """SIGTERM to all, then waits 20 s for each; SIGKILL to one that is still running."""
        for p, _, _ in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, (p, _, _) in self.procs.items():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in 20 s; killed")
                p.kill()
                p.wait()


def cell_status(cellpay, addrs):
    """`cellpay admin cell status` of the replicas at addrs: (exit code, its output)."""
    r = subprocess.run([cellpay, "admin", "cell", "status", "--addr", ",".join(addrs),
                        "--timeout-ms", "1000"], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def leader_of(cellpay, addrs, seconds=30, all_answer=False, watch=None):
    """The address of the cell's leader, polled until one leads (and, with all_answer, every
    replica answers); watch() is called before each poll. SystemExit after seconds."""
    deadline = time.time() + seconds
    out = ""
    while time.time() < deadline:
        if watch:
            watch()
        rc, out = cell_status(cellpay, addrs)
        m = re.search(r"^(\S+) id=\d+ role=leader", out, re.M)
        if m and (rc == 0 or not all_answer):
            return m.group(1)
        time.sleep(0.1)
    raise SystemExit(f"no leader at {addrs}:\n{out}")


def settled_status(cellpay, addrs, seconds=20):
    """cell_status, polled until every replica answers at one applied index (or seconds pass):
    the last (exit code, output)."""
    deadline = time.time() + seconds
    rc, out = 1, ""
    while time.time() < deadline:
        rc, out = cell_status(cellpay, addrs)
        if rc == 0 and len(set(re.findall(r" applied=(\d+)", out))) == 1:
            break
        time.sleep(0.1)
    return rc, out


# ---- HTTP ----

def encode(body):
    """A JSON body as the tests send it (compact), or b"" for none."""
    return json.dumps(body, separators=(",", ":")).encode() if body is not None else b""


def request(c, method, path, data=b"", headers=None):
    """One request on connection c: (status, parsed JSON or None, raw body, headers).
    A broken connection raises (OSError or http.client.HTTPException)."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=data if method != "GET" else None, headers=h)
    r = c.getresponse()
    text = r.read()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return r.status, parsed, text, dict(r.getheaders())


def sign(secret, method, path, ts, body):
    """X-Cellpay-Signature: hex HMAC-SHA256 of "METHOD\\nPATH\\nTS\\n" + body."""
    msg = f"{method}\n{path}\n{ts}\n".encode() + body
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def signed_headers(m, method, path, data, key=None, ts=None, sig=None):
    """A merchant's headers (m: {"uid", "secret"}) for a request with body data (not signed for
    GET), timestamped now unless ts; sig replaces the signature; key: Idempotency-Key."""
    ts = str(int(time.time())) if ts is None else ts
    h = {"X-Cellpay-Merchant": str(m["uid"]), "X-Cellpay-Timestamp": ts,
         "X-Cellpay-Signature": sig or sign(m["secret"], method, path, ts,
                                            data if method != "GET" else b"")}
    if key:
        h["Idempotency-Key"] = key
    return h


def admin_headers(key):
    return {"Authorization": "Bearer " + key}


class Api:
    """One keep-alive connection to the API of `server` (anything with .port and .admin_key);
    reconnects once on a broken connection."""

    def __init__(self, server, timeout=15):
        self.server = server
        self.timeout = timeout
        self.c = None

    def reset(self):
        """Forgets the connection (after a restart); the next call opens a new one."""
        if self.c is not None:
            self.c.close()
        self.c = None

    def call(self, method, path, body=None, headers=None, raw=None):
        """(status, parsed JSON or None, raw body, headers)."""
        data = raw if raw is not None else encode(body)
        for attempt in (0, 1):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.server.port,
                                                    timeout=self.timeout)
            try:
                return request(self.c, method, path, data, headers)
            except (http.client.HTTPException, OSError):
                self.c.close()
                self.c = None
                if attempt:
                    raise

    def admin(self, method, path, body=None, headers=None):
        h = admin_headers(self.server.admin_key)
        h.update(headers or {})
        return self.call(method, path, body, h)

    def merchant(self, m, method, path, body=None, key=None, ts=None, sig=None, raw=None):
        """A request signed as merchant m; ts and sig override the timestamp and signature."""
        data = raw if raw is not None else encode(body)
        return self.call(method, path, headers=signed_headers(m, method, path, data, key, ts, sig),
                         raw=data)

    def balance(self, uid, currency="CNY"):
        s, j, _, _ = self.admin("GET", f"/v1/users/{uid}/balance?currency={currency}")
        return int(j["available"]) if s == 200 else None


def err_code(parsed):
    return ((parsed or {}).get("error") or {}).get("code")


def pay_body(buyer, amount, otn, currency="CNY"):
    return {"buyer_uid": str(buyer), "amount": str(amount), "currency": currency,
            "out_trade_no": otn, "funding": "balance"}


def transfer_body(from_uid, to_uid, amount, currency="CNY"):
    return {"from_uid": str(from_uid), "to_uid": str(to_uid), "amount": str(amount),
            "currency": currency}


def transfer(api, from_uid, to_uid, amount, key, currency="CNY"):
    """POST /v1/transfers as the operator with an Idempotency-Key: (status, JSON, raw, headers)."""
    return api.call("POST", "/v1/transfers", transfer_body(from_uid, to_uid, amount, currency),
                    {"Authorization": "Bearer " + api.server.admin_key, "Idempotency-Key": key})
