#!/usr/bin/env bash
# The `cellpay ledger` JSON Lines driver as a process: each tests/cmd/ledger_driver/NAME.jsonl
# is fed on stdin (with the options in NAME.args, if any) and the output must equal
# NAME.expected byte for byte; every input runs twice to show the output is deterministic.
# The expected files were checked by hand against shared/docs/ledger.md (clock rule,
# replies, error lines).
set -euo pipefail
cellpay=${1:?usage: test_ledger_driver.sh path/to/cellpay}
dir=$(cd "$(dirname "$0")/ledger_driver" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

check() { # name, condition...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name"; fail=$((fail + 1)); fi
}

for input in "$dir"/*.jsonl; do
  name=$(basename "$input" .jsonl)
  args=()
  [ -f "$dir/$name.args" ] && read -r -a args < "$dir/$name.args"
  "$cellpay" ledger "${args[@]}" < "$input" > "$tmp/$name.1"
  "$cellpay" ledger "${args[@]}" < "$input" > "$tmp/$name.2"
  check "$name: output as expected" diff -u "$dir/$name.expected" "$tmp/$name.1"
  check "$name: deterministic" cmp -s "$tmp/$name.1" "$tmp/$name.2"
  check "$name: one reply line per request line" \
    test "$(wc -l < "$input")" -eq "$(wc -l < "$tmp/$name.1")"
done

# A line without a final newline still gets its reply.
printf '{"op":"lookup_accounts","ids":[]}' | "$cellpay" ledger > "$tmp/nonl"
check "last line without newline answered" test "$(cat "$tmp/nonl")" = '{"accounts":[]}'

# A line of binary garbage is answered with an error and the driver goes on.
printf '\x00\xff\xfe{\n{"op":"lookup_accounts","ids":[]}\n' | "$cellpay" ledger > "$tmp/bin"
check "garbage line gets an error" grep -q '^{"error":' "$tmp/bin"
check "driver goes on after garbage" test "$(sed -n 2p "$tmp/bin")" = '{"accounts":[]}'

# More than 8189 events in one request is refused, not truncated.
awk 'BEGIN {
  printf "{\"op\":\"create_accounts\",\"events\":["
  for (i = 1; i <= 8190; i++) printf "%s{\"id\":\"%d\",\"ledger\":1,\"code\":1}", (i > 1 ? "," : ""), i
  printf "]}\n{\"op\":\"query_accounts\",\"filter\":{\"limit\":1}}\n"
}' > "$tmp/big"
"$cellpay" ledger < "$tmp/big" > "$tmp/big.out"
check "oversized batch refused" grep -q '^{"error":"too many events' "$tmp/big.out"
check "nothing of the oversized batch applied" test "$(sed -n 2p "$tmp/big.out")" = '{"accounts":[]}'

# A full table answers with an error, applies nothing, and the driver goes on.
printf '%s\n' '{"op":"create_accounts","events":[{"id":"1","ledger":1,"code":1},{"id":"2","ledger":1,"code":1},{"id":"3","ledger":1,"code":1}]}' \
  '{"op":"create_accounts","events":[{"id":"1","ledger":1,"code":1},{"id":"2","ledger":1,"code":1}]}' \
  | "$cellpay" ledger --accounts-max 2 > "$tmp/full"
check "full table refused" test "$(sed -n 1p "$tmp/full")" = '{"error":"account table is full"}'
check "driver goes on after a full table" grep -q '"created"' <(sed -n 2p "$tmp/full")

# Command-line handling: --help tells the truth and exits 0; bad options exit 2.
for cmd in "" "ledger" "bench" "start"; do
  check "cellpay $cmd --help" bash -c "\"$cellpay\" $cmd --help | grep -q usage"
done
set +e
"$cellpay" ledger --bogus 2>/dev/null; rc1=$?
"$cellpay" ledger --clock-start x 2>/dev/null; rc2=$?
"$cellpay" bench ledger --hot-share 1.5 2>/dev/null; rc3=$?
"$cellpay" nosuchcommand 2>/dev/null; rc4=$?
set -e
check "unknown option exits 2" test "$rc1" -eq 2
check "bad number exits 2" test "$rc2" -eq 2
check "bad fraction exits 2" test "$rc3" -eq 2
check "unknown command exits 2" test "$rc4" -eq 2

echo "ledger driver: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
