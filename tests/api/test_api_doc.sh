#!/usr/bin/env bash
# docs/api.md's examples work as written: every ```sh block of the page, in order, in one
# shell, against a fresh `cellpay start` (curl and openssl as a newcomer would run them).
set -euo pipefail
cellpay=${1:?usage: test_api_doc.sh path/to/cellpay}
doc="$(dirname "$0")/../../docs/api.md"
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

"$cellpay" start --data "$tmp/data" --listen 127.0.0.1:0 > "$tmp/out" 2> "$tmp/err" &
pid=$!
port=
for _ in $(seq 300); do
  port=$(sed -n 's/^cellpay start: listening on .*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "FAIL: cellpay start did not listen"; cat "$tmp/err"; exit 1; }

awk '/^```sh$/ {on = 1; next} /^```$/ {on = 0} on' "$doc" > "$tmp/examples.sh"
[ "$(grep -c 'curl' "$tmp/examples.sh")" -ge 8 ] || { echo "FAIL: too few examples found"; exit 1; }
API="http://127.0.0.1:$port" DATA="$tmp/data" bash -euo pipefail "$tmp/examples.sh" > "$tmp/run" 2>&1 ||
  { echo "FAIL: the examples failed"; cat "$tmp/run"; exit 1; }

fail=0
expect() { grep -q "$1" "$tmp/run" || { echo "FAIL: no $2 in the examples' output"; fail=1; }; }
expect '"status":"ok"' "health"
expect '"object":"merchant"' "merchant"
expect '"object":"topup"' "top-up"
expect '"object":"payment".*"status":"succeeded"' "succeeded payment"
expect '"object":"refund".*"status":"succeeded"' "succeeded refund"
expect '"available":"8501"' "balance of 8501 after the payment and the refund"
expect '"object":"list"' "list of payments"
expect '"object":"transfer".*"to_uid":"200050".*"status":"succeeded"' "local transfer"
expect '"object":"transfer".*"to_uid":"200300".*"status":"succeeded"' "transfer across cells"
expect '"available":"8151"' "balance of 8151 after the transfers"
if [ "$fail" -ne 0 ]; then cat "$tmp/run"; exit 1; fi
echo "docs/api.md: every example ran and answered as documented"
