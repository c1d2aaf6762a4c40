#!/usr/bin/env bash
# Route-table changes under load lose and duplicate nothing: tests/api/routes_live_test.py
# (two `cellpay node` cells, one of three replicas, behind `cellpay gateway --routes`).
set -euo pipefail
cellpay=${1:?usage: test_routes_live.sh path/to/cellpay}
exec python3 "$(dirname "$0")/routes_live_test.py" "$cellpay"
