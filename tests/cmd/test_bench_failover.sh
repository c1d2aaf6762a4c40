#!/usr/bin/env bash
# `cellpay bench failover` as a correctness check, not a measurement: two leader kills under a
# small load. The last line must have the documented format, and nothing acknowledged may be
# lost or applied twice. The failover times are printed, never asserted.
# CELLPAY_SEED=N changes the transfers and the pauses between kills (default 7).
set -euo pipefail
cellpay=${1:?usage: test_bench_failover.sh path/to/cellpay}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$cellpay" bench --help | grep -q 'bench failover' || fail "bench --help does not describe failover"
rc=0
"$cellpay" bench failover --kills 0 > /dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "--kills 0: exit status $rc, want 2"

rc=0
timeout 120 "$cellpay" bench failover --kills 2 --clients 2 --accounts 16 \
  --seed "${CELLPAY_SEED:-7}" > "$out" || rc=$?
cat "$out"
last=$(tail -n 1 "$out")
[[ $last =~ ^failover\ p50_ms=[0-9]+\.[0-9]\ max_ms=[0-9]+\.[0-9]\ lost=[0-9]+\ duplicated=[0-9]+$ ]] ||
  fail "the last line is not 'failover p50_ms=<x> max_ms=<y> lost=<N> duplicated=<N>': $last"
[[ $last == *" lost=0 duplicated=0" ]] || fail "acknowledged transfers lost or applied twice: $last"
[ "$(grep -c '^kill [0-9]/2: ' "$out")" -eq 2 ] || fail "not one progress line per kill"
[ "$rc" -eq 0 ] || fail "exit status $rc"
echo "bench failover: passed"
