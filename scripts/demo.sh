#!/usr/bin/env bash
# The main job on the embedded default: compile examples/crisp80.spec to PTX for
# sm_90 with its manifest, show both, and let ptxas (when present) check the PTX.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/crisp80.ptx}
build/crispc examples/crisp80.spec -o "$out"
echo "== $out (first 30 lines of $(wc -l < "$out"))"
head -n 30 "$out"
echo "== ${out%.ptx}.manifest.json"
cat "${out%.ptx}.manifest.json"
ptxas=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
if [ -x "$ptxas" ]; then
  echo "== ptxas -arch=sm_90 -v"
  "$ptxas" -arch=sm_90 -v "$out" -o /dev/null
fi
