#!/usr/bin/env bash
# Builds build-device/: everything the GPU check (scripts/device-check.sh) needs on a
# GPU machine, which has the CUDA driver, PyTorch and cmake but no LLVM, cJSON or
# BLAS, and takes at most 64 MiB of files with a call. Run it here, after the main
# build (scripts/setup.sh); then carry build-device with the call (docs/gpu.md).
#
#   build-device/bin/crisp-devcheck   the runtime-only build (no LLVM): portable
#                                     x86-64 code, finds lib/ through its rpath
#   build-device/lib/libcjson.so.1    its one shared library beyond libc
#   build-device/include/cjson/       cJSON's header, to rebuild there if need be
#   build-device/ptx/crisp80/*        every legal tile of crisp80 (the tuner's space)
#   build-device/ptx/NAME/default.*   every other example spec at its default tile
#   build-device/train/SELECT.*       crisp80 with backward kernels, one per select mode
#                                     (and causal head_quantile), for `crisp-devcheck train`
#   build-device/BUNDLE.txt           what was built, from which commit, how big
# Every PTX is checked with ptxas (sm_90) here first, when the toolkit is present.
#   scripts/device-bundle.sh [CRISPC]          (default build/crispc)
set -euo pipefail
cd "$(dirname "$0")/.."
crispc=${1:-build/crispc}
out=build-device
limit_mib=60
if [ ! -x "$crispc" ]; then
  echo "device-bundle: $crispc not found; build first (scripts/setup.sh)" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/include/cjson" "$out/ptx"

echo "== runtime-only build (no LLVM)"
obj=$(mktemp -d /tmp/crisp-devbuild.XXXXXX)
trap 'rm -rf "$obj"' EXIT
cmake -S runtime -B "$obj" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_C_FLAGS="-O2 -march=x86-64 -mtune=generic" >/dev/null
cmake --build "$obj" -j"$(nproc)" --target crisp-devcheck >/dev/null
cp "$obj/crisp-devcheck" "$out/bin/"
strip "$out/bin/crisp-devcheck"
cjson=$(ldd "$out/bin/crisp-devcheck" | awk '/libcjson\.so/ {print $3}')
if [ -z "$cjson" ]; then
  echo "device-bundle: crisp-devcheck does not link libcjson?" >&2
  exit 1
fi
cp -L "$cjson" "$out/lib/libcjson.so.1"
cp /usr/include/cjson/cJSON.h "$out/include/cjson/"
if ldd "$out/bin/crisp-devcheck" | grep -qE "LLVM|openblas|libcuda|cublas"; then
  echo "device-bundle: crisp-devcheck links LLVM, BLAS or CUDA; it must not" >&2
  exit 1
fi
"$out/bin/crisp-devcheck" --version

echo "== PTX for sm_90"
ptxas=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
[ -x "$ptxas" ] || ptxas=""
compile() {   # spec, output stem, extra crispc args...
  local spec=$1 stem=$2
  shift 2
  if ! "$crispc" "$spec" --target sm_90 -o "$stem.ptx" "$@"; then
    echo "  skipped $stem: crispc refused it" >&2
    return 1
  fi
  if [ -n "$ptxas" ]; then
    local report
    report=$("$ptxas" -arch=sm_90 -v "$stem.ptx" -o /dev/null 2>&1) || {
      echo "device-bundle: ptxas rejects $stem.ptx:" >&2
      echo "$report" >&2
      exit 1
    }
    echo "$report" | grep -q "[1-9][0-9]* bytes spill" &&
      echo "  warning: $stem.ptx spills: $(echo "$report" | grep spill | head -1)"
  fi
  return 0
}
n=0
for spec in examples/*.spec; do
  name=$(basename "$spec" .spec)
  mkdir -p "$out/ptx/$name"
  if [ "$name" = crisp80 ]; then
    for rows in 1 2 4 8 16 32 64; do
      for warps in 1 2 4 8 16; do
        [ $((rows % warps)) -eq 0 ] || continue
        compile "$spec" "$out/ptx/$name/r${rows}w${warps}" \
          -D "tile={rows=$rows,cols=64,warps=$warps}" || continue
        n=$((n + 1))
      done
    done
  else
    compile "$spec" "$out/ptx/$name/default"
    n=$((n + 1))
  fi
done
# the training call's kernels (select + forward + backward) for every select mode,
# at the default tile: crisp-devcheck train runs them against the reference
mkdir -p "$out/train"
for sel in none row_topk head_quantile layer_quantile; do
  compile examples/crisp80.spec "$out/train/$sel" -D select=$sel -D backward=true
  n=$((n + 1))
done
compile examples/crisp80.spec "$out/train/causal_head_quantile" -D select=head_quantile \
  -D causal=true -D backward=true
n=$((n + 1))
echo "  $n PTX files (kernels of one spec each)${ptxas:+, each checked by ptxas -arch=sm_90}"

glibc=$(objdump -T "$out/bin/crisp-devcheck" | grep -o 'GLIBC_[0-9.]*' | sort -t. -k2 -n -u | tail -1)
size_kib=$(du -sk "$out" | cut -f1)
{
  echo "crisp device bundle"
  echo "commit:   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built:    $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm)"
  echo "crispc:   $("$crispc" --version)"
  echo "needs:    $glibc or newer, libcuda.so.1 (driver), libcublas for gemm"
  echo "kernels:  $n PTX files for sm_90"
  echo "size:     $size_kib KiB"
} > "$out/BUNDLE.txt"
cat "$out/BUNDLE.txt"
if [ "$size_kib" -ge $((limit_mib * 1024)) ]; then
  echo "device-bundle: $out is $size_kib KiB, over the $limit_mib MiB limit" >&2
  exit 1
fi
echo "device-bundle: $out is ready ($((size_kib / 1024)) MiB of $limit_mib)"
