#!/usr/bin/env python3
"""PyTorch + transformers side of bench/bench_train.sh: the median time of one training
step (forward in training mode, backward, clip_grad_norm_ 1.0, AdamW step, zero_grad) of a
randomly initialised DistilBertForSequenceClassification (distilbert-base-uncased shape)
or BertForSequenceClassification (all-MiniLM-L6-v2 shape), on the CPU.

    bench_train_torch.py --shape distilbert|minilm --threads N --batch 16 --len 64 --steps 5
                         --warmup 3     (untimed steps first: the first few are several
                                         times slower while PyTorch warms up)

Prints one line: torch SHAPE: times_s t1,t2,... median_s X tokens_per_s Y (...). Exits 77 when torch or
transformers is missing."""
import argparse
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--shape", required=True, choices=["distilbert", "minilm"])
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--len", type=int, default=64)
ap.add_argument("--steps", type=int, default=5)
ap.add_argument("--warmup", type=int, default=3)
args = ap.parse_args()

try:
    import torch
    import transformers
    from transformers import (BertConfig, BertForSequenceClassification, DistilBertConfig,
                              DistilBertForSequenceClassification)
except ImportError as e:  # pragma: no cover
    print(f"torch/transformers not available: {e}", file=sys.stderr)
    sys.exit(77)

if args.threads > 0:
    torch.set_num_threads(args.threads)
torch.manual_seed(1)
if args.shape == "distilbert":
    model = DistilBertForSequenceClassification(DistilBertConfig(num_labels=2))
else:
    model = BertForSequenceClassification(BertConfig(
        hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
        num_labels=2))
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
B, N = args.batch, args.len
ids = torch.randint(1000, 21000, (B, N))
mask = torch.ones(B, N, dtype=torch.long)
labels = torch.arange(B) % 2
times = []
for k in range(args.warmup + args.steps):
    t0 = time.perf_counter()
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if k >= args.warmup:
        times.append(time.perf_counter() - t0)
med = statistics.median(times)
attn = getattr(model.config, "_attn_implementation", "?")
print(f"torch {args.shape}: times_s {','.join(f'{t:.4f}' for t in times)} "
      f"median_s {med:.4f} tokens_per_s {B * N / med:.1f} "
      f"(steps {args.steps}, threads {torch.get_num_threads()}, torch {torch.__version__}, "
      f"transformers {transformers.__version__}, attention {attn})")
