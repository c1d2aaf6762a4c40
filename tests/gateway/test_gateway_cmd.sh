#!/usr/bin/env bash
# `cellpay gateway` as a process, with a route table whose one cell nobody serves: the health
# check, 404 / 405 / 401 over real HTTP on an ephemeral port (with bash's /dev/tcp, no HTTP
# client needed), an operator request the unreachable cell cannot answer (503 unavailable),
# the admin key file, --help, bad options, and a clean stop on SIGTERM.
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
check "help names the payment endpoints" grep -q 'POST /v1/payments' "$tmp/help"
check "help names the health check" grep -q 'GET /v1/health' "$tmp/help"
check "help says --routes is required" grep -q 'route table (required)' "$tmp/help"
check "cellpay help lists gateway" bash -c "'$cellpay' help | grep -q '^  gateway'"
set +e
"$cellpay" gateway --bogus > /dev/null 2>&1; rc=$?
set -e
check "unknown option exits 2" test "$rc" -eq 2
set +e
"$cellpay" gateway --listen 127.0.0.1:0 > /dev/null 2>&1; rc=$?
set -e
check "no --routes exits 2" test "$rc" -eq 2
set +e
"$cellpay" gateway --routes /nonexistent > /dev/null 2>&1; rc=$?
set -e
check "no --data exits 2" test "$rc" -eq 2

# A cell at a port nobody listens on (bound and closed again).
dead=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version 1\ncell 1 127.0.0.1:%s\nzones 0-99 -> 1\n' "$dead" > "$tmp/routes"

: > "$tmp/out" # exists before the background process opens it
"$cellpay" gateway --listen 127.0.0.1:0 --routes "$tmp/routes" --data "$tmp/data" \
  --cell-deadline-ms 300 > "$tmp/out" 2> "$tmp/err" &
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
  check "a malformed id is 404" grep -q $'^HTTP/1.1 404 Not Found\r$' <<< "$reply"
  check "404 body is the error object" grep -q '{"error":{"code":"not_found"' <<< "$reply"
  reply=$(http 'GET /v2/nothing HTTP/1.1\r\nConnection: close\r\n\r\n')
  check "other paths are 404" grep -q $'^HTTP/1.1 404 Not Found\r$' <<< "$reply"
  reply=$(http 'DELETE /v1/payments HTTP/1.1\r\nConnection: close\r\n\r\n')
  check "a wrong method is 405" grep -q $'^HTTP/1.1 405 ' <<< "$reply"
  check "405 says what is allowed" grep -q $'^Allow: POST\r$' <<< "$reply"
  body='{"uid":"42","currency":"CNY"}'
  reply=$(http "POST /v1/users HTTP/1.1\r\nContent-Length: ${#body}\r\nConnection: close\r\n\r\n$body")
  check "no bearer key is 401" grep -q '{"error":{"code":"unauthorized"' <<< "$reply"
  reply=$(http "POST /v1/users HTTP/1.1\r\nAuthorization: Bearer nope\r\nContent-Length: ${#body}\r\nConnection: close\r\n\r\n$body")
  check "a wrong bearer key is 401" grep -q $'^HTTP/1.1 401 ' <<< "$reply"
  key=$(cat "$tmp/data/admin.key")
  check "the data directory was created private" test "$(stat -c %a "$tmp/data")" = 700
  check "the admin key file is 64 hex digits" grep -Eq '^[0-9a-f]{64}$' "$tmp/data/admin.key"
  reply=$(http "POST /v1/users HTTP/1.1\r\nAuthorization: Bearer $key\r\nContent-Length: ${#body}\r\nConnection: close\r\n\r\n$body")
  check "an unreachable cell is 503 unavailable" grep -q '{"error":{"code":"unavailable"' <<< "$reply"
  check "the 503 status line" grep -q $'^HTTP/1.1 503 ' <<< "$reply"
  reply=$(http "POST /v1/users HTTP/1.1\r\nAuthorization: Bearer $key\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
  check "a bad body is 400 with param" grep -q '"code":"invalid_request".*"param":"uid"' <<< "$reply"
  reply=$(http 'GET /v1/payments/pay_0123456789abcdef0123456789abcdef HTTP/1.1\r\nConnection: close\r\n\r\n')
  check "an unsigned merchant request is 401" grep -q '{"error":{"code":"unauthorized"' <<< "$reply"
  check "the key is never logged" bash -c "! grep -q '$key' '$tmp/err' '$tmp/out'"
  # The route table file changes: the gateway takes the new one (within 500 ms), and keeps
  # it when the file turns invalid.
  printf 'version 2\ncell 3 127.0.0.1:%s\nzones 0-99 -> 3\n' "$dead" > "$tmp/routes.new"
  mv "$tmp/routes.new" "$tmp/routes"
  for _ in $(seq 1 100); do grep -q 'route table version 2, 1 cells' "$tmp/err" && break; sleep 0.05; done
  check "a changed route table file is taken" grep -q 'route table version 2, 1 cells' "$tmp/err"
  printf 'version 3\nnonsense\n' > "$tmp/routes.new"
  mv "$tmp/routes.new" "$tmp/routes"
  for _ in $(seq 1 100); do grep -q 'keeping route table version 2' "$tmp/err" && break; sleep 0.05; done
  check "an invalid route table file is not" grep -q 'keeping route table version 2' "$tmp/err"
  reply=$(http 'GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n')
  check "still serving after the bad table" grep -q '^{"status":"ok"}$' <<< "$reply"
  # A valid table whose cell's client cannot be opened (a host name: the client takes IPv4
  # literals and localhost) is kept out, said once; not tried again until the file changes.
  printf 'version 4\ncell 3 cellhost.invalid:%s\nzones 0-99 -> 3\n' "$dead" > "$tmp/routes.new"
  mv "$tmp/routes.new" "$tmp/routes"
  kept='keeping route table version 2: a cell.s client cannot be opened'
  for _ in $(seq 1 100); do grep -q "$kept" "$tmp/err" && break; sleep 0.05; done
  check "a table whose client cannot be opened is not taken" grep -q "$kept" "$tmp/err"
  # Over a second (two more polls of the file, 500 ms apart) a retry would log again.
  sleep 1.2
  check "and is tried once" test "$(grep -c 'cellhost.invalid' "$tmp/err")" -eq 1
  printf 'version 5\ncell 1 127.0.0.1:%s\nzones 0-99 -> 1\n' "$dead" > "$tmp/routes.new"
  mv "$tmp/routes.new" "$tmp/routes"
  for _ in $(seq 1 100); do grep -q 'route table version 5, 1 cells' "$tmp/err" && break; sleep 0.05; done
  check "the next good table is taken" grep -q 'route table version 5, 1 cells' "$tmp/err"
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
