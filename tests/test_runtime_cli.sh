#!/usr/bin/env bash
# crispc --tune and crisp-devcheck from the command line, on the CPU:
#   - the sweep prints its table and writes a valid database; a second run compiles
#     nothing (every variant from the kernel cache);
#   - option errors exit 2 with a message; a cuda device without a driver exits 1
#     with one clear line and no crash.
#   test_runtime_cli.sh CRISPC DEVCHECK [FAKE_LIBCUDA]
set -uo pipefail
crispc=$1
devcheck=$2
fakecuda=${3:-}
tmp=$(mktemp -d /tmp/crisp-test-cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export CRISP_CACHE_DIR=$tmp/cache
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

cat > "$tmp/tiny.spec" <<'SPEC'
attention tiny {
  head_dim = 16
  max_seq  = 32
  sparsity = 0.5
  select   = row_topk
}
SPEC

out=$("$crispc" "$tmp/tiny.spec" --tune --device cpu --threads 2 --tune-n 16,32 \
      --tune-db "$tmp/tune.json" 2>&1)
rc=$?
echo "$out"
[ $rc -eq 0 ] && ok || bad "--tune exited $rc"
grep -q "rows  warps  check" <<< "$out" && ok || bad "no table"
grep -q "n=16 ms" <<< "$out" && grep -q "n=32: best rows=" <<< "$out" && ok || bad "no bucket columns"
grep -q "(25 compiled, 0 from the kernel cache)" <<< "$out" && ok || bad "cold run: not 25 compiles"
[ "$(echo "$out" | grep -c ' ok (')" -eq 25 ] && ok || bad "not every variant passed its check"
db=$(tr -d ' \t\n' < "$tmp/tune.json")
{ echo "$db" | grep -q '^{"format":1,"entries":\[' &&
  [ "$(echo "$db" | grep -o '"kernel":"tiny_attn_fwd"' | wc -l)" -eq 2 ] &&
  echo "$db" | grep -q '"bucket":16,' && echo "$db" | grep -q '"bucket":32,' &&
  [ "$(echo "$db" | grep -o '"driver":"host"' | wc -l)" -eq 2 ]; } && ok || bad "database: $db"
out=$("$crispc" "$tmp/tiny.spec" --tune --device cpu --tune-n 32 --tune-db "$tmp/tune.json" 2>&1)
grep -q "(0 compiled, 25 from the kernel cache)" <<< "$out" && ok || bad "warm run compiled: $(echo "$out" | head -1)"
[ "$(grep -c '"kernel":' "$tmp/tune.json")" -eq 2 ] && ok || bad "re-tuning a bucket must replace its entry"

expect() {   # status, message pattern, command...
  local want=$1 pattern=$2
  shift 2
  local got
  got=$("$@" 2>&1)
  local rc=$?
  if [ $rc -eq "$want" ] && grep -q -- "$pattern" <<< "$got"; then ok; else bad "$* -> $rc: $got"; fi
}
expect 2 "unknown --device 'gpu'" "$crispc" "$tmp/tiny.spec" --tune --device gpu
expect 2 "go with --tune" "$crispc" "$tmp/tiny.spec" --device cpu
expect 2 "writes no code" "$crispc" "$tmp/tiny.spec" --tune -o "$tmp/x.ptx"
expect 2 "tune-n wants lengths" "$crispc" "$tmp/tiny.spec" --tune --tune-n 0
expect 2 "threads wants a count" "$crispc" "$tmp/tiny.spec" --tune --threads x
[ ! -e "$tmp/x.ptx" ] && ok || bad "a usage error wrote a file"
if ! ldconfig -p 2>/dev/null | grep -q "libcuda.so.1"; then
  expect 1 "cannot load the CUDA driver" "$crispc" "$tmp/tiny.spec" --tune --device cuda
  expect 1 "cannot load the CUDA driver" "$devcheck" --device cuda info
  out=$("$devcheck" --device auto info 2>&1)
  [ "$(echo "$out" | grep -c 'running on the CPU')" -eq 1 ] && grep -q "^device: cpu" <<< "$out" \
    && ok || bad "auto fallback: $out"
fi
expect 2 "unknown device" "$devcheck" --device tpu info
expect 2 "bad command line" "$devcheck" check
expect 0 "PASS gemm NN" "$devcheck" --device cpu gemm
# numbers are whole and in range: atoi/strtoull read "x" as 0 and "-1" as a huge seed,
# and a negative --reps gave the bench a NaN median
expect 2 "threads x: expected a whole number from 1 to 256" "$devcheck" --device cpu --threads x info
expect 2 "threads -3: expected" "$devcheck" --device cpu --threads -3 info
expect 2 "reps -5: expected a whole number from 1 to 63" "$devcheck" --device cpu --reps -5 info
expect 2 "seed abc: expected a whole number" "$devcheck" --device cpu --seed abc info
expect 2 "seed -1: expected a whole number" "$devcheck" --device cpu --seed -1 info
expect 2 "n wants 1 to 8 lengths" "$devcheck" --device cpu --n 1,2,3,4,5,6,7,8,9 info
CRISP_SEED=x7 expect 2 "CRISP_SEED=x7: expected a whole number" "$devcheck" --device cpu info
CRISP_SEED= expect 2 "CRISP_SEED=: expected a whole number" "$devcheck" --device cpu info
CRISP_SEED=42 expect 0 "^seed 42 " "$devcheck" --device cpu --threads 2 info

# CRISP_GEMM=auto (runtime/cpu.c choose_gemm): on an AVX-512 CPU crisp's sgemm where
# OpenBLAS is pinned to narrower kernels, OpenBLAS where it runs its AVX-512 ones;
# BLAS whenever CRISP_BLAS names one; a bad CRISP_GEMM is refused
if grep -qw avx512f /proc/cpuinfo; then
  OPENBLAS_CORETYPE=Haswell expect 0 "gemm crisp sgemm (AVX-512" "$devcheck" --device cpu info
  if ldconfig -p 2>/dev/null | grep -q "libopenblas.so.0"; then
    OPENBLAS_CORETYPE=SkylakeX expect 0 "gemm OpenBLAS.*SkylakeX" "$devcheck" --device cpu info
    OPENBLAS_CORETYPE=SkylakeX CRISP_GEMM=crisp expect 0 "gemm crisp sgemm" "$devcheck" --device cpu info
  fi
fi
CRISP_BLAS=none expect 0 "gemm built-in loops" "$devcheck" --device cpu info
CRISP_GEMM=fastest expect 1 "CRISP_GEMM=fastest: expected auto, crisp or blas" "$devcheck" --device cpu info
# a BLAS the user names must load (not a quiet fall-back to the built-in loops), and
# CRISP_GEMM_THREADS has one value
CRISP_BLAS=$tmp/no-such-blas.so expect 1 "CRISP_BLAS=$tmp/no-such-blas.so: .*cannot open" \
  "$devcheck" --device cpu info
CRISP_BLAS=libc.so.6 expect 1 "CRISP_BLAS=libc.so.6: the library has no cblas_sgemm" \
  "$devcheck" --device cpu info
CRISP_GEMM_THREADS=4 expect 1 "CRISP_GEMM_THREADS=4: expected blas (or unset)" \
  "$devcheck" --device cpu info

# the training call (select + forward + backward) of every select mode, as the GPU
# check runs it, on the CPU; a manifest without backward kernels is a clear failure
for sel in row_topk head_quantile layer_quantile; do
  "$crispc" "$tmp/tiny.spec" -D select=$sel -D backward=true -D dropout=0.1 -o "$tmp/$sel.ptx" &&
    ok || bad "crispc $sel"
done
"$crispc" "$tmp/tiny.spec" -D select=head_quantile -D causal=true -D backward=true \
  -o "$tmp/causal.ptx" && ok || bad "crispc causal"
# d = 64 (crisp80's): at n = 1 every dq, dk is 0 in exact arithmetic, and the kernels'
# dP and Delta, summed in different orders, leave rounding there; the check must
# measure that against the terms' magnitude, not against max |reference| = 0
"$crispc" "$tmp/tiny.spec" -D head_dim=64 -D backward=true -o "$tmp/wide.ptx" &&
  ok || bad "crispc wide"
out=$("$devcheck" --device cpu train "$tmp"/{row_topk,head_quantile,layer_quantile,causal,wide}.manifest.json \
      --n 16 --reps 1 --json "$tmp/train.jsonl" 2>&1)
rc=$?
echo "$out"
[ $rc -eq 0 ] && ok || bad "train exited $rc"
[ "$(echo "$out" | grep -c '^PASS tiny .*select+fwd+bwd: 6 shapes')" -eq 5 ] && ok || bad "train: not 5 PASS lines"
[ "$(grep -c '"mode": "fwdbwd"' "$tmp/train.jsonl")" -eq 10 ] && ok || bad "train: not 10 timings in the json"
"$crispc" "$tmp/tiny.spec" -o "$tmp/fwdonly.ptx" && ok || bad "crispc forward-only"
expect 1 "no kernel tiny_attn_bwd_dq" "$devcheck" --device cpu train "$tmp/fwdonly.manifest.json"

mkdir -p "$tmp/one" && "$crispc" "$tmp/tiny.spec" -o "$tmp/one/tiny.ptx" && ok || bad "crispc one"
# a damaged tuning database stops --tune before it compiles (not after minutes of
# timing it could not store), and devcheck's bench and tune, naming file and entry
printf '{"format": 1, "entries": [{"kernel": "k"}]}' > "$tmp/badtune.json"
out=$("$crispc" "$tmp/tiny.spec" --tune --device cpu --tune-n 16 --tune-db "$tmp/badtune.json" 2>&1)
rc=$?
{ [ $rc -eq 1 ] && grep -q "badtune.json: entry 0: spec_hash: missing" <<< "$out" &&
  ! grep -q "compiled" <<< "$out"; } && ok || bad "--tune with a bad database: $rc: $out"
expect 1 "tuning database: $tmp/badtune.json: entry 0" "$devcheck" --device cpu bench "$tmp/one" \
  --db "$tmp/badtune.json"
expect 1 "badtune.json: entry 0" "$devcheck" --device cpu tune "$tmp/one" --db "$tmp/badtune.json"

# a PTX file that does not match its manifest (rebuilt or edited apart) is refused
# before the driver launches it with the wrong parameters (a stand-in driver)
if [ -n "$fakecuda" ]; then
  mkdir -p "$tmp/apart" && cp "$tmp/one"/tiny.* "$tmp/apart/" &&
    sed -i '/tiny_attn_fwd_param_14,/d' "$tmp/apart/tiny.ptx"   # later ones move up one
  CRISP_LIBCUDA=$fakecuda expect 1 "tiny.ptx: does not match .*tiny.manifest.json: kernel tiny_attn_fwd: parameter 19 (o_sh): 4 bytes in the manifest, .f64 in the PTX" \
    "$devcheck" --device cuda check "$tmp/apart"
fi

# a damaged kernel cache entry is rebuilt, with a warning naming the file (the check
# of a one-kernel folder goes through the cache on the CPU)
export CRISP_CACHE_DIR=$tmp/cache2
expect 0 "all passed" "$devcheck" --device cpu --threads 1 check "$tmp/one"
entry=$(ls "$tmp"/cache2/kernels/*.crk)
head -c 100 "$entry" > "$entry.cut" && mv "$entry.cut" "$entry"
out=$("$devcheck" --device cpu --threads 1 check "$tmp/one" 2>&1)
rc=$?
{ [ $rc -eq 0 ] && grep -q "warning: kernel cache: $entry: corrupt entry (checksum" <<< "$out" &&
  [ "$(stat -c %s "$entry")" -gt 100 ]; } && ok || bad "truncated cache entry: $rc: $out"
out=$("$devcheck" --device cpu --threads 1 check "$tmp/one" 2>&1)
! grep -q "warning" <<< "$out" && ok || bad "the rebuilt entry: $out"
export CRISP_CACHE_DIR=$tmp/cache

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
