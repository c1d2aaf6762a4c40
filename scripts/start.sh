#!/usr/bin/env bash
# Quick start, step one: install the Debian packages cellpay needs (as root), build, and run
# the embedded default (`cellpay start`). Works on a fresh Debian 12 without make installed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
make build
exec ./build/cellpay start "$@"
