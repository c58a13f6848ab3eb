#!/usr/bin/env bash
# crispc end to end: outputs and manifests, ptxas on every example (sm_90, sm_80,
# no spills), the golden --emit ir, and bad input (exit 2, nothing written).
set -u
CRISPC=${1:?usage: test_crispc.sh path/to/crispc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }

PTXAS=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
[ -x "$PTXAS" ] || { echo "ptxas not found: skipping the ptxas checks"; PTXAS=; }

check "--help exits 0" "$CRISPC" --help >/dev/null
check "--version names LLVM" bash -c "'$CRISPC' --version | grep -q 'LLVM 16'"

# spec -> PTX + manifest
"$CRISPC" examples/crisp80.spec -o "$tmp/a.ptx"; rc=$?
check "crisp80 -> ptx exits 0" test $rc -eq 0
check "ptx written" grep -q '.visible .entry crisp80_attn_fwd' "$tmp/a.ptx"
check "manifest written" test -s "$tmp/a.manifest.json"
check "manifest names the kernel" grep -q '"name":[[:space:]]*"crisp80_attn_fwd"' "$tmp/a.manifest.json"
check "manifest has the spec hash" grep -q '"spec_hash":' "$tmp/a.manifest.json"
if command -v python3 >/dev/null; then
  check "manifest is JSON" python3 -m json.tool "$tmp/a.manifest.json" >/dev/null
fi

# -o - is standard output (no file named "-", no manifest)
out=$(cd "$tmp" && "$CRISPC" "$OLDPWD/examples/crisp80.spec" --emit ir -o -); rc=$?
check "-o - exits 0" test $rc -eq 0
check "-o - writes the IR to stdout" grep -q 'kernel crisp80_attn_fwd' <<< "$out"
check "-o - creates no file named -" test ! -e "$tmp/-"

# every example, both architectures, through ptxas
for spec in examples/*.spec; do
  for arch in sm_90 sm_80; do
    out="$tmp/$(basename "$spec" .spec)-$arch.ptx"
    check "$spec --target $arch" "$CRISPC" "$spec" --target $arch -o "$out"
    [ -n "$PTXAS" ] || continue
    log=$("$PTXAS" -arch=$arch -v "$out" -o "$tmp/x.cubin" 2>&1); rc=$?
    check "ptxas -arch=$arch accepts $spec" test $rc -eq 0
    check "no spills in $spec ($arch)" bash -c "! grep -E '[1-9][0-9]* bytes spill' <<< \"\$0\"" "$log"
  done
done

# host code
check "host obj" "$CRISPC" examples/crisp80.spec --target host --emit obj -o "$tmp/a.o"
check "host obj is ELF" bash -c "head -c4 '$tmp/a.o' | grep -q ELF"
check "host asm" bash -c "'$CRISPC' examples/crisp80.spec --target host --emit asm | grep -q crisp80_attn_fwd"
check "llvm ir" bash -c "'$CRISPC' examples/crisp80.spec --emit llvm | grep -q 'define .*crisp80_attn_fwd'"

# golden IR, -d dumps, -D overrides
check "golden --emit ir" bash -c "'$CRISPC' --emit ir examples/crisp80.spec | diff -u tests/golden/crisp80.ir -"
check "-d map dumps mapped IR" bash -c "'$CRISPC' examples/crisp80.spec -d map -o '$tmp/d.ptx' 2>&1 | grep -q 'thread_id'"
"$CRISPC" examples/crisp80.spec -D sparsity=0.5 -D head_dim=32 -o "$tmp/o.ptx"
check "-D reaches the manifest" grep -q '"head_dim":[[:space:]]*32' "$tmp/o.manifest.json"

# bad input: exit 2, a file:line:col message, and no output file
expect_bad() {
  local what=$1 pattern=$2; shift 2
  rm -f "$tmp/bad.ptx" "$tmp/bad.manifest.json"
  err=$("$CRISPC" "$@" -o "$tmp/bad.ptx" 2>&1 >/dev/null); rc=$?
  check "$what: exit 2 (got $rc)" test $rc -eq 2
  check "$what: message /$pattern/ in: $err" grep -qE "$pattern" <<< "$err"
  check "$what: nothing written" test ! -e "$tmp/bad.ptx" -a ! -e "$tmp/bad.manifest.json"
}
printf 'attention x {\n  head_dim = 65\n}\n' > "$tmp/range.spec"
expect_bad "out of range" "range.spec:2:14: error: .*multiple of 8" "$tmp/range.spec"
printf '\x00\x01garbage' > "$tmp/bin.spec"
expect_bad "binary" "bin.spec:1:1: error: " "$tmp/bin.spec"
expect_bad "missing file" "cannot read" "$tmp/none.spec"
expect_bad "bad -D" "<-D>:1:.*error" examples/crisp80.spec -D sparsity=2
expect_bad "bad target" "unknown target" examples/crisp80.spec --target sm_99
expect_bad "bad emit" "unknown --emit" examples/crisp80.spec --emit wat
expect_bad "bad -d" "unknown pass" examples/crisp80.spec -d nothing
expect_bad "unknown option" "unknown option" examples/crisp80.spec --frobnicate

# quantile selects add the select kernels (init, hist, pick) after the forward
for sel in head_quantile layer_quantile; do
  out="$tmp/$sel.ptx"
  check "$sel -> ptx" "$CRISPC" examples/crisp80.spec -D select=$sel --target sm_90 -o "$out"
  check "$sel: six kernels (forward, select x3, backward x2)" test "$(grep -c ".visible .entry" "$out")" -eq 6
  check "$sel: select kernels" grep -q '.entry crisp80_select_hist' "$out"
  [ -n "$PTXAS" ] || continue
  log=$("$PTXAS" -arch=sm_90 -v "$out" -o "$tmp/x.cubin" 2>&1); rc=$?
  check "ptxas -arch=sm_90 accepts $sel" test $rc -eq 0
  check "no spills ($sel)" bash -c "! grep -E '[1-9][0-9]* bytes spill' <<< \"\$0\"" "$log"
done

# an unwritable destination leaves nothing behind
mkdir "$tmp/ro"; chmod 555 "$tmp/ro"
if [ "$(id -u)" != 0 ]; then
  "$CRISPC" examples/crisp80.spec -o "$tmp/ro/a.ptx" 2>/dev/null; rc=$?
  check "unwritable output exits 1" test $rc -eq 1
fi
check "no temp files left" test -z "$(ls -A "$tmp/ro")"

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
