#!/usr/bin/env bash
# Training-step throughput of crisp against PyTorch + transformers on the CPU, measured
# in the same run: same model shapes (DistilBERT-base, all-MiniLM-L6-v2), random
# weights, same batch (16 x 64 tokens), same threads. Each round runs PyTorch, then
# crisp dense, then crisp sparse, each with WARMUP untimed steps and STEPS timed ones;
# rounds interleave so both sides see the same machine (on a shared machine PyTorch's
# OpenMP threads slow down several-fold whenever other processes compete for cores).
# Reported: the median over every timed step of every round, in tokens per second, and
# the ratio crisp / PyTorch.
#
#     bench/bench_train.sh [BUILD_DIR] [THREADS] [STEPS] [WARMUP] [ROUNDS]
#                          (defaults: build, nproc, 5 timed + 3 untimed steps, 2 rounds)
#
# crisp runs dense attention (select none, as the paper's baseline) and head_quantile at
# s = 0.8 (the sparse configurations); PyTorch runs transformers' default attention
# (sdpa). Without torch/transformers, PyTorch is skipped with a message.
#
# SHAPES="minilm" (or "distilbert") limits the run to those shapes.
# BASE_BUILD=DIR also runs DIR/bench/bench_train (an older build of crisp) in every
# round, right after the current one, so a change is measured against what it
# replaces on the same machine at the same time; the table gains its column and the
# ratio new / base. BASE_ENV="VAR=value ..." sets variables for the base runs only:
#     BASE_BUILD=build BASE_ENV=CRISP_GEMM=blas bench/bench_train.sh
# compares this build's own sgemm with the same build on BLAS (docs/runtime.md).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
threads=${2:-$(nproc)}
steps=${3:-5}
warmup=${4:-3}
rounds=${5:-2}
bench=$build/bench/bench_train
[ -x "$bench" ] || { echo "bench_train.sh: build $bench first (cmake --build $build --target bench_train)" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads

have_torch=1
python3 -c "import torch, transformers" 2>/dev/null || {
  have_torch=0
  echo "bench_train.sh: torch/transformers not importable by python3: PyTorch skipped" >&2
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for shape in ${SHAPES:-distilbert minilm}; do
  for r in $(seq "$rounds"); do
    if [ $have_torch = 1 ]; then
      python3 "$here/bench_train_torch.py" --shape $shape --threads "$threads" --steps "$steps" \
        --warmup "$warmup" | tee -a "$log"
    fi
    for sel in none head_quantile; do
      "$bench" --shape $shape --threads "$threads" --steps "$steps" --warmup "$warmup" \
        --select $sel | tee -a "$log"
      if [ -n "${BASE_BUILD:-}" ]; then
        env ${BASE_ENV:-} "$BASE_BUILD/bench/bench_train" --shape $shape --threads "$threads" --steps "$steps" \
          --warmup "$warmup" --select $sel | sed 's/^crisp /base /' | tee -a "$log"
      fi
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$log" "$threads" "$steps" "$rounds" <<'PY'
import re, statistics, sys
log, threads, steps, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
times, cpus = {}, {}
for line in open(log):
    m = re.match(r"(torch|crisp|base) (\w+)(?: select (\w+))?: times_s ([0-9.,]+)", line)
    if m:
        key = (m.group(2), m.group(1), m.group(3) or "")
        times.setdefault(key, []).extend(float(t) for t in m.group(4).split(","))
        c = re.search(r"cpu_s ([0-9.,]+)", line)
        if c:
            cpus.setdefault(key, []).extend(float(t) for t in c.group(1).split(","))
tokens = 16 * 64
print(f"\ntraining step, batch 16 x 64 tokens, {threads} threads, median of {rounds} x {steps} "
      "steps (tokens/s; CPU s/step: all threads' CPU time per step, median):")
has_base = any(k[1] == "base" for k in times)
extra_h, extra_l = ((" |  base | new/base | CPU s/step new, base", " |-------|---------|----------------------")
                    if has_base else ("", ""))
print(f"| shape      | crisp attention        |  crisp | PyTorch | ratio{extra_h} |")
print(f"|------------|------------------------|--------|---------|------{extra_l}|")
for shape in ("distilbert", "minilm"):
    torch = times.get((shape, "torch", ""))
    ttps = tokens / statistics.median(torch) if torch else None
    for sel, label in (("none", "none (dense)"), ("head_quantile", "head_quantile s=0.8")):
        c = times.get((shape, "crisp", sel))
        if not c:
            continue
        ctps = tokens / statistics.median(c)
        ratio = f"{ctps / ttps:.2f}x" if ttps else "-"
        tt = f"{ttps:7.1f}" if ttps else "      -"
        extra = ""
        if has_base:
            b = times.get((shape, "base", sel))
            btps = tokens / statistics.median(b) if b else None
            extra = (f" | {btps:5.1f} | {ctps / btps:7.2f}x" if btps else " |     - |       -")
            cn, cb = cpus.get((shape, "crisp", sel)), cpus.get((shape, "base", sel))
            extra += (f" | {statistics.median(cn):.2f}, {statistics.median(cb):.2f}"
                      if cn and cb else " | -")
        print(f"| {shape:<10} | {label:<22} | {ctps:6.1f} | {tt} | {ratio:>5}{extra} |")
PY
