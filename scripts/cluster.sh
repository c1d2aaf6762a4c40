#!/usr/bin/env bash
# A local multi-process cluster on 127.0.0.1: 4 cells x 3 replicas (`cellpay node`, one
# process each) and a gateway (`cellpay gateway --routes`) in front of them.
#
#   scripts/cluster.sh start  [--dir DIR] [--base-port P] [--listen HOST:PORT] [--cellpay PATH]
#   scripts/cluster.sh status [--dir DIR] [--base-port P] [--cellpay PATH]
#   scripts/cluster.sh stop   [--dir DIR]
#
#   --dir DIR          where everything lives (default ./cluster)
#   --base-port P      ports are P+1.. (default 7100): cell C's replica R serves clients on
#                      P + 10(C-1) + R and talks Raft on P + 10(C-1) + 5 + R
#   --listen HOST:PORT the gateway's HTTP address (default 127.0.0.1:8080)
#   --cellpay PATH     the binary (default build/cellpay of this checkout)
#
# Cell C (1..4) owns the zones 25(C-1) .. 25C-1. Layout of DIR:
#   DIR/c<C>r<R>/      replica R of cell C's data      DIR/c<C>r<R>.log, .pid
#   DIR/routes         the route table (docs/routing.md): version 1, each cell's three client
#                      addresses and its zones
#   DIR/gateway.log, DIR/gateway.pid, and the gateway's own data under DIR
# `start` waits until every cell has a leader; `stop` sends SIGTERM to every process it
# started and waits for each to exit (SIGKILL after 20 s, said on stderr); `status` asks
# every replica (`cellpay admin cell status`). The gateway is started only when the binary's
# `cellpay gateway` takes --routes; otherwise start says so and runs the cells alone.
set -eu

CELLS=4
REPLICAS=3
here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
[ $# -gt 0 ] && shift
dir=./cluster
base=7100
listen=127.0.0.1:8080
cellpay=$here/build/cellpay

usage() {
  sed -n '2,/^set -eu$/p' "$0" | sed -e '/^set -eu$/d' -e 's/^# \{0,1\}//'
  exit "$1"
}

while [ $# -gt 0 ]; do
  case $1 in
    --dir) dir=${2:?--dir needs a value}; shift 2 ;;
    --base-port) base=${2:?--base-port needs a value}; shift 2 ;;
    --listen) listen=${2:?--listen needs a value}; shift 2 ;;
    --cellpay) cellpay=${2:?--cellpay needs a value}; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "cluster: unknown option \"$1\"" >&2; usage 2 >&2 ;;
  esac
done
dir=$(realpath -m -- "$dir") # pid checks match it in the processes' command lines
case $base in ''|*[!0-9]*) echo "cluster: --base-port takes a number" >&2; exit 2 ;; esac
if [ "$base" -lt 1 ] || [ "$base" -gt 65490 ]; then
  echo "cluster: --base-port must be in 1..65490 (the cells use the 40 ports above it)" >&2
  exit 2
fi

client_port() { echo $((base + 10 * ($1 - 1) + $2)); }
peer_port() { echo $((base + 10 * ($1 - 1) + 5 + $2)); }
zones() { echo "$((25 * ($1 - 1)))-$((25 * $1 - 1))"; }

addrs() { # cell: its replicas' client addresses, comma-separated
  local r out=
  for r in $(seq 1 $REPLICAS); do out=${out:+$out,}127.0.0.1:$(client_port "$1" "$r"); done
  echo "$out"
}

peers() { # cell: the --peers list of its replicas
  local r out=
  for r in $(seq 1 $REPLICAS); do out=${out:+$out,}$r=127.0.0.1:$(peer_port "$1" "$r"); done
  echo "$out"
}

# Whether the process in pid file $1 runs, and is ours (its command line names DIR: a pid
# reused by another process is left alone).
alive() {
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir"
}

write_routes() {
  local c
  {
    echo "# written by scripts/cluster.sh: $CELLS cells of $REPLICAS replicas"
    echo "version 1"
    echo "rule 10 100"
    for c in $(seq 1 $CELLS); do echo "cell $c $(addrs "$c")"; done
    for c in $(seq 1 $CELLS); do echo "zones $(zones "$c") -> $c"; done
  } > "$dir/routes.tmp"
  mv "$dir/routes.tmp" "$dir/routes"
  "$cellpay" admin routes show --file "$dir/routes" > /dev/null # refuses an invalid table
}

start_node() { # cell replica
  local name=c$1r$2
  "$cellpay" node --data "$dir/$name" --listen "127.0.0.1:$(client_port "$1" "$2")" \
    --cell "$1" --id "$2" --peers "$(peers "$1")" --zones "$(zones "$1")" \
    < /dev/null > "$dir/$name.log" 2>&1 &
  echo $! > "$dir/$name.pid"
}

wait_leader() { # cell: until one replica says it leads (at most 30 s)
  for _ in $(seq 1 300); do
    if "$cellpay" admin cell status --addr "$(addrs "$1")" --timeout-ms 500 2>/dev/null |
      grep -q 'role=leader'; then
      return 0
    fi
    sleep 0.1
  done
  echo "cluster: cell $1 has no leader after 30 s (logs: $dir/c$1r*.log)" >&2
  return 1
}

do_stop() {
  local f pid left=0
  for f in "$dir"/*.pid; do
    [ -f "$f" ] || continue
    if alive "$f"; then kill -TERM "$(cat "$f")"; fi
  done
  for f in "$dir"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 1 200); do alive "$f" || break; sleep 0.1; done
    if alive "$f"; then
      echo "cluster: $(basename "$f" .pid) (pid $pid) did not stop in 20 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      left=1
    fi
    rm -f "$f"
  done
  return $left
}

do_start() {
  local f c r
  [ -x "$cellpay" ] || { echo "cluster: no cellpay binary at $cellpay (make, or --cellpay)" >&2; exit 1; }
  mkdir -p "$dir"
  for f in "$dir"/*.pid; do
    if [ -f "$f" ] && alive "$f"; then
      echo "cluster: already running in $dir ($(basename "$f" .pid)); stop it first" >&2
      exit 1
    fi
  done
  rm -f "$dir"/*.pid
  # A start that fails half-way stops what it started.
  trap 'echo "cluster: start failed; stopping what was started" >&2; do_stop || true' EXIT
  write_routes
  for c in $(seq 1 $CELLS); do
    for r in $(seq 1 $REPLICAS); do start_node "$c" "$r"; done
  done
  for c in $(seq 1 $CELLS); do wait_leader "$c"; done
  if "$cellpay" gateway --help 2>/dev/null | grep -q -- '--routes'; then
    "$cellpay" gateway --routes "$dir/routes" --listen "$listen" --data "$dir" \
      < /dev/null > "$dir/gateway.log" 2>&1 &
    echo $! > "$dir/gateway.pid"
    for _ in $(seq 1 100); do grep -q 'listening on' "$dir/gateway.log" && break; sleep 0.1; done
    grep -q 'listening on' "$dir/gateway.log" ||
      { echo "cluster: the gateway does not listen (see $dir/gateway.log)" >&2; exit 1; }
    echo "cluster: gateway on $listen"
  else
    echo "cluster: note: this cellpay's gateway does not take --routes yet; running the cells without it"
  fi
  trap - EXIT
  for c in $(seq 1 $CELLS); do echo "cluster: cell $c (zones $(zones "$c")) on $(addrs "$c")"; done
  echo "cluster: running in $dir (logs $dir/*.log); stop with: $0 stop --dir $dir"
}

do_status() {
  local c rc=0 f
  for c in $(seq 1 $CELLS); do
    echo "cell $c (zones $(zones "$c")):"
    "$cellpay" admin cell status --addr "$(addrs "$c")" --timeout-ms 1000 || rc=1
  done
  if [ -f "$dir/gateway.pid" ]; then
    f=$dir/gateway.pid
    if alive "$f"; then echo "gateway: running (pid $(cat "$f"))"; else echo "gateway: not running"; rc=1; fi
  fi
  return $rc
}

case $cmd in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  -h|--help|help) usage 0 ;;
  *) echo "cluster: start, stop or status?" >&2; usage 2 >&2 ;;
esac
