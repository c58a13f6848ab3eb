#!/usr/bin/env bash
# Every legal GPU tile through ptxas: rows 1-64 x warps 1-16 (warps <= rows) x
# head_dim 64, 128, 256, with row_topk and head_quantile for sm_90 and causal
# row_topk and layer_quantile for sm_80 (backward and dropout on). Prints one line
# per kernel (arch, select, d, tile, kernel, registers, spill bytes), then a summary;
# exits 1 if any kernel spills or ptxas refuses one. ~2 minutes on 2 cores.
#
#   scripts/ptxas-sweep.sh [CRISPC] > sweep.txt      (CRISPC: build/crispc)
set -euo pipefail
crispc=${1:-build/crispc}
ptxas=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
[ -x "$ptxas" ] || { echo "ptxas-sweep: no ptxas (CUDA toolkit) here" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

spec() {   # spec SELECT D ROWS WARPS EXTRA
  printf 'attention sw {\n  head_dim = %s\n  max_seq = 512\n  select = %s\n' "$2" "$1"
  printf '  dropout = 0.1\n  backward = true\n  %s\n' "$5"
  printf '  tile { rows = %s, cols = 64, warps = %s }\n}\n' "$3" "$4"
}

kernels=0 refused=0 bad=0
for arch in sm_90 sm_80; do
  for sel in row_topk quantile; do
    extra=""
    if [ "$sel" = quantile ]; then
      sel=head_quantile; [ "$arch" = sm_80 ] && sel=layer_quantile
    elif [ "$arch" = sm_80 ]; then
      extra="causal = true"
    fi
    for d in 64 128 256; do
      for rows in 1 2 4 8 16 32 64; do
        for warps in 1 2 4 8 16; do
          [ "$warps" -gt "$rows" ] && continue
          tag="$arch $sel d=$d ${rows}x$warps"
          spec "$sel" "$d" "$rows" "$warps" "$extra" > "$work/s.spec"
          if ! "$crispc" "$work/s.spec" --target "$arch" -o "$work/s.ptx" 2> "$work/err"; then
            refused=$((refused + 1))   # not a legal tile for this d (crispc says why)
            continue
          fi
          if ! "$ptxas" -arch="$arch" -v "$work/s.ptx" -o "$work/s.cubin" 2> "$work/px"; then
            echo "$tag: ptxas failed"; sed 's/^/  /' "$work/px"; bad=$((bad + 1)); continue
          fi
          lines=$(awk -v tag="$tag" '
            /entry function/ { f = $0; sub(/.*function ./, "", f); sub(/. for.*/, "", f) }
            /spill stores/ { sp = $5 + $9 }
            /Used/ { print tag, f, $5, "registers", sp, "spill bytes" }' "$work/px")
          echo "$lines"
          kernels=$((kernels + $(grep -c . <<< "$lines")))
          bad=$((bad + $(awk '$(NF - 2) > 0' <<< "$lines" | grep -c . || true)))
        done
      done
    done
  done
done
echo "ptxas-sweep: $kernels kernels, $bad spilling or refused by ptxas;" \
     "$refused tile/d pairs crispc refuses as illegal"
[ "$bad" -eq 0 ]
