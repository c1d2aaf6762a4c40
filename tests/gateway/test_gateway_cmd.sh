#!/usr/bin/env bash
# `cellpay gateway` as a process: the health check and a 404 over real HTTP on an ephemeral
# port (with bash's /dev/tcp, no HTTP client needed), --help saying the payment API is not
# built, bad options, and a clean stop on SIGTERM.
set -euo pipefail
cellpay=${1:?usage: test_gateway_cmd.sh path/to/cellpay}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
pass=0 fail=0

check() { # name, condition...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name"; fail=$((fail + 1)); fi
}

"$cellpay" gateway --help > "$tmp/help"
check "help says the payment API is not built" grep -q 'NOT built yet' "$tmp/help"
check "help names the health check" grep -q 'GET /v1/health' "$tmp/help"
check "cellpay help lists gateway" bash -c "'$cellpay' help | grep -q '^  gateway'"
set +e
"$cellpay" gateway --bogus > /dev/null 2>&1; rc=$?
set -e
check "unknown option exits 2" test "$rc" -eq 2

: > "$tmp/out" # exists before the background process opens it
"$cellpay" gateway --listen 127.0.0.1:0 > "$tmp/out" 2> "$tmp/err" &
pid=$!
port=
for _ in $(seq 1 200); do
  port=$(sed -n 's/^cellpay gateway: listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/out" || true)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
check "prints its port" test -n "$port"

# One request on a fresh connection that the server closes after answering; the whole reply.
http() { # request bytes
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf '%b' "$1" >&3
  timeout 30 cat <&3
  exec 3<&-
}

if [ -n "$port" ]; then
  reply=$(http 'GET /v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n')
  check "health is 200" grep -q $'^HTTP/1.1 200 OK\r$' <<< "$reply"
  check "health body" grep -q '^{"status":"ok"}$' <<< "$reply"
  reply=$(http 'GET /v1/payments/1 HTTP/1.1\r\nConnection: close\r\n\r\n')
  check "other paths are 404" grep -q $'^HTTP/1.1 404 Not Found\r$' <<< "$reply"
  check "404 body is the error object" grep -q '{"error":{"code":"not_found"' <<< "$reply"
  # Two requests on one connection: keep-alive.
  reply=$(http 'GET /v1/health HTTP/1.1\r\n\r\nGET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n')
  check "keep-alive answers both" test "$(grep -c '^{"status":"ok"}' <<< "$reply")" -eq 2
  reply=$(http 'nonsense\r\n\r\n')
  check "garbage is 400" grep -q $'^HTTP/1.1 400 Bad Request\r$' <<< "$reply"
fi

kill -TERM "$pid"
set +e
wait "$pid"; rc=$?
set -e
pid=
check "SIGTERM stops it with 0" test "$rc" -eq 0
check "logs a clean stop" grep -q 'stopped cleanly' "$tmp/err"

echo "gateway cmd: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
