#!/usr/bin/env bash
# Cross-cell payments through a real `cellpay start` (tests/api/xcell_test.py).
set -euo pipefail
cellpay=${1:?usage: test_xcell.sh path/to/cellpay}
exec python3 "$(dirname "$0")/xcell_test.py" "$cellpay"
