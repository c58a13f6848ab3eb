/* bench_train_layers.c: the model's elementwise layers and optimizer, plain loops
 * (the references) against their threaded versions on the backend's pool, at the
 * shapes of one training step (batch 16 x 64), in one process with the two
 * interleaved call by call, so both see the same machine (on a shared machine a
 * separate run of each would mostly measure the other users).
 *
 *     bench_train_layers --shape minilm|distilbert [--threads N] [--reps K]
 *
 * (--threads 0..1024, 0: one per core; --reps 1..101; a bad value or an unknown flag
 * exits 2 before anything is allocated: bench_args.h.)
 *
 * Prints per layer the median milliseconds of one call, plain and threaded, and the
 * layer's calls per training step; then the sum per step (the step's elementwise
 * work, BERT's dropout sites counted for both shapes). */
#include "layers.h"
#include "model.h"
#include "optim.h"
#include "par.h"

#include "../runtime/fsutil.h"
#include "bench_args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 16, N = 64, R = B * N, MAXREPS = 101 };

typedef struct {
  int C, I, L, V;
  size_t params;
  float *x, *y, *z, *g, *w, *bias, *mean, *rstd, *dw, *db, *wte, *dwte, *wpe, *dwpe;
  float *p, *pg;
  int32_t *ids, *lengths;
  AdamW opt;
} Bufs;

static float *fbuf(size_t n) {
  float *p = malloc(n * sizeof *p);
  if (!p)
    abort();
  for (size_t i = 0; i < n; i++)
    p[i] = (float)((i * 2654435761u) % 2000) / 1000.0f - 1.0f;
  return p;
}

/* One layer call, plain (pool NULL, the reference functions) or threaded. */
typedef void (*OpFn)(Bufs *b, RtPool *pool);

static void op_gelu(Bufs *b, RtPool *p) {
  size_t n = (size_t)R * b->I;
  if (p) {
    gelu_forward_par(p, b->y, b->x, n);
    gelu_backward_par(p, b->z, b->x, b->y, n);
  } else {
    gelu_forward(b->y, b->x, n);
    gelu_backward(b->z, b->x, b->y, n);
  }
}
/* The double-erf references, threaded over the same chunks as gelu_*_par: the
 * GELU before the float erf, measured beside it in the same run. */
typedef struct { float *out; const float *inp, *dout; } RefCtx;
static void ref_fwd_chunk(void *ctx, int64_t first, int64_t last) {
  const RefCtx *e = ctx;
  gelu_forward_ref(e->out + first, e->inp + first, (size_t)(last - first));
}
static void ref_bwd_chunk(void *ctx, int64_t first, int64_t last) {
  const RefCtx *e = ctx;
  gelu_backward_ref(e->out + first, e->inp + first, e->dout + first, (size_t)(last - first));
}
static void op_gelu_ref(Bufs *b, RtPool *p) {
  size_t n = (size_t)R * b->I;
  RefCtx f = {b->y, b->x, NULL}, g = {b->z, b->x, b->y};
  par_for(p, (int64_t)n, 1 << 12, ref_fwd_chunk, &f);
  par_for(p, (int64_t)n, 1 << 12, ref_bwd_chunk, &g);
}
static void op_ln(Bufs *b, RtPool *p) {
  int C = b->C;
  if (p) {
    layernorm_forward_par(p, b->y, b->mean, b->rstd, b->x, b->w, b->bias, R, C, 1e-12f);
    layernorm_backward_par(p, b->z, b->dw, b->db, b->y, b->x, b->w, b->mean, b->rstd, R, C);
  } else {
    layernorm_forward(b->y, b->mean, b->rstd, b->x, b->w, b->bias, R, C, 1e-12f);
    layernorm_backward(b->z, b->dw, b->db, b->y, b->x, b->w, b->mean, b->rstd, R, C);
  }
}
static void op_dropout(Bufs *b, RtPool *p) {
  DropoutSite d = {0.1f, 1, 2, 3, 0};
  if (p) {
    dropout_forward_par(p, b->y, b->x, &d, B, N, b->C);
    dropout_backward_par(p, b->z, b->y, &d, B, N, b->C);
  } else {
    dropout_forward(b->y, b->x, &d, B, N, b->C);
    dropout_backward(b->z, b->y, &d, B, N, b->C);
  }
}
static void op_residual(Bufs *b, RtPool *p) {
  if (p)
    residual_forward_par(p, b->y, b->x, (size_t)R * b->C);
  else
    residual_forward(b->y, b->x, (size_t)R * b->C);
}
static void op_bias(Bufs *b, RtPool *p) {   /* fill + gradient, I wide */
  if (p) {
    bias_fill_par(p, b->y, b->I, b->bias, R, b->I);
    bias_grad_par(p, b->dw, b->x, b->I, R, b->I);
  } else {
    bias_fill(b->y, b->I, b->bias, R, b->I);
    bias_grad(b->dw, b->x, b->I, R, b->I);
  }
}
static void op_embed(Bufs *b, RtPool *p) {
  if (p) {
    embedding_forward_par(p, b->y, b->ids, b->wte, b->wpe, b->w, B, N, b->C);
    embedding_backward_par(p, b->dwte, b->dwpe, b->db, b->x, b->ids, b->lengths, B, N, b->C, 0);
  } else {
    embedding_forward(b->y, b->ids, b->wte, b->wpe, b->w, B, N, b->C);
    embedding_backward(b->dwte, b->dwpe, b->db, b->x, b->ids, b->lengths, B, N, b->C, 0);
  }
}
/* the trainer's optimizer step over the whole parameter block: norm, AdamW, zeroing */
static void op_optim(Bufs *b, RtPool *p) {
  adamw_begin(&b->opt);
  if (p) {
    double n = grad_norm_par(p, b->pg, b->params);
    adamw_update_par(p, &b->opt, b->p, b->pg, 0, b->params, true, 1e-5,
                     (float)clip_coef(n, 1), true);
  } else {
    double n = grad_norm(b->pg, b->params);
    adamw_update(&b->opt, b->p, b->pg, 0, b->params, true, 1e-5, (float)clip_coef(n, 1));
    memset(b->pg, 0, b->params * sizeof *b->pg);
  }
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static const char USAGE[] =
    "usage: bench_train_layers [--shape minilm|distilbert] [--threads N] [--reps K]\n"
    "  --shape S    the model shape (default minilm)\n"
    "  --threads N  0..1024 (default 0: one per online core)\n"
    "  --reps K     1..101 (default 21)\n";

static void bufs_free(Bufs *b) {
  float *f[] = {b->x, b->y, b->z, b->w, b->bias, b->mean, b->rstd, b->dw, b->db,
                b->wte, b->dwte, b->wpe, b->dwpe, b->p, b->pg};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++)
    free(f[i]);
  free(b->ids), free(b->lengths);
  adamw_free(&b->opt);
}

int main(int argc, char **argv) {
  static const char *const shapes[] = {"minilm", "distilbert", NULL};
  int shape_k = 0, threads = 0, reps = 21;
  BenchArgs args = bench_args(argc, argv, "bench_train_layers", USAGE);
  while (bench_next(&args))
    if (!bench_choice(&args, "--shape", shapes, &shape_k) &&
        !bench_int(&args, "--threads", 0, 1024, &threads) &&
        !bench_int(&args, "--reps", 1, MAXREPS, &reps))
      bench_unknown(&args);
  const char *shape = shapes[shape_k];
  bool minilm = shape_k == 0;
  ModelConfig mc;   /* as bench_train's shapes */
  hf_config_default(&mc, minilm ? MODEL_BERT : MODEL_DISTILBERT);
  if (minilm)
    mc.hidden = 384, mc.layers = 6, mc.heads = 12, mc.intermediate = 1536;
  int np = hf_params(&mc, NULL, 0);
  HfParam *info = calloc((size_t)np, sizeof *info);
  if (!info)
    return 1;
  hf_params(&mc, info, np);
  Bufs b = {.C = mc.hidden, .I = mc.intermediate, .L = mc.layers, .V = mc.vocab_size};
  for (int i = 0; i < np; i++)
    b.params += info[i].numel;
  free(info);
  RtPool *pool = rt_pool_new(threads);
  if (!pool || adamw_init(&b.opt, b.params, &(AdamWConfig){0.9, 0.999, 1e-8, 0.01}))
    return 1;
  size_t big = (size_t)R * b.I;
  b.x = fbuf(big), b.y = fbuf(big), b.z = fbuf(big), b.w = fbuf(b.I), b.bias = fbuf(b.I);
  b.mean = fbuf(R), b.rstd = fbuf(R), b.dw = fbuf(b.I), b.db = fbuf(b.I);
  b.wte = fbuf((size_t)b.V * b.C), b.dwte = fbuf((size_t)b.V * b.C);
  b.wpe = fbuf((size_t)N * b.C), b.dwpe = fbuf((size_t)N * b.C);
  b.p = fbuf(b.params), b.pg = fbuf(b.params);
  b.ids = malloc(R * sizeof *b.ids), b.lengths = malloc(B * sizeof *b.lengths);
  for (int i = 0; i < R; i++)
    b.ids[i] = 1000 + (int32_t)((i * 7919u) % 20000);
  for (int i = 0; i < B; i++)
    b.lengths[i] = N;
  int L = b.L;
  struct { const char *name; OpFn fn; int per_step; } ops[] = {
      {"gelu fwd+bwd [R, I]", op_gelu, L},
      {"gelu fwd+bwd, double-erf reference (not in the sum)", op_gelu_ref, 0},
      {"layernorm fwd+bwd [R, C]", op_ln, 2 * L + 1},
      {"dropout fwd+bwd [R, C]", op_dropout, 2 * L + 1},
      {"residual [R, C]", op_residual, 2 * L},
      {"bias fill+grad [R, I]", op_bias, 2 * L},   /* ~ the six biases per layer */
      {"embedding fwd+bwd", op_embed, 1},
      {"norm + AdamW + zero (all params)", op_optim, 1},
  };
  int nops = (int)(sizeof ops / sizeof *ops);
  printf("elementwise layers, %s shape, batch %d x %d, %d threads, %d reps (median ms per "
         "call)\n", shape, B, N, rt_pool_threads(pool), reps);
  printf("| layer | plain | threaded | speed-up | calls/step |\n|---|---|---|---|---|\n");
  double step_plain = 0, step_par = 0;
  for (int o = 0; o < nops; o++) {
    double t[2][MAXREPS];
    ops[o].fn(&b, NULL), ops[o].fn(&b, pool);   /* warm caches and pages */
    for (int r = 0; r < reps; r++)
      for (int v = 0; v < 2; v++) {
        double t0 = rt_now();
        ops[o].fn(&b, v ? pool : NULL);
        t[v][r] = (rt_now() - t0) * 1e3;
      }
    qsort(t[0], (size_t)reps, sizeof(double), cmp);
    qsort(t[1], (size_t)reps, sizeof(double), cmp);
    double a = t[0][reps / 2], c = t[1][reps / 2];
    printf("| %s | %.2f | %.2f | %.2fx | %d |\n", ops[o].name, a, c, a / c, ops[o].per_step);
    step_plain += a * ops[o].per_step, step_par += c * ops[o].per_step;
  }
  printf("| per training step | %.1f | %.1f | %.2fx | |\n", step_plain, step_par,
         step_plain / step_par);
  rt_pool_free(pool);
  bufs_free(&b);
  return 0;
}
