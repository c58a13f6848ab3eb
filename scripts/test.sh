#!/usr/bin/env bash
# Runs the test suite of a build made by scripts/setup.sh (build/ by default;
# CRISP_SANITIZE=1 runs the ASan+UBSan build in build-asan/).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
if [ "${CRISP_SANITIZE:-0}" = 1 ]; then
  dir=build-asan
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)"
