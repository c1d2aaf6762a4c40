"""Small helpers shared by the API tests: a `cellpay start` process, keep-alive HTTP calls,
merchant signatures, and a check counter. Python's standard library only."""
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time


class Checks:
    def __init__(self):
        self.count = 0
        self.fails = []

    def __call__(self, name, cond, detail=""):
        self.count += 1
        if not cond:
            self.fails.append(name)
            print(f"FAIL: {name} {detail}", flush=True)
        return cond

    def finish(self, what):
        print(f"{what}: {self.count} checks, {len(self.fails)} failed", flush=True)
        sys.exit(1 if self.fails else 0)


def zone(uid):
    """The default zone rule: (uid / 10) mod 100."""
    return (uid // 10) % 100


class Server:
    """`cellpay start` on an ephemeral port, its stderr in TMP/start.log."""

    def __init__(self, cellpay, tmp, cells=4):
        self.cellpay, self.tmp, self.cells = cellpay, tmp, cells
        self.data = os.path.join(tmp, "data")
        self.proc = self.port = self.out = None

    def start(self):
        self.out = open(os.path.join(self.tmp, "start.log"), "ab")
        self.proc = subprocess.Popen(
            [self.cellpay, "start", "--data", self.data, "--listen", "127.0.0.1:0",
             "--cells", str(self.cells)], stdout=subprocess.PIPE, stderr=self.out)
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

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=60)
        self.proc.stdout.close()
        self.out.close()
        self.proc = None
        return rc


class Api:
    """One keep-alive connection to the API; reconnects once on a broken connection."""

    def __init__(self, server):
        self.server = server
        self.c = None

    def call(self, method, path, body=None, headers=None, raw=None):
        """(status, parsed JSON or None, raw body, headers)."""
        data = raw if raw is not None else (
            json.dumps(body, separators=(",", ":")).encode() if body is not None else b"")
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        for attempt in (0, 1):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=15)
            try:
                self.c.request(method, path, body=data if method != "GET" else None, headers=h)
                r = self.c.getresponse()
                text = r.read()
                break
            except (http.client.HTTPException, OSError):
                self.c.close()
                self.c = None
                if attempt:
                    raise
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return r.status, parsed, text, dict(r.getheaders())

    def admin(self, method, path, body=None):
        return self.call(method, path, body, {"Authorization": "Bearer " + self.server.admin_key})

    def merchant(self, m, method, path, body=None, key=None):
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        ts = str(int(time.time()))
        msg = f"{method}\n{path}\n{ts}\n".encode() + (data if method != "GET" else b"")
        h = {"X-Cellpay-Merchant": str(m["uid"]), "X-Cellpay-Timestamp": ts,
             "X-Cellpay-Signature": hmac.new(m["secret"].encode(), msg, hashlib.sha256).hexdigest()}
        if key:
            h["Idempotency-Key"] = key
        return self.call(method, path, headers=h, raw=data)

    def balance(self, uid, currency="CNY"):
        s, j, _, _ = self.admin("GET", f"/v1/users/{uid}/balance?currency={currency}")
        return int(j["available"]) if s == 200 else None


def err_code(parsed):
    return (parsed or {}).get("error", {}).get("code")


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
