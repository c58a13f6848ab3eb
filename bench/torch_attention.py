#!/usr/bin/env python3
"""PyTorch baselines for the attention benchmark (CPU), forward + backward:

  dense   torch.nn.functional.scaled_dot_product_attention (PyTorch's own kernel)
  paper   what the paper's authors would write: scores, a torch.topk (row_topk) or
          torch.quantile-style kthvalue (head_quantile) threshold, masked_fill(-inf),
          softmax, matmul -- through autograd

Prints one JSON object per line: {"impl", "select", "n", "s", "ms"} (median of
--reps runs after a warm-up), for B=16 H=12 D=64 and the given threads. The C
benchmark (bench_backward) runs this in the same session and prints the ratios.
"""
import argparse
import json
import math
import statistics
import sys
import time


def paper_attention(q, k, v, s, select):
    d = q.shape[-1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    n = scores.shape[-1]
    if s > 0 and select == "row_topk":
        keep = max(1, math.ceil((1 - s) * n - 1e-6))
        tau = torch.topk(scores, keep, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < tau, float("-inf"))
    elif s > 0 and select == "head_quantile":
        flat = scores.flatten(-2)
        keep = max(1, math.ceil((1 - s) * flat.shape[-1] - 1e-6))
        tau = torch.kthvalue(flat, flat.shape[-1] - keep + 1, dim=-1).values
        row_max = scores.amax(dim=-1, keepdim=True)
        tau = torch.minimum(tau[..., None, None], row_max)
        scores = scores.masked_fill(scores < tau, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def dense_attention(q, k, v, s, select):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def time_fwd_bwd(fn, n, s, select, reps):
    g = torch.Generator().manual_seed(n)
    shape = (16, 12, n, 64)
    q, k, v = (torch.randn(shape, generator=g, requires_grad=True) for _ in range(3))
    dout = torch.randn(shape, generator=g)

    def once():
        for t in (q, k, v):
            t.grad = None
        out = fn(q, k, v, s, select)
        out.backward(dout)

    once()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, nargs="+", default=[64, 128, 512])
    ap.add_argument("--s", type=float, nargs="+", default=[0.0, 0.6, 0.8])
    ap.add_argument("--select", nargs="+", default=["row_topk", "head_quantile"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for n in args.n:
        ms = time_fwd_bwd(dense_attention, n, 0.0, "none", args.reps)
        print(json.dumps({"impl": "torch_sdpa", "select": "none", "n": n, "s": 0.0, "ms": ms}),
              flush=True)
        for select in args.select:
            for s in args.s:
                ms = time_fwd_bwd(paper_attention, n, s, select, args.reps)
                print(json.dumps({"impl": "torch_paper", "select": select, "n": n, "s": s,
                                  "ms": ms}), flush=True)


if __name__ == "__main__":
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping the PyTorch baselines", file=sys.stderr)
        sys.exit(77)
    main()
