#!/usr/bin/env python3
"""Loads model folders written by crisp with Hugging Face transformers and runs them.

    check_hf_load.py FOLDER... [--sentence TEXT] [--json]

For each FOLDER (config.json, model.safetensors, vocab.txt), loads
AutoModelForSequenceClassification and AutoTokenizer from it, offline, and fails
(exit 1) if any weight is missing, unexpected or of the wrong size. Then it prints the
logits for one sentence: as text, or with --json one line per folder holding the
architecture, labels, token ids, logits and the float64 sum of every parameter (so a
caller can check that each tensor arrived under the right name).

Needs torch and transformers (exit status 77, "skip", when either is missing); crisp
itself does not depend on them.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def check(folder, sentence):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()

    model, info = AutoModelForSequenceClassification.from_pretrained(
        folder, output_loading_info=True)
    problems = {k: list(v) for k, v in info.items() if v}
    model.eval()
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(sentence, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0].tolist()
    return {
        "folder": folder,
        "architecture": type(model).__name__,
        "model_type": model.config.model_type,
        "num_labels": model.config.num_labels,
        "id2label": {str(k): v for k, v in model.config.id2label.items()},
        "input_ids": enc["input_ids"][0].tolist(),
        "logits": logits,
        "param_count": sum(p.numel() for p in model.parameters()),
        "param_sums": {n: float(p.detach().double().sum())
                       for n, p in model.named_parameters()},
        "problems": problems,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", metavar="FOLDER")
    ap.add_argument("--sentence", default="a gorgeous, witty, seductive movie.")
    ap.add_argument("--json", action="store_true", help="one JSON object per folder")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"skip: {e}", file=sys.stderr)
        return 77
    failed = False
    for folder in args.folders:
        r = check(folder, args.sentence)
        failed |= bool(r["problems"])
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        print(f"{folder}: {r['architecture']} ({r['param_count']} parameters)")
        print(f"  tokens: {r['input_ids']}")
        print(f"  logits: {r['logits']}")
        for kind, names in r["problems"].items():
            print(f"  {kind}: {names}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
