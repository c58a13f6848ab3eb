#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks and builds crisp into build/.
#   scripts/setup.sh            release build (build/)
#   CRISP_SANITIZE=1 scripts/setup.sh   ASan+UBSan build (build-asan/)
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(build-essential cmake pkg-config llvm-16-dev libcjson-dev libutf8proc-dev libopenblas0)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
if [ "${CRISP_SANITIZE:-0}" = 1 ]; then
  cmake -S . -B build-asan -DCRISP_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-asan -j"$(nproc)"
else
  cmake -S . -B build >/dev/null
  cmake --build build -j"$(nproc)"
fi
