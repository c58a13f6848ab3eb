#!/usr/bin/env python3
"""crisp attention against PyTorch on the GPU, as ratios measured in one run.

Reads the crisp timings that `crisp-devcheck bench --json FILE` wrote moments
before on the same GPU (one JSON object per line: spec, select, B, H, N, D,
sparsity, keep_min, causal, ms), times PyTorch at the same shapes, and prints a
ratio table last:
  - SDPA: torch.nn.functional.scaled_dot_product_attention, dense (the baseline
    every sparse method must beat to be worth it);
  - topk: the usual way to write crisp attention in PyTorch: scores by matmul,
    the keep-th largest per row by topk, masked_fill below it, softmax, matmul.
Same f32 data, [B, H, N, D] contiguous for PyTorch ([B, N, H, D] for crisp),
TF32 off. Timing: CUDA events around each call, 3 warm-up calls, the median of
--reps. The topk version is checked against SDPA at s = 0 and against a float64
computation at the crisp sparsity, so the baseline is itself right.

  python3 scripts/device-bench.py --crisp crisp.jsonl [--json OUT] [--reps 20] [--cpu]

--cpu rehearses the script where there is no GPU (host clock, CPU tensors).
"""
import argparse
import json
import math
import statistics
import sys
import time


def keep_count(sparsity, keep_min, m):
    keep = max(keep_min, math.ceil((1.0 - sparsity) * m - 1e-6))
    return min(keep, m)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crisp", required=True, help="crisp-devcheck bench --json output")
    ap.add_argument("--json", help="write all numbers here")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--cpu", action="store_true", help="rehearse on the CPU (no GPU here)")
    args = ap.parse_args()

    rows = []
    with open(args.crisp) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    if not rows:
        print("device-bench: no crisp timings in", args.crisp, file=sys.stderr)
        return 1

    import torch
    import torch.nn.functional as F

    if not args.cpu and not torch.cuda.is_available():
        print("device-bench: PyTorch sees no GPU", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cpu" if args.cpu else "cuda")
    gen = torch.Generator(device=dev)
    gen.manual_seed(1234)
    name = "the CPU (rehearsal)" if args.cpu else torch.cuda.get_device_name()

    def timed(fn):
        for _ in range(3):
            fn()
        if args.cpu:
            times = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
            return statistics.median(times)
        torch.cuda.synchronize()
        times = []
        for _ in range(args.reps):
            e0 = torch.cuda.Event(enable_timing=True)
            e1 = torch.cuda.Event(enable_timing=True)
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1))
        return statistics.median(times)

    def topk_attention(q, k, v, sparsity, keep_min, causal):
        n, d = q.shape[-2], q.shape[-1]
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
        if causal:
            mask = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
            s = s.masked_fill(mask, float("-inf"))
        if sparsity > 0:   # rows of one length: one keep for all (not used with causal)
            keep = keep_count(sparsity, keep_min, n)
            kth = s.topk(keep, dim=-1).values[..., -1:]
            s = s.masked_fill(s < kth, float("-inf"))
        return torch.matmul(torch.softmax(s, dim=-1), v)

    def paper_attention(q, k, v, select, sparsity, keep_min, dropout):
        """Forward as the paper's authors would write it for training: scores, the
        threshold by topk (per row, per head, or per layer), masked_fill(-inf),
        softmax, attention dropout, matmul."""
        n, d = q.shape[-2], q.shape[-1]
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
        if select != "none" and sparsity > 0:
            if select == "row_topk":
                flat = s
            elif select == "head_quantile":
                flat = s.flatten(-2)
            else:   # layer_quantile: one threshold over the whole batch
                flat = s.reshape(1, -1)
            keep = keep_count(sparsity, keep_min, flat.shape[-1])
            kth = flat.topk(keep, dim=-1).values[..., -1:]
            if select != "row_topk":
                kth = kth.reshape(*kth.shape[:-1], 1, 1) if select == "head_quantile" else kth.reshape(())
            s = s.masked_fill(s < kth, float("-inf"))
        p = torch.softmax(s, dim=-1)
        if dropout > 0:
            p = F.dropout(p, dropout)
        return torch.matmul(p, v)

    def fwdbwd(fn, q, k, v, g):
        def step():
            for t in (q, k, v):
                t.grad = None
            fn(q, k, v).backward(g)
        return step

    print(f"torch {torch.__version__} on {name}, f32, TF32 off, "
          f"median of {args.reps}")
    results = []
    train = []
    for r in rows:
        if r.get("mode") == "fwdbwd":
            B, H, N, D = r["B"], r["H"], r["N"], r["D"]
            sp, keep_min, p = r["sparsity"], r.get("keep_min", 1), r.get("dropout", 0.0)
            q, k, v, g = ((torch.rand(B, H, N, D, device=dev, generator=gen) * 2 - 1)
                          for _ in range(4))
            for t in (q, k, v):
                t.requires_grad_(True)
            sdpa = timed(fwdbwd(lambda a, b_, c: F.scaled_dot_product_attention(
                a, b_, c, dropout_p=p), q, k, v, g))
            paper = None
            if r["select"] != "none" and sp > 0 and not r.get("causal", False):
                paper = timed(fwdbwd(lambda a, b_, c: paper_attention(
                    a, b_, c, r["select"], sp, keep_min, p), q, k, v, g))
            train.append(dict(r, torch_sdpa_ms=sdpa, torch_paper_ms=paper))
            print(f"  fwd+bwd {r['select']:14s} n={N:<4d} s={sp:.2f} p={p:.2f}: crisp {r['ms']:.4f} ms "
                  f"(fwd {r['fwd_ms']:.4f}, bwd {r['bwd_ms']:.4f}), SDPA {sdpa:.4f} ms"
                  + (f", paper-style {paper:.4f} ms" if paper is not None else ""))
            continue
        B, H, N, D = r["B"], r["H"], r["N"], r["D"]
        sp, causal, keep_min = r["sparsity"], r.get("causal", False), r.get("keep_min", 1)
        q = torch.rand(B, H, N, D, device=dev, generator=gen) * 2 - 1
        k = torch.rand(B, H, N, D, device=dev, generator=gen) * 2 - 1
        v = torch.rand(B, H, N, D, device=dev, generator=gen) * 2 - 1
        sdpa = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
        # causal rows have different lengths, so one topk call cannot express them
        sparse = r["select"] != "none" and sp > 0 and not causal
        topk = timed(lambda: topk_attention(q, k, v, sp, keep_min, causal)) if sparse else None
        # the baselines are right: topk at s = 0 is SDPA; at s, it matches float64
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        dense_err = (topk_attention(q, k, v, 0.0, 1, causal) - ref).abs().max().item()
        sparse_err = None
        if sparse:
            qs, ks, vs = q[:1, :2], k[:1, :2], v[:1, :2]
            got = topk_attention(qs, ks, vs, sp, keep_min, causal)
            want = topk_attention(qs.double(), ks.double(), vs.double(), sp, keep_min, causal)
            sparse_err = (got.double() - want).abs().max().item()
        results.append(dict(r, torch_sdpa_ms=sdpa, torch_topk_ms=topk,
                            check_topk_vs_sdpa=dense_err, check_topk_vs_f64=sparse_err))
        print(f"  {r['spec']:8s} n={N:<4d} s={sp:.2f}: crisp {r['ms']:.4f} ms, SDPA {sdpa:.4f} ms"
              + (f", topk {topk:.4f} ms" if topk is not None else "")
              + f"  (baseline checks: topk(s=0) vs SDPA {dense_err:.1e}"
              + (f", topk vs f64 {sparse_err:.1e}" if sparse_err is not None else "") + ")")
        bad = dense_err > 1e-4 or (sparse_err is not None and sparse_err > 1e-4)
        if bad:
            print("device-bench: a PyTorch baseline disagrees with its reference", file=sys.stderr)
            return 1

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__,
                       "reps": args.reps, "results": results, "train": train}, f, indent=2)

    print()
    print(f"== crisp vs PyTorch on {name} (ratio = crisp time / baseline time; < 1: crisp faster)")
    print(f"{'spec':8s} {'B':>3s} {'H':>3s} {'n':>5s} {'s':>5s} {'tile':>6s} {'crisp ms':>10s} "
          f"{'SDPA ms':>10s} {'topk ms':>10s} {'crisp/SDPA':>11s} {'crisp/topk':>11s}")
    for r in results:
        tile = f"{r['rows']}x{r['warps']}"
        topk = r["torch_topk_ms"]
        topk_ms = f"{topk:10.4f}" if topk is not None else f"{'-':>10s}"
        topk_ratio = f"{r['ms'] / topk:11.2f}" if topk is not None else f"{'-':>11s}"
        print(f"{r['spec']:8s} {r['B']:3d} {r['H']:3d} {r['N']:5d} {r['sparsity']:5.2f} {tile:>6s} "
              f"{r['ms']:10.4f} {r['torch_sdpa_ms']:10.4f} {topk_ms} "
              f"{r['ms'] / r['torch_sdpa_ms']:11.2f} {topk_ratio}")
    if train:
        print()
        print(f"== crisp vs PyTorch on {name}, forward + backward (training: dropout on; "
              f"ratio = baseline time / crisp time, > 1: crisp faster)")
        print(f"{'select':21s} {'n':>5s} {'s':>5s} {'crisp fwd':>10s} {'crisp bwd':>10s} "
              f"{'crisp ms':>9s} {'SDPA ms':>9s} {'paper ms':>9s} {'vs SDPA':>8s} {'vs paper':>9s} "
              f"{'s vs s=0':>9s}")
        dense = {(r["select"], r["causal"], r["N"]): r["ms"] for r in train if r["sparsity"] == 0}
        for r in train:
            paper = r["torch_paper_ms"]
            d = dense.get((r["select"], r["causal"], r["N"]))
            print(f"{r['select'] + (' causal' if r['causal'] else ''):21s} {r['N']:5d} "
                  f"{r['sparsity']:5.2f} {r['fwd_ms']:10.4f} {r['bwd_ms']:10.4f} {r['ms']:9.4f} "
                  f"{r['torch_sdpa_ms']:9.4f} "
                  + (f"{paper:9.4f} " if paper is not None else f"{'-':>9s} ")
                  + f"{r['torch_sdpa_ms'] / r['ms']:7.2f}x "
                  + (f"{paper / r['ms']:8.2f}x " if paper is not None else f"{'-':>9s} ")
                  + (f"{r['ms'] / d:9.2f}" if d else f"{'-':>9s}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
