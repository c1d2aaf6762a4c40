#!/usr/bin/env bash
# The HTTP API against a real `cellpay start` process (tests/api/api_test.py).
set -euo pipefail
cellpay=${1:?usage: test_api.sh path/to/cellpay}
exec python3 "$(dirname "$0")/api_test.py" "$cellpay"
