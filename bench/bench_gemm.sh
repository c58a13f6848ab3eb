#!/usr/bin/env bash
# crisp's sgemm against OpenBLAS under both kernel settings: first as the environment
# sets OpenBLAS up (OPENBLAS_CORETYPE, if any: this project's machines pin Haswell,
# OpenBLAS's 256-bit kernels), then with OPENBLAS_CORETYPE=SkylakeX (its AVX-512
# kernels), where the CPU has AVX-512F and that is not already the setting.
#
#     bench/bench_gemm.sh [BUILD_DIR] [bench_gemm options...]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
shift || true
bench=$build/bench/bench_gemm
[ -x "$bench" ] || { echo "bench_gemm.sh: build $bench first (cmake --build $build --target bench_gemm)" >&2; exit 2; }
echo "== OpenBLAS as the environment sets it (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
"$bench" "$@" || exit $?
if grep -qw avx512f /proc/cpuinfo && [ "${OPENBLAS_CORETYPE:-}" != SkylakeX ]; then
  echo
  echo "== OpenBLAS with its AVX-512 kernels (OPENBLAS_CORETYPE=SkylakeX)"
  OPENBLAS_CORETYPE=SkylakeX "$bench" "$@"
fi
