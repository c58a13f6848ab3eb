#!/usr/bin/env bash
# The README's worked example must be real output: every "    $ command" line of
# README.md runs, in order, in one shell from the repository root, with build/ read
# as the build under test and /tmp/ as a scratch folder; what it prints must be the
# indented lines below it, exactly. A command whose program is not installed (ptxas
# without the CUDA toolkit) is skipped with a message; one of the build's that is
# missing fails.
#
#   tests/readme_example.sh REPO_ROOT BUILD_DIR
set -euo pipefail
root=$1 build=$2
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export PATH="$PATH:/usr/local/cuda/bin"

# Records of "command<TAB>expected output with \n escaped as \001".
awk '
  function flush() { if (cmd != "") print cmd "\t" out; cmd = ""; out = "" }
  /^    \$ / { flush(); cmd = substr($0, 7); next }
  cmd != "" && /^    / { out = out (out == "" ? "" : "\001") substr($0, 5); next }
  { flush() }
  END { flush() }
' "$root/README.md" > "$scratch/examples"

cd "$root"
fails=0 ran=0
while IFS=$'\t' read -r cmd want; do
  # through a placeholder: the build folder may itself live under /tmp (a CI clone)
  run=${cmd//build\//$'\001'}
  run=${run//\/tmp\//$scratch/}
  run=${run//$'\001'/$build/}
  prog=${run%% *}
  if [ "${prog#"$build"/}" != "$prog" ] && [ ! -x "$prog" ]; then
    echo "README.md example: $prog is not built"; fails=$((fails + 1)); continue
  fi
  if [ "$prog" != echo ] && [ "$prog" != cat ] && ! command -v "$prog" >/dev/null; then
    echo "skipped (no $prog here): $cmd"
    continue
  fi
  # the previous command's status, for an example that shows `echo $?`
  got=$(set +e; (exit "${status:-0}"); eval "$run" 2>&1; echo "/$?")
  status=${got##*/}
  got=${got%/*}
  got=${got%$'\n'}
  ran=$((ran + 1))
  want=${want//$'\001'/$'\n'}
  if [ "$got" != "$want" ]; then
    fails=$((fails + 1))
    echo "README.md example differs: $cmd"
    diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") | sed 's/^/  /' || true
  fi
done < "$scratch/examples"
echo "README examples: $ran run, $fails differ"
[ "$ran" -gt 0 ] && [ "$fails" -eq 0 ]
