#!/usr/bin/env bash
# `cellpay client` as a process, without a node:
#  1. against the tests' fake cell (`test_client --serve`: a real cell_t behind the binary
#     protocol), every tests/cmd/ledger_driver/NAME.jsonl must give the same replies as
#     `cellpay ledger` — except timestamps (the cell's clock moves only on writes) and the
#     wording of the clock error — one line per request, in order;
#  2. against an address where nothing listens, each request gets an {"error":...} line
#     after --timeout-ms and the next line is read;
#  3. --help and the exit codes of bad options.
# Skips (exit 0, saying so) while `client` is not a subcommand of the binary.
set -euo pipefail
cellpay=${1:?usage: test_client_cmd.sh path/to/cellpay}
inputs=$(cd "$(dirname "$0")/../cmd/ledger_driver" && pwd)
fake=$(dirname "$cellpay")/tests/test_client
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

check() { # name, condition...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name"; fail=$((fail + 1)); fi
}

if ! "$cellpay" client --help > /dev/null 2>&1; then
  echo "SKIP: this cellpay has no client subcommand"
  exit 0
fi

# Timestamps differ between the two drivers; the clock and test-ops errors are worded by each.
normalize() {
  sed -E -e 's/"timestamp":"[0-9]+"/"timestamp":"T"/g' \
    -e 's/^\{"error":"(clock cannot advance|batch timestamp does not advance past the ledger.s clock)"\}$/{"error":"CLOCK"}/' \
    -e 's/^\{"error":"test ops are refused \(run (the node )?with --test-ops\)"\}$/{"error":"TESTOPS"}/'
}

# Runs `cellpay client` on stdin against a fresh fake cell; $1: --test-ops or "".
with_fake_cell() {
  local rc=0 port
  coproc FAKE { exec "$fake" --serve $1; }
  read -r port <&"${FAKE[0]}"
  "$cellpay" client --addr "127.0.0.1:$port" --timeout-ms 5000 || rc=$?
  exec {FAKE[1]}>&-
  wait "$FAKE_PID" || true
  return $rc
}

if [ -x "$fake" ]; then
  for input in "$inputs"/*.jsonl; do
    name=$(basename "$input" .jsonl)
    args=()
    [ -f "$inputs/$name.args" ] && read -r -a args < "$inputs/$name.args"
    test_ops=
    for a in "${args[@]}"; do [ "$a" = --test-ops ] && test_ops=--test-ops; done
    "$cellpay" ledger "${args[@]}" < "$input" | normalize > "$tmp/$name.ledger"
    with_fake_cell "$test_ops" < "$input" > "$tmp/$name.raw"
    normalize < "$tmp/$name.raw" > "$tmp/$name.client"
    check "$name: same replies as cellpay ledger" diff -u "$tmp/$name.ledger" "$tmp/$name.client"
  done
  # A full batch: 8189 events out, 8189 results and a 1 MiB query reply back.
  awk 'BEGIN {
    printf "{\"op\":\"create_accounts\",\"events\":["
    for (i = 1; i <= 8189; i++) printf "%s{\"id\":\"%d\",\"ledger\":1,\"code\":1}", (i > 1 ? "," : ""), i
    printf "]}\n{\"op\":\"query_accounts\",\"filter\":{\"limit\":8189}}\n"
  }' | with_fake_cell "" > "$tmp/big"
  check "full batch: every event created" test "$(sed -n 1p "$tmp/big" | grep -o '"created"' | wc -l)" -eq 8189
  check "full batch: every account read back" test "$(sed -n 2p "$tmp/big" | grep -o '"ledger"' | wc -l)" -eq 8189
else
  echo "SKIP (part 1): no fake cell at $fake"
fi

# Nobody listens on port 1 of 127.0.0.1 (binding it needs root); if somebody does, skip.
if ! (exec 3<> /dev/tcp/127.0.0.1/1) 2> /dev/null; then
  start=$(date +%s%N)
  printf '%s\n' '{"op":"lookup_accounts","ids":["1"]}' 'not json' \
    '{"op":"create_accounts","events":[]}' '{"op":"tick","nanoseconds":"5"}' |
    "$cellpay" client --addr 127.0.0.1:1 --timeout-ms 200 > "$tmp/down"
  elapsed_ms=$((($(date +%s%N) - start) / 1000000))
  check "unreachable: one line per request" test "$(wc -l < "$tmp/down")" -eq 4
  check "unreachable: error after the deadline" \
    grep -q '^{"error":"no answer from the cell before the deadline (last: 127.0.0.1:1: connecting: connection refused)"}$' <(sed -n 1p "$tmp/down")
  check "unreachable: a bad line is still answered locally" grep -q '^{"error":"malformed JSON"}$' <(sed -n 2p "$tmp/down")
  check "unreachable: an empty batch needs no cell" test "$(sed -n 3p "$tmp/down")" = '{"results":[]}'
  check "unreachable: goes on after an error" grep -q '^{"error":"no answer' <(sed -n 4p "$tmp/down")
  check "unreachable: gives up in bounded time ($elapsed_ms ms)" test "$elapsed_ms" -lt 5000
fi

check "client --help" bash -c "\"$cellpay\" client --help | grep -q 'usage: cellpay client --addr'"
set +e
"$cellpay" client < /dev/null 2> /dev/null; rc1=$?
"$cellpay" client --addr 127.0.0.1 < /dev/null 2> /dev/null; rc2=$?
"$cellpay" client --addr 127.0.0.1:1 --bogus < /dev/null 2> /dev/null; rc3=$?
"$cellpay" client --addr 127.0.0.1:1 --timeout-ms 0 < /dev/null 2> /dev/null; rc4=$?
"$cellpay" client --addr < /dev/null 2> /dev/null; rc5=$?
set -e
check "missing --addr exits 2" test "$rc1" -eq 2
check "bad address exits 2" test "$rc2" -eq 2
check "unknown option exits 2" test "$rc3" -eq 2
check "bad --timeout-ms exits 2" test "$rc4" -eq 2
check "--addr without a value exits 2" test "$rc5" -eq 2

echo "client command: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
