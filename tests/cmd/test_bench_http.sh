#!/usr/bin/env bash
# `cellpay bench http` as a smoke check, not a measurement: a short run against the
# `cellpay start` it starts must set up its merchants and users, get every payment answered
# 201, print the documented last line and remove its temporary directory. The figures are
# printed, never asserted.
set -euo pipefail
cellpay=${1:?usage: test_bench_http.sh path/to/cellpay}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$cellpay" bench http --help | grep -q 'http_payments per_second=' ||
  fail "bench http --help does not describe its last line"
rc=0
"$cellpay" bench http --connections 0 > /dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "--connections 0: exit status $rc, want 2"
rc=0
"$cellpay" bench http --spread 1.5 > /dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "--spread 1.5: exit status $rc, want 2"

before=$(ls -d /tmp/cellpay-bench-* 2>/dev/null | wc -l)
rc=0
timeout 120 "$cellpay" bench http --duration 1 --users 300 --connections 16 > "$out" || rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "exit status $rc"
last=$(tail -n 1 "$out")
echo "$last" | grep -Eq '^http_payments per_second=[0-9]+ p50_ms=[0-9]+\.[0-9]{3} p99_ms=[0-9]+\.[0-9]{3} errors=0 connections=16$' ||
  fail "last line: $last"
echo "$last" | grep -q 'per_second=0 ' && fail "no payment was answered"
after=$(ls -d /tmp/cellpay-bench-* 2>/dev/null | wc -l)
[ "$after" -le "$before" ] || fail "the temporary directory was left behind"

# Cross-cell payments under load, to one hot merchant and spread over every merchant: all
# answered 201 as well.
rc=0
timeout 120 "$cellpay" bench http --duration 1 --users 300 --connections 16 --hot-share 0.5 \
  --spread 1 > "$out" || rc=$?
tail -n 1 "$out"
[ "$rc" -eq 0 ] || fail "--hot-share 0.5 --spread 1: exit status $rc"
tail -n 1 "$out" | grep -q ' errors=0 ' || fail "--hot-share 0.5 --spread 1: $(tail -n 1 "$out")"
echo "bench http: smoke run ok"
