/* The attention backward kernels (templates/attention_bwd.c) and their reference:
 *   a) the double reference backward against central finite differences of the
 *      masked double forward (L = sum O * G, mask held fixed), every selection mode,
 *      causal or not, dropout on and off, padding;
 *   b) the host-JIT'd kernels against the double reference on fresh random shapes
 *      (n = 1, odd, not a multiple of the tile, 128; lengths 1..n; s = 0 .. 0.999;
 *      dropout 0 and 0.1; fused and separate layouts), outputs poisoned with NaN;
 *   c) the GPU mapping of both kernels in the IR interpreter (races, uninitialised
 *      shared reads) against the reference, for three tile configurations;
 *   d) PTX of both kernels through ptxas -v for sm_90 and sm_80: assembles, no spills
 *      (on spills it also reports whether the PTX without .maxntid is spill-free);
 *   e) end to end on the host: the forward kernel (templates.h contract) writes o, lse
 *      and tau, the backward kernels read them, the gradients match the reference.
 * The kernels get lse from the reference forward (as f32) and a tau equal to their
 * own f32 score of the reference's weakest kept key; with q, k multiples of 1/4 the
 * f32 scores are exact up to the final scaling, so kept sets agree exactly.
 * Error measure per tensor: max |x - ref| / max |ref| < 1e-5, or, where a gradient
 * cancels to ~0 (s -> 1 leaves rows one key, and dS = P (dP - Delta) ~ 0), the error
 * relative to the magnitude of the summed terms (sum P (|dP| + |Delta|) |K| / sqrt(d)
 * and the like) < 1e-6. Set CRISP_SEED to repeat a run; CRISP_TEST_VERBOSE=1 prints
 * every case's errors and ptxas's output, CRISP_TEST_PTX=1 the PTX. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../compiler/emit.h"
#include "fsutil.h"
#include "ptxas_util.h"
#include "../compiler/jit.h"
#include "../compiler/lower.h"
#include "../ir/interp.h"
#include "../ir/passes.h"
#include "../templates/attention_bwd.h"
#include "../templates/reference_bwd.h"
#include "check.h"

static uint64_t rng;
static const double TOL = 1e-5;       /* norm-wise relative error of the f32 kernels */
static const double TERM_TOL = 1e-6;  /* error relative to the summed terms' magnitude */
static double worst_rel, worst_term, worst_fd;
static long fd_nonzero;

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p)
    abort();
  return p;
}

static double uniform(void) {   /* splitmix64 -> [0, 1) */
  uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

static float draw(bool quantized) {
  double u = uniform() * 2 - 1;
  return quantized ? (float)(round(u * 4) / 4) : (float)u;
}

static Spec make_spec(int head_dim, int max_seq, SelectKind sel, bool causal, int keep_min) {
  Spec s;
  spec_defaults(&s);
  snprintf(s.name, sizeof s.name, "t");
  s.head_dim = head_dim;
  s.max_seq = max_seq;
  s.select = sel;
  s.causal = causal;
  s.keep_min = keep_min;
  s.backward = true;
  return s;
}

/* ---- one backward problem: inputs, kernel outputs, reference ---- */

typedef struct {
  Spec spec;
  AttnLayout l;                     /* q/k/v (qkv strides) and o/dout (o strides) */
  int64_t g_sb, g_sn, g_sh;         /* dq/dk/dv strides */
  int64_t nin, nq, no, ng, nrows;   /* allocation sizes */
  float *in, *q, *k, *v, *o, *dout, *lse, *tau, *delta, *grad, *dq, *dk, *dv;
  int32_t *lengths;
  double sparsity;
  AttnDropout dp;
  AttnBwdRef ref;                   /* o, lse, tau, delta, dq, dk, dv (qkv layout) */
  uint8_t *mask;
} Case;

static void case_init(Case *c, const Spec *s, int B, int H, int N, bool fused_in,
                      bool fused_grad) {
  memset(c, 0, sizeof *c);
  c->spec = *s;
  int64_t D = s->head_dim, one = (int64_t)B * N * H * D;
  AttnLayout *l = &c->l;
  l->B = B, l->H = H, l->N = N;
  l->qkv_sh = D, l->qkv_sn = (fused_in ? 3 : 1) * H * D, l->qkv_sb = N * l->qkv_sn;
  l->o_sh = D, l->o_sn = H * D, l->o_sb = N * H * D;
  c->g_sh = D, c->g_sn = (fused_grad ? 3 : 1) * H * D, c->g_sb = N * c->g_sn;
  c->nin = 3 * one;
  c->in = xcalloc((size_t)c->nin, sizeof(float));
  c->q = c->in, c->k = c->in + (fused_in ? H * D : one), c->v = c->in + (fused_in ? 2 * H * D : 2 * one);
  c->ng = 3 * one;
  c->grad = xcalloc((size_t)c->ng, sizeof(float));
  c->dq = c->grad, c->dk = c->grad + (fused_grad ? H * D : one);
  c->dv = c->grad + (fused_grad ? 2 * H * D : 2 * one);
  c->no = one;
  c->o = xcalloc((size_t)one, sizeof(float));
  c->dout = xcalloc((size_t)one, sizeof(float));
  c->nrows = (int64_t)B * H * N;
  c->lse = xcalloc((size_t)c->nrows, sizeof(float));
  c->tau = xcalloc((size_t)c->nrows, sizeof(float));
  c->delta = xcalloc((size_t)c->nrows, sizeof(float));
  c->lengths = xcalloc((size_t)B, sizeof(int32_t));
  for (int b = 0; b < B; b++)
    c->lengths[b] = N;
  c->nq = attention_qkv_extent(l, (int)D);
  AttnBwdRef *r = &c->ref;
  r->o = xcalloc((size_t)one, sizeof(double));
  r->lse = xcalloc((size_t)c->nrows, sizeof(double));
  r->tau = xcalloc((size_t)c->nrows, sizeof(double));
  r->delta = xcalloc((size_t)c->nrows, sizeof(double));
  r->dq = xcalloc((size_t)c->nq, sizeof(double));
  r->dk = xcalloc((size_t)c->nq, sizeof(double));
  r->dv = xcalloc((size_t)c->nq, sizeof(double));
  c->mask = xcalloc((size_t)(c->nrows * N), 1);
}

static void case_free(Case *c) {
  void *p[] = {c->in, c->grad, c->o, c->dout, c->lse, c->tau, c->delta, c->lengths,
               c->ref.o, c->ref.lse, c->ref.tau, c->ref.delta, c->ref.dq, c->ref.dk,
               c->ref.dv, c->mask};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    free(p[i]);
}

static int64_t at_in(const Case *c, int b, int i, int h) {
  return b * c->l.qkv_sb + i * c->l.qkv_sn + h * c->l.qkv_sh;
}
static int64_t at_o(const Case *c, int b, int i, int h) {
  return b * c->l.o_sb + i * c->l.o_sn + h * c->l.o_sh;
}
static int64_t at_g(const Case *c, int b, int i, int h) {
  return b * c->g_sb + i * c->g_sn + h * c->g_sh;
}

static void random_lengths(Case *c) {
  for (int b = 0; b < c->l.B; b++)
    c->lengths[b] = 1 + (int)(uniform() * c->l.N);
}

/* q, k quantized (multiples of 1/4), v and dout uniform in [-1, 1]. */
static void case_fill(Case *c) {
  const AttnLayout *l = &c->l;
  for (int b = 0; b < l->B; b++)
    for (int i = 0; i < l->N; i++)
      for (int h = 0; h < l->H; h++)
        for (int d = 0; d < c->spec.head_dim; d++) {
          int64_t x = at_in(c, b, i, h) + d;
          c->q[x] = draw(true), c->k[x] = draw(true), c->v[x] = draw(false);
          c->dout[at_o(c, b, i, h) + d] = draw(false);
        }
}

/* The kernel's f32 score: an exact f32 dot (quantized inputs) times f32(1/sqrt(d)). */
static float kernel_score(const Case *c, int b, int h, int i, int j) {
  const float *qi = c->q + at_in(c, b, i, h), *kj = c->k + at_in(c, b, j, h);
  double dot = 0;
  for (int d = 0; d < c->spec.head_dim; d++)
    dot += (double)qi[d] * kj[d];
  float scale = (float)(1.0 / sqrt((double)c->spec.head_dim));
  return (float)dot * scale;
}

/* Reference backward, then the kernel inputs o, lse, tau derived from it. */
static void case_reference(Case *c) {
  const AttnLayout *l = &c->l;
  attention_bwd_ref(&c->spec, l, c->q, c->k, c->v, c->dout, c->lengths, c->sparsity, &c->dp,
                    &c->ref);
  double *tau = xcalloc((size_t)c->nrows, sizeof *tau);
  attention_mask_ref(&c->spec, l, c->q, c->k, c->lengths, c->sparsity, c->mask, tau);
  for (int64_t x = 0; x < c->nrows; x++)
    CHECK(tau[x] == c->ref.tau[x] || (isinf(tau[x]) && isinf(c->ref.tau[x])),
          "reference tau differs between calls");
  free(tau);
  for (int64_t x = 0; x < c->no; x++)
    c->o[x] = (float)c->ref.o[x];
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++)
      for (int i = 0; i < l->N; i++) {
        int64_t r = ((int64_t)b * l->H + h) * l->N + i;
        c->lse[r] = (float)c->ref.lse[r];
        float t = INFINITY;
        for (int j = 0; j < l->N; j++)
          if (c->mask[r * l->N + j]) {
            float s = kernel_score(c, b, h, i, j);
            t = s < t ? s : t;
          }
        /* select = none must not read tau: NaN would drop every key */
        c->tau[r] = c->spec.select == SEL_NONE && i < c->lengths[b] ? NAN : t;
      }
}

static void case_poison(Case *c) {
  for (int64_t x = 0; x < c->ng; x++)
    c->grad[x] = NAN;
  for (int64_t x = 0; x < c->nrows; x++)
    c->delta[x] = NAN;
}

/* kernelParams for both kernels. */
typedef struct {
  void *ptrs[12];
  int32_t ints[16];
  float p;
  void *args[ATTN_BWD_NPARAMS];
  int64_t counts[ATTN_BWD_NPARAMS];
} BwdArgs;

static void bwd_args(BwdArgs *a, Case *c) {
  memset(a, 0, sizeof *a);
  const AttnLayout *l = &c->l;
  void *ptrs[12] = {c->q, c->k, c->v, c->o, c->dout, c->lse, c->tau, c->lengths,
                    c->delta, c->dq, c->dk, c->dv};
  int64_t counts[12] = {c->nin - (c->q - c->in), c->nin - (c->k - c->in),
                        c->nin - (c->v - c->in), c->no, c->no, c->nrows, c->nrows, l->B,
                        c->nrows, c->ng - (c->dq - c->grad), c->ng - (c->dk - c->grad),
                        c->ng - (c->dv - c->grad)};
  int64_t ints[16] = {l->B, l->H, l->N, l->qkv_sb, l->qkv_sn, l->qkv_sh, l->o_sb, l->o_sn,
                      l->o_sh, c->g_sb, c->g_sn, c->g_sh, 0, c->dp.seed, c->dp.step,
                      c->dp.layer};
  for (int i = 0; i < 12; i++) {
    a->ptrs[i] = ptrs[i];
    a->args[i] = &a->ptrs[i];
    a->counts[i] = counts[i];
  }
  for (int i = 0; i < 16; i++)
    a->ints[i] = (int32_t)(uint32_t)ints[i];
  for (int i = 0; i < 12; i++)
    a->args[ATTN_BWD_B + i] = &a->ints[i];
  a->p = c->dp.p;
  a->args[ATTN_BWD_DROPOUT] = &a->p;
  a->args[ATTN_BWD_SEED] = &a->ints[13];
  a->args[ATTN_BWD_STEP] = &a->ints[14];
  a->args[ATTN_BWD_LAYER] = &a->ints[15];
}

/* ---- comparing the kernel's outputs with the reference ---- */

static double maxabs_row(const float *x, int n) {
  double m = 0;
  for (int d = 0; d < n; d++)
    m = fmax(m, fabs(x[d]));
  return m;
}

/* Magnitudes of the summed terms (before cancellation), per tensor: an f32 kernel's
 * error is a small multiple of eps times these. F[0..3] = dq, dk, dv, delta. */
static void term_scales(const Case *c, double F[4]) {
  const AttnLayout *l = &c->l;
  int D = c->spec.head_dim;
  double *tk = xcalloc((size_t)l->N, sizeof *tk), *tv = xcalloc((size_t)l->N, sizeof *tv);
  double *s = xcalloc((size_t)l->N, sizeof *s);
  double inv = 1.0 / sqrt((double)D);
  F[0] = F[1] = F[2] = F[3] = 0;
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++) {
      memset(tk, 0, (size_t)l->N * sizeof *tk);
      memset(tv, 0, (size_t)l->N * sizeof *tv);
      for (int i = 0; i < c->lengths[b]; i++) {
        int64_t r = ((int64_t)b * l->H + h) * l->N + i;
        const float *gi = c->dout + at_o(c, b, i, h);
        double dl = fabs(c->ref.delta[r]), tq = 0, td = 0;
        for (int d = 0; d < D; d++)
          td += fabs(gi[d] * c->ref.o[at_o(c, b, i, h) + d]);
        attention_scores_ref(&c->spec, l, c->q, c->k, b, h, i, l->N, s);
        for (int j = 0; j < l->N; j++) {
          if (!c->mask[r * l->N + j])
            continue;
          double p = exp(s[j] - c->ref.lse[r]), dp = 0;
          const float *vj = c->v + at_in(c, b, j, h);
          for (int d = 0; d < D; d++)
            dp += fabs(gi[d] * vj[d]);
          dp /= 1.0 - c->dp.p;
          tq += p * (dp + dl) * maxabs_row(c->k + at_in(c, b, j, h), D) * inv;
          tk[j] += p * (dp + dl) * maxabs_row(c->q + at_in(c, b, i, h), D) * inv;
          tv[j] += p / (1.0 - c->dp.p) * maxabs_row(gi, D);
        }
        F[0] = fmax(F[0], tq);
        F[3] = fmax(F[3], td);
      }
      for (int j = 0; j < l->N; j++)
        F[1] = fmax(F[1], tk[j]), F[2] = fmax(F[2], tv[j]);
    }
  free(tk);
  free(tv);
  free(s);
}

typedef struct {
  double rel, term;   /* max |x - ref| / max |ref|, and / the term scale */
  bool unwritten;
} Err;

static bool err_ok(Err e) { return !e.unwritten && (e.rel < TOL || e.term < TERM_TOL); }

static void err_add(Err *e, double diff, double ref_max, double scale) {
  e->rel = fmax(e->rel, diff / fmax(ref_max, 1e-300));
  e->term = fmax(e->term, diff / fmax(scale, 1e-300));
}

/* Errors of dq, dk, dv, delta (in that order). */
static void case_errors(const Case *c, Err e[4]) {
  const AttnLayout *l = &c->l;
  int D = c->spec.head_dim;
  double F[4];
  term_scales(c, F);
  const float *x[3] = {c->dq, c->dk, c->dv};
  const double *ref[3] = {c->ref.dq, c->ref.dk, c->ref.dv};
  for (int t = 0; t < 3; t++) {
    double mx = 0, diff = 0;
    e[t] = (Err){0};
    for (int b = 0; b < l->B; b++)
      for (int i = 0; i < l->N; i++)
        for (int h = 0; h < l->H; h++)
          for (int d = 0; d < D; d++) {
            double y = x[t][at_g(c, b, i, h) + d], r = ref[t][at_in(c, b, i, h) + d];
            if (isnan(y))
              e[t].unwritten = true;
            else
              diff = fmax(diff, fabs(y - r));
            mx = fmax(mx, fabs(r));
          }
    err_add(&e[t], diff, mx, F[t]);
  }
  double mx = 0, diff = 0;
  e[3] = (Err){0};
  for (int64_t r = 0; r < c->nrows; r++) {
    if (isnan(c->delta[r]))
      e[3].unwritten = true;
    else
      diff = fmax(diff, fabs(c->delta[r] - c->ref.delta[r]));
    mx = fmax(mx, fabs(c->ref.delta[r]));
  }
  err_add(&e[3], diff, mx, F[3]);
  for (int t = 0; t < 4; t++)
    if (!e[t].unwritten) {
      if (e[t].rel < TOL)
        worst_rel = fmax(worst_rel, e[t].rel);
      worst_term = fmax(worst_term, e[t].term);
    }
  if (getenv("CRISP_TEST_VERBOSE"))
    printf("N=%d L0=%d s=%g p=%g sel=%d causal=%d D=%d: rel %.2g %.2g %.2g %.2g  term %.2g %.2g %.2g %.2g\n",
           l->N, c->lengths[0], c->sparsity, c->dp.p, c->spec.select, c->spec.causal, D, e[0].rel,
           e[1].rel, e[2].rel, e[3].rel, e[0].term, e[1].term, e[2].term, e[3].term);
}

static void report(const Case *c, const char *what, Err e[4]) {
  static const char *const names[] = {"dq", "dk", "dv", "delta"};
  for (int t = 0; t < 4; t++)
    CHECK(err_ok(e[t]),
          "%s: %s: B=%d H=%d N=%d D=%d lengths[0]=%d s=%g p=%g select=%s causal=%d "
          "keep_min=%d: rel err %.3g, vs terms %.3g%s",
          what, names[t], c->l.B, c->l.H, c->l.N, c->spec.head_dim, c->lengths[0],
          c->sparsity, c->dp.p, select_name(c->spec.select), c->spec.causal,
          c->spec.keep_min, e[t].rel, e[t].term, e[t].unwritten ? ", UNWRITTEN outputs" : "");
}

/* ---- a) finite differences of the double reference ---- */

static double loss(const Spec *sp, const AttnLayout *l, const double *q, const double *k,
                   const double *v, const int32_t *lengths, const uint8_t *mask,
                   const AttnDropout *dp, const double *g, double *o) {
  attention_fwd_masked_ref(sp, l, q, k, v, lengths, mask, dp, o, NULL);
  double sum = 0;
  for (int64_t x = 0; x < attention_o_extent(l, sp->head_dim); x++)
    sum += o[x] * g[x];
  return sum;
}

static void fd_case(const Spec *s, int B, int H, int N, double sparsity, float p) {
  Case c;
  case_init(&c, s, B, H, N, (B + N) % 2 == 0, false);
  const AttnLayout *l = &c.l;
  int D = s->head_dim;
  c.sparsity = sparsity;
  c.dp = (AttnDropout){p, (uint32_t)(uniform() * 4e9), 3, 1};
  for (int64_t x = 0; x < c.nin; x++)
    c.in[x] = draw(false);
  for (int64_t x = 0; x < c.no; x++)
    c.dout[x] = draw(false);
  random_lengths(&c);
  double *tau = xcalloc((size_t)c.nrows, sizeof *tau);
  attention_mask_ref(s, l, c.q, c.k, c.lengths, sparsity, c.mask, tau);
  double *in = xcalloc((size_t)c.nin, sizeof *in), *g = xcalloc((size_t)c.no, sizeof *g);
  double *o = xcalloc((size_t)c.no, sizeof *o), *delta = xcalloc((size_t)c.nrows, sizeof *delta);
  for (int64_t x = 0; x < c.nin; x++)
    in[x] = c.in[x];
  for (int64_t x = 0; x < c.no; x++)
    g[x] = c.dout[x];
  double *q = in + (c.q - c.in), *k = in + (c.k - c.in), *v = in + (c.v - c.in);
  attention_fwd_masked_ref(s, l, q, k, v, c.lengths, c.mask, &c.dp, o, NULL);
  attention_bwd_masked_ref(s, l, q, k, v, o, g, c.lengths, c.mask, &c.dp, c.ref.dq, c.ref.dk,
                           c.ref.dv, delta);
  const double eps = 1e-6;
  double *t[3] = {q, k, v};
  const double *an[3] = {c.ref.dq, c.ref.dk, c.ref.dv};
  double err = 0, mx = 0;
  int nonzero = 0;
  for (int which = 0; which < 3; which++)
    for (int b = 0; b < B; b++)
      for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++)
          for (int d = 0; d < D; d++) {
            int64_t x = at_in(&c, b, i, h) + d;
            double keep = t[which][x];
            t[which][x] = keep + eps;
            double lp = loss(s, l, q, k, v, c.lengths, c.mask, &c.dp, g, o);
            t[which][x] = keep - eps;
            double lm = loss(s, l, q, k, v, c.lengths, c.mask, &c.dp, g, o);
            t[which][x] = keep;
            double fd = (lp - lm) / (2 * eps);
            err = fmax(err, fabs(fd - an[which][x]));
            mx = fmax(mx, fabs(an[which][x]));
            nonzero += an[which][x] != 0;
            if (i >= c.lengths[b])
              CHECK(an[which][x] == 0, "padded row %d has a nonzero gradient", i);
          }
  double rel = err / fmax(mx, 1e-300);
  worst_fd = fmax(worst_fd, rel);
  fd_nonzero += nonzero;
  CHECK(rel < 1e-6, "finite differences: B=%d H=%d N=%d select=%s causal=%d s=%g p=%g: rel err "
        "%.3g (%d nonzero)", B, H, N, select_name(s->select), s->causal, sparsity, p, rel,
        nonzero);
  free(tau);
  free(in);
  free(g);
  free(o);
  free(delta);
  case_free(&c);
}

static void fd_suite(void) {
  static const SelectKind sels[] = {SEL_NONE, SEL_ROW_TOPK, SEL_HEAD_QUANTILE,
                                    SEL_LAYER_QUANTILE};
  for (int si = 0; si < 4; si++)
    for (int causal = 0; causal < 2; causal++)
      for (int drop = 0; drop < 2; drop++) {
        Spec s = make_spec(8, 16, sels[si], causal, 1 + drop);
        float p = drop ? 0.3f : 0.0f;
        fd_case(&s, 1, 1, 1, 0.5, p);
        fd_case(&s, 1, 2, 5, 0.5, p);
        fd_case(&s, 2, 2, 6, sels[si] == SEL_NONE ? 0.0 : 0.4, p);
        fd_case(&s, 2, 1, 6, 0.8, p);
      }
}

/* ---- compiling the backward kernels ---- */

static int compile(Module *m, const Spec *s, const TileConfig *t, MapTarget target, char *err,
                   size_t cap) {
  if (attention_bwd_build(s, t, m, err, cap))
    return -1;
  for (int i = 0; i < m->n; i++) {
    Kernel *k = m->kernels[i];
    if (ir_verify(k, err, cap) || ir_simplify(k, err, cap))
      return -1;
    if (target == MAP_NONE)
      continue;
    if (ir_map(k, target, err, cap) || ir_simplify(k, err, cap) || ir_verify(k, err, cap))
      return -1;
  }
  return 0;
}

static void run_host(CpuKernelFn fn, Kernel *k, BwdArgs *a) {
  int32_t grid[3];
  ir_grid(k, a->args, grid);
  fn(a->args, grid, 0, (int64_t)grid[0] * grid[1] * grid[2]);
}

/* ---- b) host JIT against the reference ---- */

typedef struct {
  Module m;
  Jit *jit;
  CpuKernelFn fn[2];   /* the module's backward kernels in launch order (1 or 2) */
} Host;

/* Runs the backward kernels m->kernels[first..] (fn[0..]) in order. */
static void run_bwd(CpuKernelFn const fn[], Module *m, int first, BwdArgs *a) {
  for (int i = first; i < m->n; i++)
    run_host(fn[i - first], m->kernels[i], a);
}

/* Looks up m->kernels[first..] into fn; false (with a CHECK) if one is missing. */
static bool lookup_bwd(Jit *jit, Module *m, int first, CpuKernelFn fn[2]) {
  bool ok = m->n - first >= 1 && m->n - first <= 2;
  for (int i = first; ok && i < m->n; i++)
    ok = (fn[i - first] = jit_lookup(jit, m->kernels[i]->name)) != NULL;
  CHECK(ok, "lookup of the backward kernels");
  return ok;
}

static int host_compile(Host *hk, const Spec *s) {
  char err[1024];
  memset(hk, 0, sizeof *hk);
  TileConfig t = tile_resolve(s, TUNE_CPU);
  if (compile(&hk->m, s, &t, MAP_CPU, err, sizeof err) ||
      !(hk->jit = jit_compile(&hk->m, err, sizeof err))) {
    CHECK(0, "compile: %s", err);
    ir_module_free(&hk->m);
    return -1;
  }
  return lookup_bwd(hk->jit, &hk->m, 0, hk->fn) ? 0 : -1;
}

static void host_check(Host *hk, Case *c, const char *what) {
  case_reference(c);
  case_poison(c);
  BwdArgs a;
  bwd_args(&a, c);
  run_bwd(hk->fn, &hk->m, 0, &a);
  Err e[4];
  case_errors(c, e);
  report(c, what, e);
}

static void host_suite(const Spec *s) {
  Host hk;
  if (host_compile(&hk, s))
    return;
  static const double sparsities[] = {0.0, 0.5, 0.8, 0.999};
  const int ns[] = {1, 7, 33, 128};
  for (int ni = 0; ni < 4; ni++)
    for (int si = 0; si < 4; si++)
      for (int drop = 0; drop < 2; drop++) {
        int n = ns[ni] > s->max_seq ? s->max_seq : ns[ni];
        Case c;
        case_init(&c, s, 2, n > 64 ? 2 : 3, n, (ni + si) % 2 == 0, (si + drop) % 2 == 0);
        c.sparsity = s->select == SEL_NONE ? 0.0 : sparsities[si];
        c.dp = (AttnDropout){drop ? 0.1f : 0.0f, (uint32_t)(uniform() * 4e9),
                             (uint32_t)(uniform() * 1000), (uint32_t)ni};
        case_fill(&c);
        if ((ni + drop) % 2)
          random_lengths(&c);
        host_check(&hk, &c, "host");
        case_free(&c);
      }
  /* every valid length 1..n */
  Case c;
  case_init(&c, s, 12, 1, 12, true, true);
  c.sparsity = 0.7;
  c.dp = (AttnDropout){0.1f, 7, 1, 2};
  case_fill(&c);
  for (int b = 0; b < 12; b++)
    c.lengths[b] = b + 1;
  host_check(&hk, &c, "every length");
  case_free(&c);
  /* all scores equal (q = 0): everything ties at tau and is kept */
  case_init(&c, s, 2, 2, 21, false, true);
  c.sparsity = 0.8;
  case_fill(&c);
  for (int b = 0; b < 2; b++)
    for (int i = 0; i < 21; i++)
      for (int h = 0; h < 2; h++)
        memset(c.q + at_in(&c, b, i, h), 0, (size_t)s->head_dim * sizeof(float));
  host_check(&hk, &c, "all equal");
  case_free(&c);
  jit_free(hk.jit);
  ir_module_free(&hk.m);
}

/* ---- c) the GPU mapping in the interpreter ---- */

static void interp_suite(const Spec *s, TileConfig t) {
  char err[1024];
  Module m = {0};
  if (compile(&m, s, &t, MAP_NONE, err, sizeof err)) {
    CHECK(0, "compile for the interpreter: %s", err);
    ir_module_free(&m);
    return;
  }
  static const int ns[] = {1, 5, 19};
  for (int ni = 0; ni < 3; ni++) {
    Case c;
    case_init(&c, s, 2, 2, ns[ni], ni % 2 == 0, ni % 2 == 1);
    c.sparsity = s->select == SEL_NONE ? 0.0 : (double[]){0.0, 0.6, 0.95}[ni];
    c.dp = (AttnDropout){ni == 1 ? 0.0f : 0.2f, (uint32_t)(uniform() * 4e9), 5, 0};
    case_fill(&c);
    random_lengths(&c);
    case_reference(&c);
    case_poison(&c);
    BwdArgs a;
    bwd_args(&a, &c);
    InterpOptions opt = {true, true};
    int rc = 0;
    for (int kk = 0; kk < m.n && !rc; kk++) {
      int32_t grid[3];
      ir_grid(m.kernels[kk], a.args, grid);
      rc = interp_run(m.kernels[kk], a.args, a.counts, grid, &opt, err, sizeof err);
      CHECK(rc == 0, "interpreter (rows %d warps %d, %s): %s", t.rows, t.warps,
            m.kernels[kk]->name, err);
    }
    if (!rc) {
      Err e[4];
      case_errors(&c, e);
      char what[64];
      snprintf(what, sizeof what, "interpreter rows=%d warps=%d", t.rows, t.warps);
      report(&c, what, e);
    }
    case_free(&c);
  }
  ir_module_free(&m);
}

/* ---- d) PTX through ptxas ---- */

/* ptxas -v on ptx: *fns functions, *clean of them with no spill stores; the
 * output (when out != NULL) into out. Returns ptxas's exit status, or -1. */
static int run_ptxas(const char *ptxas, const char *arch, const char *ptx, size_t len, int *fns,
                     int *clean, char *out, size_t cap) {
  char path[96], cmd[1024], err[256];
  static int serial;
  snprintf(path, sizeof path, "/tmp/crisp_test_bwd_%d_%d.ptx", (int)getpid(), serial++);
  *fns = *clean = 0;
  if (rt_write_atomic(path, ptx, len, err, sizeof err)) {
    if (out)
      snprintf(out, cap, "%s", err);
    return -1;
  }
  snprintf(cmd, sizeof cmd, "%s -v -arch=%s %s -o /dev/null 2>&1", ptxas, arch, path);
  FILE *p = popen(cmd, "r");
  char *text = xcalloc(1 << 16, 1);
  size_t n = p ? fread(text, 1, (1 << 16) - 1, p) : 0;
  int rc = p ? pclose(p) : -1;
  text[n] = 0;
  *fns = count(text, "spill stores");
  *clean = count(text, " 0 bytes spill stores");
  if (getenv("CRISP_TEST_VERBOSE"))
    fputs(text, stdout);
  if (out)
    snprintf(out, cap, "%s", text);
  free(text);
  unlink(path);
  return rc;
}

/* A copy of ptx without its ".maxntid" lines. */
static char *strip_maxntid(const char *ptx) {
  char *out = xcalloc(strlen(ptx) + 1, 1), *o = out;
  for (const char *line = ptx; *line;) {
    const char *end = strchr(line, '\n');
    size_t n = end ? (size_t)(end - line + 1) : strlen(line);
    if (strncmp(line, ".maxntid", 8) != 0) {
      memcpy(o, line, n);
      o += n;
    }
    line += n;
  }
  return out;
}

static void ptxas_check(const char *ptxas, const Spec *s, Target tg) {
  char err[1 << 14];
  Module m = {0};
  TileConfig t = tile_resolve(s, TUNE_GPU);
  if (compile(&m, s, &t, MAP_GPU, err, sizeof err)) {
    CHECK(0, "compile for %s: %s", target_name(tg), err);
    ir_module_free(&m);
    return;
  }
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = lower_module(ctx, &m, tg, err, sizeof err);
  LLVMTargetMachineRef tm = mod ? emit_target_machine(tg, err, sizeof err) : NULL;
  char *ptx = NULL;
  size_t len = 0;
  int ok = tm && !emit_optimize(mod, tm, err, sizeof err) &&
           !emit_buffer(mod, tm, EMIT_ASM, &ptx, &len, err, sizeof err);
  CHECK(ok, "PTX for %s: %s", target_name(tg), err);
  if (ok && getenv("CRISP_TEST_PTX"))
    fputs(ptx, stdout);
  if (ok && ptxas) {
    const char *arch = tg == TARGET_SM90 ? "sm_90" : "sm_80";
    int fns, clean, rc = run_ptxas(ptxas, arch, ptx, len, &fns, &clean, err, sizeof err);
    char hint[160] = "";
    if (rc == 0 && clean < fns) {   /* is it ptxas trading registers for occupancy? */
      char *bare = strip_maxntid(ptx);
      int f2, c2;
      if (run_ptxas(ptxas, arch, bare, strlen(bare), &f2, &c2, NULL, 0) == 0)
        snprintf(hint, sizeof hint, "; without the .maxntid directive: %d of %d spill-free", c2,
                 f2);
      free(bare);
    }
    CHECK(rc == 0 && fns == 2 && clean == 2,
          "ptxas -arch=%s (select=%s causal=%d): rc %d, %d functions, %d spill-free%s:\n%s", arch,
          select_name(s->select), s->causal, rc, fns, clean, hint, err);
    printf("ptxas -arch=%s, select=%s causal=%d, tile %dx%d: %d kernels, %d without spills%s\n",
           arch, select_name(s->select), s->causal, t.rows, t.warps, fns, clean, hint);
  }
  free(ptx);
  if (tm)
    LLVMDisposeTargetMachine(tm);
  if (mod)
    LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  ir_module_free(&m);
}

static void ptx_suite(void) {
  const char *ptxas = find_ptxas();
  if (!ptxas)
    printf("ptxas not found (/usr/local/cuda/bin or PATH): PTX is emitted but not assembled\n");
  Spec a = make_spec(64, 512, SEL_ROW_TOPK, false, 1);
  Spec b = make_spec(64, 512, SEL_NONE, true, 1);
  Spec c = make_spec(128, 256, SEL_HEAD_QUANTILE, false, 1);
  const Spec *specs[] = {&a, &b, &c};
  for (int i = 0; i < 3; i++) {
    ptxas_check(ptxas, specs[i], TARGET_SM90);
    ptxas_check(ptxas, specs[i], TARGET_SM80);
  }
}

/* ---- e) forward kernel -> backward kernels ---- */

/* The kernel's f32 score for a reference score of quantized inputs (see kernel_score). */
static float as_kernel_score(double s, int D) {
  if (!isfinite(s))
    return (float)s;
  double dot = nearbyint(s * sqrt((double)D) * 16) / 16;
  return (float)dot * (float)(1.0 / sqrt((double)D));
}

static void e2e_suite(const Spec *s) {
  char err[1024];
  Module m = {0};
  Jit *jit = NULL;
  TileConfig t = tile_resolve(s, TUNE_CPU);
  m.kernels[m.n++] = attention_fwd_build(s, &t);
  Kernel *fk = m.kernels[0];
  int rc = attention_bwd_build(s, &t, &m, err, sizeof err);
  for (int i = 0; !rc && i < m.n; i++)
    rc = ir_verify(m.kernels[i], err, sizeof err) || ir_simplify(m.kernels[i], err, sizeof err) ||
         ir_map(m.kernels[i], MAP_CPU, err, sizeof err) ||
         ir_simplify(m.kernels[i], err, sizeof err) || ir_verify(m.kernels[i], err, sizeof err);
  if (rc || !(jit = jit_compile(&m, err, sizeof err))) {
    CHECK(0, "forward + backward compile (%s): %s", select_name(s->select), err);
    ir_module_free(&m);
    return;
  }
  CpuKernelFn fwd = jit_lookup(jit, fk->name), bwd[2];
  CHECK(fwd, "lookup of the forward kernel");
  bool found = lookup_bwd(jit, &m, 1, bwd);
  for (int rep = 0; fwd && found && rep < 4; rep++) {
    Case c;
    int N = (int[]){1, 17, 40, 64}[rep];
    case_init(&c, s, 2, 2, N, rep % 2 == 0, true);
    c.sparsity = s->select == SEL_NONE ? 0.0 : (double[]){0.5, 0.8, 0.0, 0.95}[rep];
    c.dp = (AttnDropout){rep % 2 ? 0.1f : 0.0f, (uint32_t)(uniform() * 4e9), 11, 4};
    case_fill(&c);
    random_lengths(&c);
    case_reference(&c);   /* reference gradients; o, lse, tau below come from the kernel */
    int64_t G = (int64_t)c.l.B * c.l.H;
    float *tg = xcalloc((size_t)G, sizeof *tg), *ent = xcalloc((size_t)c.nrows, sizeof *ent);
    double *tgr = xcalloc((size_t)G, sizeof *tgr);
    int ng = attention_group_tau_ref(s, &c.l, c.q, c.k, c.lengths, c.sparsity, tgr);
    for (int g = 0; g < ng; g++)
      tg[g] = as_kernel_score(tgr[g], s->head_dim);
    int32_t *kept = xcalloc((size_t)c.nrows, sizeof *kept);
    for (int64_t x = 0; x < c.no; x++)
      c.o[x] = NAN;
    for (int64_t x = 0; x < c.nrows; x++)
      c.lse[x] = c.tau[x] = NAN;
    void *fp[ATTN_B] = {c.q, c.k, c.v, c.o, c.lengths, kept, c.lse, c.tau, ent, ent, tg};
    int32_t fi[9] = {c.l.B, c.l.H, c.l.N, (int32_t)c.l.qkv_sb, (int32_t)c.l.qkv_sn,
                     (int32_t)c.l.qkv_sh, (int32_t)c.l.o_sb, (int32_t)c.l.o_sn, (int32_t)c.l.o_sh};
    double sp = c.sparsity;
    int32_t ctr[4] = {(int32_t)c.dp.seed, (int32_t)c.dp.step, (int32_t)c.dp.layer, 0};
    void *fa[ATTN_NPARAMS];
    for (int i = 0; i < ATTN_B; i++)
      fa[i] = &fp[i];
    for (int i = 0; i < 9; i++)
      fa[ATTN_B + i] = &fi[i];
    fa[ATTN_SPARSITY] = &sp;
    fa[ATTN_DROPOUT] = &c.dp.p;
    fa[ATTN_SEED] = &ctr[0], fa[ATTN_STEP] = &ctr[1], fa[ATTN_LAYER] = &ctr[2];
    fa[ATTN_STATS] = &ctr[3];
    int32_t grid[3];
    ir_grid(fk, fa, grid);
    fwd(fa, grid, 0, (int64_t)grid[0] * grid[1] * grid[2]);
    case_poison(&c);
    BwdArgs a;
    bwd_args(&a, &c);
    run_bwd(bwd, &m, 1, &a);
    Err e[4];
    case_errors(&c, e);
    report(&c, "forward kernel -> backward kernels", e);
    free(tg);
    free(ent);
    free(tgr);
    free(kept);
    case_free(&c);
  }
  jit_free(jit);
  ir_module_free(&m);
}

/* ---- tile legality ---- */

static void tile_suite(void) {
  char err[256];
  Module m = {0};
  Spec s = make_spec(64, 8192, SEL_ROW_TOPK, false, 1);
  CHECK(attention_bwd_build(&s, &(TileConfig){8, 4, SCHED_WARP}, &m, err, sizeof err) == -1 &&
            strstr(err, "shared memory") && m.n == 0,
        "an oversized tile is refused (got \"%s\")", err);
  CHECK(attention_bwd_build(&s, &(TileConfig){6, 4, SCHED_WARP}, &m, err, sizeof err) == -1 &&
            strstr(err, "multiple of warps"), "rows not a multiple of warps is refused");
  /* the CPU tile schedule: groups of TILE_RT rows, one warp, no shared-memory limit */
  CHECK(attention_bwd_build(&s, &(TileConfig){6, 1, SCHED_TILE}, &m, err, sizeof err) == -1 &&
            strstr(err, "tile schedule") && m.n == 0, "tile schedule: rows 6 refused");
  CHECK(attention_bwd_build(&s, &(TileConfig){8, 2, SCHED_TILE}, &m, err, sizeof err) == -1 &&
            strstr(err, "warps 1") && m.n == 0, "tile schedule: 2 warps refused");
  CHECK(attention_bwd_build(&s, &(TileConfig){8, 1, SCHED_TILE}, &m, err, sizeof err) == -1 &&
            strstr(err, "stack") && m.n == 0, "tile schedule: 8192 keys need too big a frame");
  CHECK(tile_resolve(&s, TUNE_CPU).sched == SCHED_WARP, "tile = auto past the frame limit: "
        "the warp schedule");
  Spec small = make_spec(64, 512, SEL_ROW_TOPK, false, 1);
  CHECK(attention_bwd_build(&small, &(TileConfig){8, 1, SCHED_TILE}, &m, err, sizeof err) == 0 &&
            m.n == 1 && m.kernels[0]->warps == 1 && !strcmp(m.kernels[0]->name, "t_attn_bwd") &&
            m.kernels[0]->nparams == ATTN_BWD_NPARAMS,
        "tile schedule: one kernel, 1 warp, 512 keys");
  CHECK(tile_resolve(&small, TUNE_CPU).sched == SCHED_TILE, "tile = auto on the CPU: tiles");
  ir_module_free(&m);
  m = (Module){0};
  CHECK(attention_bwd_build(&s, &(TileConfig){16, 1, SCHED_WARP}, &m, err, sizeof err) == 0 && m.n == 2 &&
            strcmp(m.kernels[0]->name, "t_attn_bwd_dq") == 0 &&
            strcmp(m.kernels[1]->name, "t_attn_bwd_dkdv") == 0 &&
            m.kernels[0]->nparams == ATTN_BWD_NPARAMS &&
            m.kernels[1]->nparams == ATTN_BWD_NPARAMS,
        "two kernels with the documented parameter list");
  ir_module_free(&m);
}

int main(void) {
  const char *env = getenv("CRISP_SEED");
  rng = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock();
  printf("seed %llu (set CRISP_SEED to repeat)\n", (unsigned long long)rng);
  clock_t t0 = clock();
  fd_suite();
  CHECK(fd_nonzero > 1000, "finite differences: only %ld nonzero gradient entries", fd_nonzero);
  printf("a) finite differences: worst rel err %.3g over %ld nonzero entries (%.1f s)\n",
         worst_fd, fd_nonzero, (double)(clock() - t0) / CLOCKS_PER_SEC);
  t0 = clock();
  tile_suite();
  static const SelectKind sels[] = {SEL_NONE, SEL_ROW_TOPK, SEL_HEAD_QUANTILE,
                                    SEL_LAYER_QUANTILE};
  for (int si = 0; si < 4; si++) {
    host_suite((Spec[]){make_spec(64, 512, sels[si], false, 1)});
    host_suite((Spec[]){make_spec(32, 128, sels[si], true, si == 1 ? 3 : 1)});
  }
  host_suite((Spec[]){make_spec(8, 40, SEL_ROW_TOPK, true, 2)});
  printf("b) host JIT vs reference: worst norm-wise rel err %.3g, worst err vs term magnitude "
         "%.3g (%.1f s)\n", worst_rel, worst_term, (double)(clock() - t0) / CLOCKS_PER_SEC);
  worst_rel = worst_term = 0;
  t0 = clock();
  /* the warp schedule's tiles, then the CPU tile schedule (one group; two groups) */
  static const TileConfig tiles[] = {{1, 1, SCHED_WARP}, {4, 2, SCHED_WARP}, {6, 3, SCHED_WARP},
                                     {4, 1, SCHED_TILE}, {8, 1, SCHED_TILE}};
  for (int ti = 0; ti < 5; ti++)
    for (int si = 0; si < 4; si++)
      interp_suite((Spec[]){make_spec(si % 2 ? 16 : 8, 40, sels[si], (si + ti) % 2, 1)},
                   tiles[ti]);
  printf("c) interpreter, GPU mapping (5 tiles x 4 modes x 3 shapes): worst norm-wise rel err "
         "%.3g, vs terms %.3g (%.1f s)\n", worst_rel, worst_term,
         (double)(clock() - t0) / CLOCKS_PER_SEC);
  t0 = clock();
  worst_rel = worst_term = 0;
  for (int si = 0; si < 4; si++)
    e2e_suite((Spec[]){make_spec(32, 64, sels[si], si % 2, 1)});
  printf("e) forward kernel -> backward kernels: worst norm-wise rel err %.3g, vs terms %.3g "
         "(%.1f s)\n", worst_rel, worst_term, (double)(clock() - t0) / CLOCKS_PER_SEC);
  t0 = clock();
  ptx_suite();
  printf("d) PTX: %.1f s\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
  return check_summary();
}
