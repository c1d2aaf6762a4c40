#!/usr/bin/env bash
# Cross-cell payments with relay faults and leaders killed (tests/txn/xcell_fault_test.py).
set -euo pipefail
cellpay=${1:?usage: test_xcell_fault.sh path/to/cellpay}
exec python3 "$(dirname "$0")/xcell_fault_test.py" "$cellpay"
