#!/usr/bin/env python3
"""PyTorch baselines for the attention benchmark (CPU), forward + backward:

  dense   torch.nn.functional.scaled_dot_product_attention (PyTorch's own kernel)
  paper   what the paper's authors would write: scores, a threshold -- torch.topk per
          row (row_topk) or torch.quantile over each head's L x L scores (head_quantile,
          the paper's "s-th percentile") -- masked_fill(-inf), softmax, matmul, all
          through autograd

Prints one JSON object per line: first {"impl": "info", "torch", "threads",
"omp_wait_policy"}, then {"impl", "select", "n", "s", "ms"} (median of --reps runs
after --warmup runs), for --batch x --heads x n x --dim inputs on --threads threads.
bench_vs_torch runs this as a child process in the same run and prints the ratios.
Exits 77 without torch.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time


def paper_attention(q, k, v, s, select):
    d = q.shape[-1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    n = scores.shape[-1]
    # s = 0 keeps every key: skipped, as dense softmax attention written in PyTorch
    # ops, the stronger baseline of the two
    if s > 0 and select == "row_topk":
        keep = max(1, math.ceil((1 - s) * n - 1e-6))
        tau = torch.topk(scores, keep, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < tau, float("-inf"))
    elif s > 0 and select == "head_quantile":
        tau = torch.quantile(scores.detach().flatten(-2), s, dim=-1)
        # the row's max always stays (keep_min = 1), or a row could be all -inf: NaN
        row_max = scores.detach().amax(dim=-1, keepdim=True)
        tau = torch.minimum(tau[..., None, None], row_max)
        scores = scores.masked_fill(scores < tau, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def dense_attention(q, k, v, s, select):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def time_fwd_bwd(fn, shape, s, select, reps, warmup):
    g = torch.Generator().manual_seed(shape[2])
    q, k, v = (torch.randn(shape, generator=g, requires_grad=True) for _ in range(3))
    dout = torch.randn(shape, generator=g)

    def once():
        for t in (q, k, v):
            t.grad = None
        out = fn(q, k, v, s, select)
        out.backward(dout)

    # more than one warm-up: oneDNN and the allocator settle on a new shape lazily
    for _ in range(warmup):
        once()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def emit(obj):
    print(json.dumps(obj), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--n", type=int, nargs="+", default=[64, 128, 512])
    ap.add_argument("--s", type=float, nargs="+", default=[0.0, 0.6, 0.8])
    ap.add_argument("--select", nargs="+", default=["row_topk", "head_quantile"])
    ap.add_argument("--no-paper", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    emit({"impl": "info", "torch": torch.__version__, "threads": torch.get_num_threads(),
          "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")})
    for n in args.n:
        shape = (args.batch, args.heads, n, args.dim)
        ms = time_fwd_bwd(dense_attention, shape, 0.0, "none", args.reps, args.warmup)
        emit({"impl": "torch_sdpa", "select": "none", "n": n, "s": 0.0, "ms": ms})
        if args.no_paper:
            continue
        for select in args.select:
            for s in args.s:
                ms = time_fwd_bwd(paper_attention, shape, s, select, args.reps, args.warmup)
                emit({"impl": "torch_paper", "select": select, "n": n, "s": s, "ms": ms})


if __name__ == "__main__":
    # OMP_WAIT_POLICY is left as the environment has it: unset, libgomp's workers spin
    # for a while at a barrier before they sleep, as crisp's pool does (runtime.md), and
    # on a quiet machine that is PyTorch's faster setting (n = 64: SDPA 8.0 ms against
    # 8.7-10.1 with PASSIVE; the paper-style s = 0 version 5.4-6.4 against 6.3-9.7). On a
    # loaded machine spinning workers fight the other processes and every PyTorch time
    # grows 1.5-9x: set OMP_WAIT_POLICY=PASSIVE there (docs/benchmarks.md).
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping the PyTorch baselines", file=sys.stderr)
        sys.exit(77)
    main()
