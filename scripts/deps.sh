#!/usr/bin/env bash
# Installs the Debian packages cellpay needs to build and test, only those that are
# missing. Needs root (or sudo) when something is missing; does nothing otherwise.
set -euo pipefail

PACKAGES=(
  build-essential make cmake pkg-config  # toolchain
  clang libclang-rt-14-dev           # fuzz targets (libFuzzer) and sanitizer runtimes
  libjsmn-dev                        # JSON tokenizer (header only)
  libxxhash-dev                      # hashing and checksums
  libuv1-dev                         # event loop of the servers and the client
  libcmocka-dev                      # unit tests
  node-llhttp                        # llhttp's C sources: the HTTP/1.1 parser of the gateway
  libssl-dev                         # libcrypto: HMAC-SHA256 of the API's request signatures
  python3                            # the API tests
  curl openssl                       # the docs' API examples: requests, and their signatures
                                     # (openssl dgst -sha256 -hmac)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing missing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: run as root (missing: ${missing[*]})" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "deps: apt-get failed (output above)" >&2
  exit 1
fi
rm -f "$log"
echo "deps: installed ${missing[*]}"
