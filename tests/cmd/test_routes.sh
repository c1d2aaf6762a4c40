#!/usr/bin/env bash
# Zones and routes as processes:
#  1. `cellpay admin routes`: init, set, show (normalized), the version bumped by each change,
#     bad tables and bad changes refused with the reason and the file left as it was;
#  2. `cellpay node --zones`: a cell owning zones 0-49 refuses an account of a user in zone 50
#     and a transfer across the boundary with wrong_cell, serves its own zones, keeps its zones
#     in DIR/cell.conf, refuses to start with other --zones, and an old cell.conf without a
#     zones line means every zone; --zone-rule likewise.
set -euo pipefail
cellpay=${1:?usage: test_routes.sh path/to/cellpay}
tmp=$(mktemp -d)
node_pid=
cleanup() {
  if [ -n "$node_pid" ]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
pass=0 fail=0
check() { # name, condition...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name"; fail=$((fail + 1)); fi
}
contains() { grep -qF -- "$2" "$1"; }
fails() { ! "$@"; } # the command exits non-zero

# ---- 1. admin routes ----
t=$tmp/routes
"$cellpay" admin routes --help > "$tmp/out"
check "routes --help says the gateway reads the table" contains "$tmp/out" "cellpay gateway --routes FILE"
"$cellpay" admin --help > "$tmp/out"
check "admin --help names routes" contains "$tmp/out" "admin routes"
check "init" "$cellpay" admin routes init --file "$t" --cell 1 --addrs 127.0.0.1:7001,127.0.0.1:7002 > /dev/null
check "init refuses an existing file" fails "$cellpay" admin routes init --file "$t" --cell 2 --addrs h:1 2> /dev/null
check "set needs a cell with addresses" fails "$cellpay" admin routes set --file "$t" --cell 2 --zones 50-99 2> "$tmp/err"
check "  and says so" contains "$tmp/err" "the table has no cell 2"
check "set addresses" "$cellpay" admin routes set --file "$t" --cell 2 --addrs 127.0.0.1:7101 > /dev/null
check "set zones" "$cellpay" admin routes set --file "$t" --cell 2 --zones 50-99,25 > "$tmp/out"
check "  reports the change" contains "$tmp/out" "version 3, cell 2 serves zones 25,50-99"
"$cellpay" admin routes show --file "$t" > "$tmp/show"
cat > "$tmp/want" <<'TABLE'
# cellpay route table (docs/routing.md)
version 3
rule 10 100
cell 1 127.0.0.1:7001,127.0.0.1:7002
cell 2 127.0.0.1:7101
zones 0-24 -> 1
zones 25 -> 2
zones 26-49 -> 1
zones 50-99 -> 2
TABLE
check "show prints the normalized table" diff -u "$tmp/want" "$tmp/show"
"$cellpay" admin routes show --file "$t" --uid 12345678 > "$tmp/out"
check "show --uid" contains "$tmp/out" "uid 12345678 zone 67 cell 2 127.0.0.1:7101 (table version 3)"
check "no temporary file left" test ! -e "$t.tmp"
check "bad zones refused" fails "$cellpay" admin routes set --file "$t" --cell 1 --zones 40-100 2> "$tmp/err"
check "  with the reason" contains "$tmp/err" "zone 100 is out of range"
check "an address of another cell refused" fails "$cellpay" admin routes set --file "$t" --cell 1 --addrs 127.0.0.1:7101 2> "$tmp/err"
check "  with the reason" contains "$tmp/err" "address 127.0.0.1:7101 is already cell 2's"
check "refused changes leave the file" diff -u "$tmp/want" "$t"
printf 'version 1\ncell 1 a:1\nzones 0-49 -> 1\nzones 49-99 -> 1\n' > "$tmp/bad"
check "a bad table is refused" fails "$cellpay" admin routes show --file "$tmp/bad" 2> "$tmp/err"
check "  with its line" contains "$tmp/err" "$tmp/bad: line 4: zone 49 is already assigned on line 3"
check "a missing file" fails "$cellpay" admin routes show --file "$tmp/none" 2> /dev/null
rc=0; "$cellpay" admin routes frob --file "$t" 2> /dev/null || rc=$?
check "unknown subcommand: exit 2" test "$rc" -eq 2

# ---- 2. node --zones ----
# Starts a node on DIR with the given options; sets node_pid and addr.
start_node() {
  local dir=$1; shift
  coproc NODE { exec "$cellpay" node --data "$dir" --listen 127.0.0.1:0 "$@" 2>>"$tmp/node.log"; }
  node_pid=$NODE_PID
  local line
  read -r line <&"${NODE[0]}"
  addr=${line##* }
}
stop_node() {
  kill -TERM "$node_pid"
  wait "$node_pid" || true
  node_pid=
}
client() { "$cellpay" client --addr "$addr" --timeout-ms 5000; }

# uid 490 is in zone 49, 500 in zone 50, 510 in zone 51; an account id's upper 64 bits are
# its owner's uid.
A49=9038904596117680291841 A50=9223372036854775808001 A51=9407839477591871324161
d=$tmp/cell
check "--zones with a bad list" fails "$cellpay" node --data "$d" --zones 0-49,49 2> "$tmp/err"
check "  says why" contains "$tmp/err" "zone 49 is listed twice"
start_node "$d" --zones 0-49
client > "$tmp/out" <<REQUESTS
{"op":"create_accounts","events":[{"id":"$A49","ledger":1,"code":1}]}
{"op":"create_accounts","events":[{"id":"$A50","ledger":1,"code":1}]}
{"op":"create_accounts","events":[{"id":"7","ledger":1,"code":1},{"id":"$A50","ledger":1,"code":1}]}
{"op":"create_transfers","events":[{"id":"1","debit_account_id":"$A49","credit_account_id":"$A50","amount":"1","ledger":1,"code":1}]}
{"op":"lookup_accounts","ids":["$A49","$A50","7"]}
REQUESTS
mapfile -t r < "$tmp/out"
check "an account of zone 49 is created" test "${r[0]#*\"result\":\"created\"}" != "${r[0]}"
check "an account of zone 50 is refused" test "${r[1]}" = '{"error":"wrong cell"}'
check "a batch with one foreign account is refused whole" test "${r[2]}" = '{"error":"wrong cell"}'
check "a transfer across cells is refused" test "${r[3]}" = '{"error":"wrong cell"}'
check "lookups find the owned account" contains "$tmp/out" "\"id\":\"$A49\""
check "  and not the refused ones" fails grep -qE "\"id\":\"($A50|7)\"" "$tmp/out"
stop_node
check "cell.conf keeps the zones" contains "$d/cell.conf" "zones=0-49"
check "other --zones refused" fails "$cellpay" node --data "$d" --listen 127.0.0.1:0 --zones 0-24 2> "$tmp/err"
check "  and says so" contains "$tmp/err" "cell.conf fixes zones=0-49; --zones 0-24 differs"
check "cell.conf keeps the cell's number" contains "$d/cell.conf" "cell=0"
check "another --cell refused" fails "$cellpay" node --data "$d" --listen 127.0.0.1:0 --cell 5 2> "$tmp/err"
check "  and says so" contains "$tmp/err" "cell.conf fixes cell=0; --cell 5 differs"
start_node "$d"
echo '{"op":"create_accounts","events":[{"id":"'"$A51"'","ledger":1,"code":1}]}' | client > "$tmp/out"
check "restarted without --zones, the stored zones hold" contains "$tmp/out" '{"error":"wrong cell"}'
stop_node
start_node "$d" --zones 0-49
echo '{"op":"lookup_accounts","ids":["'"$A49"'"]}' | client > "$tmp/out"
check "restarted with the same --zones, the state is there" contains "$tmp/out" "\"id\":\"$A49\""
stop_node

check "cell.conf keeps the default rule" contains "$d/cell.conf" "zone_rule=10/100"

# Another zone rule: with 1/100 the zone is the uid's last two digits, so uid 149 is in zone
# 49 and uid 490 in zone 90. It is fixed in cell.conf like the zones.
A149=2748564866982723190785
r=$tmp/rule
check "--zone-rule with a bad rule" fails "$cellpay" node --data "$r" --zone-rule 10/101 2> "$tmp/err"
check "  says why" contains "$tmp/err" "modulus must be 1..100"
start_node "$r" --zones 0-49 --zone-rule 1/100
client > "$tmp/out" <<REQUESTS
{"op":"create_accounts","events":[{"id":"$A149","ledger":1,"code":1}]}
{"op":"create_accounts","events":[{"id":"$A49","ledger":1,"code":1}]}
REQUESTS
mapfile -t r2 < "$tmp/out"
check "rule 1/100: uid 149 is in zone 49" test "${r2[0]#*\"result\":\"created\"}" != "${r2[0]}"
check "rule 1/100: uid 490 is in zone 90" test "${r2[1]}" = '{"error":"wrong cell"}'
stop_node
check "cell.conf keeps the rule" contains "$r/cell.conf" "zone_rule=1/100"
check "another --zone-rule refused" fails "$cellpay" node --data "$r" --listen 127.0.0.1:0 --zone-rule 10/100 2> "$tmp/err"
check "  and says so" contains "$tmp/err" "fixes zone_rule=1/100; --zone-rule 10/100 differs"

# A cell.conf written before zones existed: every zone.
old=$tmp/old
mkdir -p "$old"
printf 'accounts_max=1024\ntransfers_max=1024\n' > "$old/cell.conf"
check "old cell.conf: --zones 0-49 refused" fails "$cellpay" node --data "$old" --listen 127.0.0.1:0 --zones 0-49 2> "$tmp/err"
check "  it means every zone" contains "$tmp/err" "fixes zones=0-99"
start_node "$old" --zones 0-99
echo '{"op":"create_accounts","events":[{"id":"'"$A50"'","ledger":1,"code":1}]}' | client > "$tmp/out"
check "old cell.conf: every zone served" contains "$tmp/out" '"result":"created"'
stop_node

echo "test_routes: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
