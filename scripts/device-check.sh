#!/usr/bin/env bash
# The GPU check, sized for a lease: runs on the GPU machine from the repository root,
# with build-device/ (scripts/device-bundle.sh) carried along. Well under 8 minutes
# on an H100. Steps, each with its own time limit:
#   1. the device and cuBLAS: sgemm against a double reference, one large product
#   2. every GPU kernel (every example spec, every crisp80 tile) against the CPU
#      reference on random inputs: n = 1, odd n, padding, n = max_seq, ties, s = 0.99
#   3. the autotuner on crisp80 (every legal tile, checked then timed with events),
#      its database written to $OUT/tune.json
#   4. the attention benchmark: crisp (tuned tile) against PyTorch on the GPU, SDPA
#      dense and the topk/masked_fill version, in one run; the ratio table last
#   2b. (train) the select + forward + backward kernels of every select mode as one
#      training call against the reference, then forward and backward timed
# Logs go to $OUT: device.log check.log train.log tune.log tune.json bench.log
# bench.json summary.txt. Exit status 0 when every step passed.
#
# CRISP_DEVICE_CHECK_DRY=1 rehearses the script on a machine without a GPU: the
# full build's crisp-devcheck (build/runtime, with the JIT) on --device cpu, short
# lengths, and the PyTorch step only if PyTorch is there.
set -uo pipefail
cd "$(dirname "$0")/.."
B=build-device
OUT=${OUT:-/tmp/crisp-device-out}
mkdir -p "$OUT"
t_start=$(date +%s)
declare -A status

say() { echo "[$(( $(date +%s) - t_start ))s] $*"; }

dev=cuda
short=()
torch_extra=()
dry=${CRISP_DEVICE_CHECK_DRY:-0}
if [ "$dry" = 1 ]; then
  dev=cpu
  short=(--n 64 --reps 2)
  torch_extra=(--cpu --reps 3)
fi

if [ ! -x "$B/bin/crisp-devcheck" ]; then
  echo "device-check: $B/bin/crisp-devcheck is missing: run scripts/device-bundle.sh here first" \
       "and carry $B with the call (docs/gpu.md)" >&2
  exit 2
fi

# ---- libraries: the bundle's, the driver's, cuBLAS (toolkit or PyTorch's wheel) ----
libpath="$PWD/$B/lib"
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu; do
  [ -e "$d/libcuda.so.1" ] && libpath="$libpath:$d"
done
cublas=$(ls /usr/local/cuda/lib64/libcublas.so.* /usr/local/cuda/targets/x86_64-linux/lib/libcublas.so.* 2>/dev/null | head -1)
if [ -z "$cublas" ]; then
  site=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
  cublas=$(find $site -path '*nvidia*' -name 'libcublas.so.*' 2>/dev/null | head -1)
fi
[ -n "$cublas" ] && libpath="$libpath:$(dirname "$cublas")"
export LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONUNBUFFERED=1

{
  say "crisp device check"
  cat "$B/BUNDLE.txt"
  nvidia-smi -L 2>&1 | head -4
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv 2>&1 | head -3
  echo "libcuda: $(ls /usr/local/nvidia/lib64/libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so.1 2>/dev/null | head -1)"
  echo "cublas:  ${cublas:-not found}"
  echo "python:  $(command -v python3) $(python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1)"
} > "$OUT/device.log" 2>&1
cat "$OUT/device.log"

dc="$B/bin/crisp-devcheck"
[ "$dry" = 1 ] && dc=${CRISP_DEVCHECK:-build/runtime/crisp-devcheck}
if ! "$dc" --version >> "$OUT/device.log" 2>&1; then
  # the bundle's binary does not run here (an older C library?): rebuild it from
  # this tree's sources against the bundle's cJSON
  say "the bundled crisp-devcheck does not run here; rebuilding it" | tee -a "$OUT/device.log"
  rb=/tmp/crisp-devcheck-build
  if cmake -S runtime -B "$rb" -DCMAKE_BUILD_TYPE=Release -DCJSON_ROOT="$PWD/$B" >> "$OUT/device.log" 2>&1 &&
     cmake --build "$rb" -j8 --target crisp-devcheck >> "$OUT/device.log" 2>&1; then
    dc="$rb/crisp-devcheck"
  else
    say "rebuild failed; see device.log"
    tail -20 "$OUT/device.log"
    exit 1
  fi
fi
export CRISP_SEED=${CRISP_SEED:-$(date +%s)}
say "seed $CRISP_SEED"

run_step() {   # name, time limit (s), log file, command...
  local name=$1 limit=$2 log=$3
  shift 3
  say "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" > "$log.tmp" 2>&1
  local rc=$?
  cat "$log.tmp" >> "$log"
  rm -f "$log.tmp"
  case $rc in
    0) status[$name]=passed ;;
    124|137) status[$name]="TIMED OUT after ${limit}s" ;;
    *) status[$name]="FAILED (exit $rc)" ;;
  esac
  say "$name: ${status[$name]}"
  return 0
}

# 1. device + cuBLAS
run_step gemm 45 "$OUT/device.log" "$dc" --device $dev gemm
tail -9 "$OUT/device.log"

# 2. every kernel against the reference
run_step check 120 "$OUT/check.log" "$dc" --device $dev check "$B"/ptx/*
grep -E "^(FAIL|check:)" "$OUT/check.log" | head -20
grep -c "^PASS" "$OUT/check.log" | sed 's/^/kernels passed: /'

# 2b. the training call (select + forward + backward, fused QKV, dropout) of every
#     select mode against the reference, then forward and backward timed
crisp_json=/tmp/crisp-bench.jsonl
rm -f "$crisp_json"
rm -f /tmp/crisp-train.jsonl
run_step train 90 "$OUT/train.log" "$dc" --device $dev train "$B"/train/*.manifest.json \
  --json /tmp/crisp-train.jsonl "${short[@]}"
grep -E "^(FAIL|PASS|train)" "$OUT/train.log" | head -30

# 3. the autotuner on crisp80
rm -f "$OUT/tune.json"
run_step tune 120 "$OUT/tune.log" "$dc" --device $dev tune "$B/ptx/crisp80" --db "$OUT/tune.json" \
  "${short[@]}"
sed -n '/rows  warps/,$p' "$OUT/tune.log"

# 4. crisp against PyTorch, ratio table last
run_step bench_crisp 45 "$OUT/bench.log" "$dc" --device $dev bench "$B/ptx/crisp80" "$B/ptx/dense" \
  --db "$OUT/tune.json" --json "$crisp_json" "${short[@]}"
grep "^bench" "$OUT/bench.log"
[ -f /tmp/crisp-train.jsonl ] && cat /tmp/crisp-train.jsonl >> "$crisp_json"
if [ "$dry" = 1 ] && ! python3 -c 'import torch' 2>/dev/null; then
  status[bench_torch]="skipped (dry run without PyTorch)"
  say "bench_torch: ${status[bench_torch]}"
else
  run_step bench_torch 120 "$OUT/bench.log" python3 scripts/device-bench.py --crisp "$crisp_json" \
    --json "$OUT/bench.json" "${torch_extra[@]}"
fi

{
  echo "crisp device check, $(( $(date +%s) - t_start )) s, seed $CRISP_SEED"
  for s in gemm check train tune bench_crisp bench_torch; do
    printf '  %-12s %s\n' "$s" "${status[$s]:-not run}"
  done
} > "$OUT/summary.txt"
cat "$OUT/summary.txt"
echo
# the ratio table is the last thing printed
sed -n '/^== crisp vs PyTorch/,$p' "$OUT/bench.log"
for s in gemm check train tune bench_crisp bench_torch; do
  case "${status[$s]:-}" in passed|skipped*) ;; *) exit 1 ;; esac
done
exit 0
