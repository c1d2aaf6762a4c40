#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it:
#   1. release build (-O2, asserts on) and every test under ctest;
#   2. the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. each libFuzzer target for a short run from its seed corpus.
# Environment: CELLPAY_FUZZ_SECONDS (default 30 a target).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
fuzz_seconds=${CELLPAY_FUZZ_SECONDS:-30}

step() { printf '\n=== %s\n' "$*"; }

step "release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

step "ASan+UBSan build and tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCELLPAY_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  CELLPAY_SANITIZED=1 ctest --output-on-failure -j"$jobs")

step "fuzz targets (${fuzz_seconds}s each)"
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCELLPAY_FUZZ=ON -DCELLPAY_SANITIZE=ON >/dev/null
cmake --build build-fuzz -j"$jobs"
fuzz_pass=0
for target in build-fuzz/fuzz_*; do
  name=$(basename "$target")
  corpus="fuzz/corpus/${name#fuzz_}"
  work=$(mktemp -d)
  dict=()
  [ -f "fuzz/${name#fuzz_}.dict" ] && dict=(-dict="fuzz/${name#fuzz_}.dict")
  echo "fuzz: $name for ${fuzz_seconds}s (seed corpus $corpus)"
  "$target" "${dict[@]}" -max_total_time="$fuzz_seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$work/" "$work" "$corpus" 2>"$work/log" || {
      tail -n 40 "$work/log"; echo "fuzz: $name FAILED (artifacts in $work)"; exit 1; }
  grep -E '^(#[0-9]+.*(DONE|pulse))|Done' "$work/log" | tail -n 1
  rm -rf "$work"
  fuzz_pass=$((fuzz_pass + 1))
done
echo "fuzz: ${fuzz_pass} passed, 0 failed"
