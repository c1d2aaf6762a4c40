#!/usr/bin/env bash
# `cellpay start` as a process: N durable cells and the gateway under a temp data directory,
# the health check over real HTTP, admin.key's mode, each cell's zones fixed in its cell.conf,
# a clean stop of every cell on SIGTERM, a restart on the same directory, and a refused
# restart with another --cells.
set -eu
cellpay=${1:?usage: test_start.sh path/to/cellpay}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
pass=0 fail=0

check() { # name, condition...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name"; fail=$((fail + 1)); fi
}

# Starts `cellpay start` in the background with the given options; sets pid and port.
start() {
  : > "$tmp/out"
  "$cellpay" start --data "$tmp/data" --listen 127.0.0.1:0 "$@" > "$tmp/out" 2> "$tmp/err" &
  pid=$!
  port=
  for _ in $(seq 1 400); do
    port=$(sed -n 's/^cellpay start: listening on 127\.0\.0\.1:\([0-9]*\), admin key in .*$/\1/p' \
      "$tmp/out" || true)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
}

# SIGTERM, then the exit code in rc.
stop() {
  kill -TERM "$pid"
  set +e
  wait "$pid"; rc=$?
  set -e
  pid=
}

health() {
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'GET /v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' >&3
  timeout 30 cat <&3
  exec 3<&-
}

"$cellpay" start --help > "$tmp/help"
check "help names the options" grep -q -- '--cells N' "$tmp/help"
check "help names the payment API" grep -q 'serves the payment API' "$tmp/help"
for bad in "--cells 0" "--cells 101" "--cells x" "--bogus" "--listen nocolon"; do
  set +e
  # shellcheck disable=SC2086
  "$cellpay" start --data "$tmp/never" $bad > /dev/null 2>&1; rc=$?
  set -e
  check "$bad exits 2" test "$rc" -eq 2
done
check "bad options create nothing" test ! -e "$tmp/never"

start --cells 3
check "prints its port" test -n "$port"
if [ -n "$port" ]; then
  reply=$(health)
  check "health is 200" grep -q $'^HTTP/1.1 200 OK\r$' <<< "$reply"
  check "health body" grep -q '^{"status":"ok"}$' <<< "$reply"
fi
check "the line names the admin key" grep -q "admin key in $tmp/data/admin.key\$" "$tmp/out"
check "admin.key is mode 0600" test "$(stat -c %a "$tmp/data/admin.key")" = 600
check "admin.key is 64 hex digits" grep -Eqx '[0-9a-f]{64}' "$tmp/data/admin.key"
check "start.conf records 3 cells" grep -qx 'cells=3' "$tmp/data/start.conf"
check "cell 1 owns 0-32" grep -qx 'zones=0-32' "$tmp/data/cell-1/cell.conf"
check "cell 2 owns 33-65" grep -qx 'zones=33-65' "$tmp/data/cell-2/cell.conf"
check "cell 3 owns 66-99" grep -qx 'zones=66-99' "$tmp/data/cell-3/cell.conf"
check "no fourth cell" test ! -e "$tmp/data/cell-4"
# Every cell serves the binary protocol on its own port and leads its one-voter group.
for i in 1 2 3; do
  addr=$(sed -n "s/^cellpay node cell $i: listening on \(127\.0\.0\.1:[0-9]*\)$/\1/p" "$tmp/err")
  check "cell $i logs its address" test -n "$addr"
  if [ -n "$addr" ]; then
    "$cellpay" admin cell status --addr "$addr" > "$tmp/status" 2>&1 || true
    check "cell $i leads" grep -q 'role=leader' "$tmp/status"
  fi
done
# A second instance whose API port is taken: it fails, says why, and stops its cells.
if [ -n "$port" ]; then
  set +e
  "$cellpay" start --data "$tmp/data2" --listen "127.0.0.1:$port" --cells 2 \
    > "$tmp/out2" 2> "$tmp/err2"
  rc=$?
  set -e
  check "a taken API port exits 1" test "$rc" -eq 1
  check "and says it cannot listen" grep -qi 'listen' "$tmp/err2"
  check "and stops its cells cleanly" test "$(grep -c 'stopped cleanly at' "$tmp/err2")" -eq 2
fi
key=$(cat "$tmp/data/admin.key")
stop
check "SIGTERM exits 0" test "$rc" -eq 0
for i in 1 2 3; do
  check "cell $i stopped cleanly" grep -q "^cellpay node cell $i: stopped cleanly" "$tmp/err"
done
check "start says it stopped" grep -q '^cellpay start: stopped cleanly' "$tmp/err"

start --cells 3
check "restart on the same directory listens" test -n "$port"
[ -n "$port" ] && check "restart serves health" grep -q '^{"status":"ok"}$' <<< "$(health)"
check "restart keeps the admin key" test "$(cat "$tmp/data/admin.key")" = "$key"
stop
check "restart stops with 0" test "$rc" -eq 0

set +e
"$cellpay" start --data "$tmp/data" --listen 127.0.0.1:0 --cells 4 > "$tmp/out" 2> "$tmp/err"
rc=$?
set -e
check "another --cells exits 1" test "$rc" -eq 1
check "and says why" grep -q 'created with --cells 3; it cannot start with --cells 4' "$tmp/err"
check "and listens nowhere" test ! -s "$tmp/out"
check "and creates no cell" test ! -e "$tmp/data/cell-4"

echo "start: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
