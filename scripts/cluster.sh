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
# `start` waits until every replica answers `cellpay admin cell status` and every cell has a
# leader, then until the gateway listens; a process that exits meanwhile (a port taken by
# another program, say) fails the start at once, with the end of its log, and the start
# stops what it started. `stop` sends SIGTERM to every process it started and waits for each
# to exit (SIGKILL after 20 s, said on stderr); `status` asks every replica. The gateway is
# started only when the binary's `cellpay gateway` takes --routes; otherwise start says so
# and runs the cells alone.
#
# Pick --base-port below the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range,
# usually 32768-60999): a port in it can be the local port of any outgoing connection, the
# cluster's own included, and the node that should listen there then cannot.
set -euo pipefail

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
  sed -n '2,/^set -euo pipefail$/p' "$0" | sed -e '/^set -euo pipefail$/d' -e 's/^# \{0,1\}//'
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
  local pid cmdline
  [ -f "$1" ] || return 1
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$dir"* ]]
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
    --routes "$dir/routes" < /dev/null > "$dir/$name.log" 2>&1 &
  echo $! > "$dir/$name.pid"
}

# The last lines of a process's log, indented, for an error message.
log_tail() { tail -n 5 "$1" 2>/dev/null | sed 's/^/    /' >&2 || true; }

# Fails (with the log's end) when the process of pid file $1 is gone.
check_running() { # name
  alive "$dir/$1.pid" && return 0
  echo "cluster: $1 exited during the start; the end of $dir/$1.log:" >&2
  log_tail "$dir/$1.log"
  return 1
}

wait_cell() { # cell: until every replica answers status and one leads (at most 30 s)
  local out r
  for _ in $(seq 1 300); do
    for r in $(seq 1 $REPLICAS); do check_running "c$1r$r" || return 1; done
    # Exits 0 only when every replica answered.
    if out=$("$cellpay" admin cell status --addr "$(addrs "$1")" --timeout-ms 500 2>&1) &&
      grep -q 'role=leader' <<< "$out"; then
      return 0
    fi
    sleep 0.1
  done
  echo "cluster: cell $1 has no leader, or a replica does not answer, after 30 s:" >&2
  printf '%s\n' "$out" | sed 's/^/    /' >&2
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
  for c in $(seq 1 $CELLS); do wait_cell "$c"; done
  if [[ $("$cellpay" gateway --help 2>&1 || true) == *--routes* ]]; then
    "$cellpay" gateway --routes "$dir/routes" --listen "$listen" --data "$dir" \
      < /dev/null > "$dir/gateway.log" 2>&1 &
    echo $! > "$dir/gateway.pid"
    for _ in $(seq 1 100); do
      grep -q 'listening on' "$dir/gateway.log" && break
      check_running gateway || exit 1
      sleep 0.1
    done
    if ! grep -q 'listening on' "$dir/gateway.log"; then
      echo "cluster: the gateway does not listen after 10 s; the end of $dir/gateway.log:" >&2
      log_tail "$dir/gateway.log"
      exit 1
    fi
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
