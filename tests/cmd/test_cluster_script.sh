#!/usr/bin/env bash
# scripts/cluster.sh: starts 4 cells x 3 replicas as processes in a temp dir on free ports,
# every replica answers `cellpay admin cell status` and every cell has one leader, `status`
# reports them, the route table parses and names every replica, the gateway serves the
# payment API end to end (a merchant, a buyer, a top-up and a signed payment in a cell of
# three replicas, which then agree on their state hash), and `stop` leaves no process.
# The gateway is checked only when this build's `cellpay gateway` takes --routes.
# On a failure the start's output and the end of every process's log are printed.
set -euo pipefail
cellpay=${1:?usage: test_cluster_script.sh path/to/cellpay}
here=$(cd "$(dirname "$0")" && pwd)
script=$here/../../scripts/cluster.sh
tmp=$(mktemp -d)
dir=$tmp/cluster
pids=()
pass=0 fail=0

show_logs() {
  local f
  echo "--- start output:"
  cat "$tmp"/start*.out 2>/dev/null || true
  for f in "$dir"/*.log; do
    [ -f "$f" ] || continue
    echo "--- the end of $(basename "$f"):"
    tail -n 5 "$f"
  done
}

cleanup() {
  local rc=$?
  if [ "$fail" -ne 0 ] || [ "$rc" -ne 0 ]; then show_logs; fi
  bash "$script" stop --dir "$dir" > /dev/null 2>&1 || true
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

check() { # name, condition...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name"; fail=$((fail + 1)); fi
}

# The cluster needs 41 consecutive ports above its base (cells, then the gateway). They are
# taken below the kernel's ephemeral range: a port in that range can be the local port of an
# outgoing connection at any moment (the cluster's own nodes connect to each other), and a
# node told to listen there then fails with "address already in use". Each candidate port
# must be bindable now (nothing listens on it and no socket holds it).
ports_free() { # first last: whether every port in first..last can be bound
  python3 - "$1" "$2" << 'EOF'
import socket, sys
for port in range(int(sys.argv[1]), int(sys.argv[2]) + 1):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
EOF
}
read -r eph_low _ < /proc/sys/net/ipv4/ip_local_port_range || eph_low=32768
pick_base() {
  local b
  for _ in $(seq 1 50); do
    b=$((10000 + RANDOM % (eph_low - 10000 - 50)))
    if ports_free $((b + 1)) $((b + 41)); then echo "$b"; return 0; fi
  done
  echo "no free port range below $eph_low" >&2
  return 1
}

# Another program may still bind one of the ports between the check and the node's bind.
# A start that failed for that reason (a log says so) is tried again on other ports, at most
# three times; any other failure of the start is a failure of the test.
rc=1
for attempt in 1 2 3; do
  base=$(pick_base)
  gw=127.0.0.1:$((base + 41))
  set +e
  bash "$script" start --dir "$dir" --base-port "$base" --listen "$gw" --cellpay "$cellpay" \
    > "$tmp/start$attempt.out" 2>&1
  rc=$?
  set -e
  [ "$rc" -eq 0 ] && break
  grep -qs 'address already in use' "$dir"/*.log || break
  echo "note: start $attempt on base port $base found a port taken by another program; again"
  bash "$script" stop --dir "$dir" > /dev/null 2>&1 || true
  rm -rf "$dir"
done
for f in "$dir"/*.pid; do [ -f "$f" ] && pids+=("$(cat "$f")"); done
check "start exits 0" test "$rc" -eq 0
check "12 node processes" test "$(find "$dir" -maxdepth 1 -name 'c*r*.pid' | wc -l)" -eq 12
check "a log per node" test "$(find "$dir" -maxdepth 1 -name 'c*r*.log' | wc -l)" -eq 12

for c in 1 2 3 4; do
  leaders=0
  for r in 1 2 3; do
    addr=127.0.0.1:$((base + 10 * (c - 1) + r))
    out=$("$cellpay" admin cell status --addr "$addr" 2>&1) || true
    check "cell $c replica $r answers" grep -q "id=$r role=" <<< "$out"
    if grep -q 'role=leader' <<< "$out"; then leaders=$((leaders + 1)); fi
    check "cell $c replica $r in the routes" grep -q "^cell $c .*$addr" "$dir/routes"
  done
  check "cell $c has one leader" test "$leaders" -eq 1
  zones="$((25 * (c - 1)))-$((25 * c - 1))"
  check "cell $c owns $zones" grep -qx "zones=$zones" "$dir/c${c}r1/cell.conf"
done
check "the routes parse" "$cellpay" admin routes show --file "$dir/routes"
out=$("$cellpay" admin routes show --file "$dir/routes" --uid 990 2>&1) || true
check "uid 990 routes to cell 4" grep -q 'cell 4' <<< "$out"

if [[ $("$cellpay" gateway --help 2>&1 || true) == *--routes* ]]; then
  check "the gateway runs" test -f "$dir/gateway.pid"
  reply=$(exec 3<>"/dev/tcp/${gw%:*}/${gw##*:}" &&
    printf 'GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n' >&3 && timeout 30 cat <&3) || true
  check "the gateway answers health" grep -q '"status":"ok"' <<< "$reply"
  # The payment API end to end: cell 1 (zones 0-24, three replicas) and cell 4 (75-99).
  check "a signed payment through the gateway, in cells 1 and 4" \
    python3 "$here/cluster_pay.py" "$gw" "$dir/admin.key"
  # Every replica of cell 1 applies the payment: once all applied the same index, their
  # state hashes must be equal.
  addrs=$(sed -n 's/^cell 1 //p' "$dir/routes")
  same=0
  for _ in $(seq 1 100); do
    st=$("$cellpay" admin cell status --addr "$addrs" 2>&1) || { sleep 0.1; continue; }
    if [ "$(grep -o ' applied=[0-9]*' <<< "$st" | sort -u | wc -l)" -eq 1 ]; then
      [ "$(grep -o ' hash=[0-9a-f]*' <<< "$st" | sort -u | wc -l)" -eq 1 ] && same=1
      break
    fi
    sleep 0.1
  done
  check "cell 1's replicas applied alike: one state hash" test "$same" -eq 1
  [ "$same" -eq 1 ] || echo "${st:-}"
else
  echo "note: cellpay gateway does not take --routes yet: gateway not checked"
  check "start notes the missing gateway" grep -q 'does not take --routes' "$tmp/start$attempt.out"
fi

check "status exits 0" bash "$script" status --dir "$dir" --base-port "$base" --cellpay "$cellpay"
bash "$script" status --dir "$dir" --base-port "$base" --cellpay "$cellpay" > "$tmp/status" 2>&1 || true
check "status shows 4 leaders" test "$(grep -c 'role=leader' "$tmp/status")" -eq 4

set +e
bash "$script" start --dir "$dir" --base-port "$base" --listen "$gw" --cellpay "$cellpay" \
  > "$tmp/again" 2>&1
rc=$?
set -e
check "a second start is refused" test "$rc" -ne 0
check "and says it runs" grep -q 'already running' "$tmp/again"

check "stop exits 0" bash "$script" stop --dir "$dir"
# A process that has exited may stay a zombie until init reaps it (the script that started
# it is gone): that is not a process left running.
running() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; [ "${s#Z}" = "$s" ]; }
left=0
for p in "${pids[@]}"; do if running "$p"; then left=$((left + 1)); fi; done
check "no process is left" test "$left" -eq 0
check "no pid file is left" test -z "$(find "$dir" -maxdepth 1 -name '*.pid')"
check "every node stopped cleanly" \
  test "$(grep -l 'stopped cleanly' "$dir"/c*r*.log 2>/dev/null | wc -l)" -eq 12

echo "cluster script: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
