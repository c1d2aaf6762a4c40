#!/usr/bin/env bash
# `cellpay admin check` against real cells: balanced books pass; an account whose balances
# were changed behind the ledger's back (the test op test_set_balances) is named as a
# MISMATCH with the difference and exit 1; so is a pair of cells whose clearing accounts do not
# net to zero; an unreachable cell is exit 1; bad options exit 2.
set -euo pipefail
cellpay=${1:?usage: test_admin_check.sh path/to/cellpay}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
pass=0 fail=0
check() { # name, condition...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name"; fail=$((fail + 1)); fi
}
contains() { grep -qF -- "$2" "$1"; }

# Two cells, each one node with test ops; their addresses are learned from the first line.
start_cell() { # dir zones -> sets addr
  : > "$1.out"
  "$cellpay" node --data "$1" --listen 127.0.0.1:0 --test-ops --zones "$2" > "$1.out" 2>>"$tmp/node.log" &
  pids+=("$!")
  addr=
  for _ in $(seq 300); do
    addr=$(sed -n 's/^cellpay node.*: listening on //p' "$1.out")
    [ -n "$addr" ] && return 0
    sleep 0.05
  done
  echo "FAIL: the node on $1 did not listen"; cat "$tmp/node.log"; exit 1
}
start_cell "$tmp/c1" 0-49; a1=$addr
start_cell "$tmp/c2" 50-99; a2=$addr
printf 'version 1\ncell 1 %s\ncell 2 %s\nzones 0-49 -> 1\nzones 50-99 -> 2\n' "$a1" "$a2" > "$tmp/routes"

# uid 0 (zone 0) holds accounts 1 and 2 in cell 1; uid 500 (zone 50) two in cell 2.
A500=9223372036854775808001 B500=9223372036854775808002
printf '%s\n' \
  '{"op":"create_accounts","events":[{"id":"1","ledger":1,"code":1},{"id":"2","ledger":1,"code":1},{"id":"3","ledger":2,"code":1}]}' \
  '{"op":"create_transfers","events":[{"id":"10","debit_account_id":"1","credit_account_id":"2","amount":"250","ledger":1,"code":1},{"id":"11","debit_account_id":"2","credit_account_id":"1","amount":"7","ledger":1,"code":1,"flags":["pending"]}]}' |
  "$cellpay" client --addr "$a1" --timeout-ms 5000 > "$tmp/out1"
printf '%s\n' \
  '{"op":"create_accounts","events":[{"id":"'"$A500"'","ledger":1,"code":1},{"id":"'"$B500"'","ledger":1,"code":1}]}' \
  '{"op":"create_transfers","events":[{"id":"'"$A500"'","debit_account_id":"'"$A500"'","credit_account_id":"'"$B500"'","amount":"40","ledger":1,"code":1}]}' |
  "$cellpay" client --addr "$a2" --timeout-ms 5000 > "$tmp/out2"
check "setup in cell 1" test "$(grep -o '"result":"created"' "$tmp/out1" | wc -l)" -eq 5
check "setup in cell 2" test "$(grep -o '"result":"created"' "$tmp/out2" | wc -l)" -eq 3

rc=0; "$cellpay" admin check --routes "$tmp/routes" > "$tmp/ok" 2>&1 || rc=$?
check "balanced books: exit 0" test "$rc" -eq 0
check "  cell 1 ledger 1 summed" contains "$tmp/ok" "cell 1 ledger 1: accounts=2 debits_posted=250 credits_posted=250 debits_pending=7 credits_pending=7 ok"
check "  cell 1 ledger 2 summed" contains "$tmp/ok" "cell 1 ledger 2: accounts=1 debits_posted=0"
check "  cell 2 summed" contains "$tmp/ok" "cell 2 ledger 1: accounts=2 debits_posted=40 credits_posted=40"
check "  all cells" contains "$tmp/ok" "all cells ledger 1: accounts=4 debits_posted=290 credits_posted=290"

# Money created from nothing in cell 2: a credit that no debit matches.
echo '{"op":"test_set_balances","account_id":"'"$B500"'","debits_pending":"0","debits_posted":"0","credits_pending":"0","credits_posted":"45"}' |
  "$cellpay" client --addr "$a2" --timeout-ms 5000 > /dev/null
rc=0; "$cellpay" admin check --routes "$tmp/routes" > "$tmp/bad" 2>&1 || rc=$?
check "a one-sided change: exit 1" test "$rc" -eq 1
check "  names the cell, ledger and difference" contains "$tmp/bad" "cell 2 ledger 1: accounts=2 debits_posted=40 credits_posted=45 debits_pending=0 credits_pending=0 MISMATCH (posted debits - credits = -5, pending = +0)"
check "  and the total" contains "$tmp/bad" "all cells ledger 1: accounts=4 debits_posted=290 credits_posted=295"
check "  cell 1 still ok" contains "$tmp/bad" "cell 1 ledger 1: accounts=2 debits_posted=250 credits_posted=250 debits_pending=7 credits_pending=7 ok"

# A clearing account of cell 2 toward cell 1 (docs/cross-cell.md; the system uid is in zone
# 61, cell 2's) credited with nothing on cell 1's side: a credit the relay never delivered.
C21=340282366920938463444927864474750156801
printf '%s\n' \
  '{"op":"create_accounts","events":[{"id":"'"$C21"'","ledger":1,"code":4}]}' \
  '{"op":"create_transfers","events":[{"id":"99","debit_account_id":"'"$A500"'","credit_account_id":"'"$C21"'","amount":"12","ledger":1,"code":1}]}' |
  "$cellpay" client --addr "$a2" --timeout-ms 5000 > "$tmp/out3"
check "a clearing account in cell 2" test "$(grep -o '"result":"created"' "$tmp/out3" | wc -l)" -eq 2
rc=0; "$cellpay" admin check --routes "$tmp/routes" > "$tmp/clear" 2>&1 || rc=$?
check "a clearing pair that does not net to zero: exit 1" test "$rc" -eq 1
check "  names the pair and the difference" contains "$tmp/clear" "clearing cells 2 and 1 ledger 1: MISMATCH (credits - debits of both sides: posted +12, pending +0)"
check "  and counts it" contains "$tmp/clear" "1 clearing pairs that do not net to zero"

printf 'version 1\ncell 1 127.0.0.1:1\nzones 0-99 -> 1\n' > "$tmp/dead"
rc=0; "$cellpay" admin check --routes "$tmp/dead" --timeout-ms 500 > "$tmp/out" 2>&1 || rc=$?
check "an unreachable cell: exit 1" test "$rc" -eq 1
check "  says so" contains "$tmp/out" "1 unreadable"
rc=0; "$cellpay" admin check > /dev/null 2>&1 || rc=$?
check "no table: exit 2" test "$rc" -eq 2
rc=0; "$cellpay" admin check --routes "$tmp/routes" --data "$tmp" > /dev/null 2>&1 || rc=$?
check "both --routes and --data: exit 2" test "$rc" -eq 2

echo "admin check: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
