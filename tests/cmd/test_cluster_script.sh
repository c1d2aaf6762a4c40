#!/usr/bin/env bash
# scripts/cluster.sh: starts 4 cells x 3 replicas as processes in a temp dir on free ports,
# every replica answers `cellpay admin cell status` and every cell has one leader, `status`
# reports them, the route table parses and names every replica, and `stop` leaves no process.
# The gateway is checked only when this build's `cellpay gateway` takes --routes.
set -eu
cellpay=${1:?usage: test_cluster_script.sh path/to/cellpay}
script=$(cd "$(dirname "$0")/../.." && pwd)/scripts/cluster.sh
tmp=$(mktemp -d)
dir=$tmp/cluster
pids=()
cleanup() {
  bash "$script" stop --dir "$dir" > /dev/null 2>&1 || true
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
pass=0 fail=0

check() { # name, condition...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name"; fail=$((fail + 1)); fi
}

# A base port whose 40 ports above (cells) and gateway port are all free: a connect that is
# refused means nothing listens there.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
base=
for _ in $(seq 1 50); do
  b=$((20000 + RANDOM % 30000))
  ok=1
  for p in $(seq $((b + 1)) $((b + 41))); do port_free "$p" || { ok=0; break; }; done
  [ "$ok" -eq 1 ] && { base=$b; break; }
done
[ -n "$base" ] || { echo "no free port range"; exit 1; }
gw=127.0.0.1:$((base + 41))

set +e
bash "$script" start --dir "$dir" --base-port "$base" --listen "$gw" --cellpay "$cellpay" \
  > "$tmp/start.out" 2>&1
rc=$?
set -e
for f in "$dir"/*.pid; do [ -f "$f" ] && pids+=("$(cat "$f")"); done
check "start exits 0" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat "$tmp/start.out"
check "12 node processes" test "$(ls "$dir"/c*r*.pid 2>/dev/null | wc -l)" -eq 12
check "a log per node" test "$(ls "$dir"/c*r*.log 2>/dev/null | wc -l)" -eq 12

for c in 1 2 3 4; do
  leaders=0
  for r in 1 2 3; do
    addr=127.0.0.1:$((base + 10 * (c - 1) + r))
    out=$("$cellpay" admin cell status --addr "$addr" 2>&1) || true
    check "cell $c replica $r answers" grep -q "id=$r role=" <<< "$out"
    grep -q 'role=leader' <<< "$out" && leaders=$((leaders + 1))
    check "cell $c replica $r in the routes" grep -q "^cell $c .*$addr" "$dir/routes"
  done
  check "cell $c has one leader" test "$leaders" -eq 1
  zones="$((25 * (c - 1)))-$((25 * c - 1))"
  check "cell $c owns $zones" grep -qx "zones=$zones" "$dir/c${c}r1/cell.conf"
done
check "the routes parse" "$cellpay" admin routes show --file "$dir/routes"
check "uid 990 routes to cell 4" bash -c "'$cellpay' admin routes show --file '$dir/routes' --uid 990 | grep -q 'cell 4'"

if "$cellpay" gateway --help | grep -q -- '--routes'; then
  check "the gateway runs" test -f "$dir/gateway.pid"
  reply=$(exec 3<>"/dev/tcp/${gw%:*}/${gw##*:}" &&
    printf 'GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n' >&3 && timeout 30 cat <&3) || true
  check "the gateway answers health" grep -q '"status":"ok"' <<< "$reply"
else
  echo "note: cellpay gateway does not take --routes yet: gateway not checked"
  check "start notes the missing gateway" grep -q 'does not take --routes' "$tmp/start.out"
fi

check "status exits 0" bash "$script" status --dir "$dir" --base-port "$base" --cellpay "$cellpay"
bash "$script" status --dir "$dir" --base-port "$base" --cellpay "$cellpay" > "$tmp/status" 2>&1 || true
check "status shows 4 leaders" test "$(grep -c 'role=leader' "$tmp/status")" -eq 4

set +e
bash "$script" start --dir "$dir" --base-port "$base" --cellpay "$cellpay" > "$tmp/again" 2>&1
rc=$?
set -e
check "a second start is refused" test "$rc" -ne 0
check "and says it runs" grep -q 'already running' "$tmp/again"

check "stop exits 0" bash "$script" stop --dir "$dir"
# A process that has exited may stay a zombie until init reaps it (the script that started
# it is gone): that is not a process left running.
running() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; [ "${s#Z}" = "$s" ]; }
left=0
for p in "${pids[@]}"; do running "$p" && left=$((left + 1)); done
check "no process is left" test "$left" -eq 0
check "no pid file is left" test -z "$(ls "$dir"/*.pid 2>/dev/null)"
check "every node stopped cleanly" test "$(grep -l 'stopped cleanly' "$dir"/c*r*.log | wc -l)" -eq 12

echo "cluster script: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
