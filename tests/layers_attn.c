/* layers_attn.c: the float attention reference against templates/' double ones.
 *
 * The model's C attention (every selection mode, dropout, padding) against the
 * double-precision forward and backward of templates/reference_bwd.h with the mask
 * held fixed, and its dense backward against finite differences. Separate because
 * this is where the sparse modes are checked: finite differences cannot cross the
 * threshold's kink. */
#include "attn_ref.h"
#include "compile.h"
#include "layers.h"
#include "layers_test.h"
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../templates/dropout.h"
#include "../templates/reference_bwd.h"

/* ---- attention: float reference vs the double references of templates/ ----------- */

typedef struct AttnCase {
  int B, H, N, D;
  SelectKind sel;
  double s;
  int keep_min;
  float p;
  bool quantized;   /* q, k multiples of 1/4: exact scores, so exact kept sets (and ties) */
} AttnCase;

static AttnLayout fused_layout(int B, int H, int N, int D) {
  int64_t C = (int64_t)H * D;
  return (AttnLayout){B, H, N, N * 3 * C, 3 * C, D, N * C, C, D};
}

/* max |x - ref| / max |ref| over the valid rows of a qkv- or o-strided tensor */
static double cmp_rows(const float *x, const double *ref, const AttnLayout *l, int D,
                       const int32_t *len, bool o_layout, bool all_rows) {
  double num = 0, den = 0;
  for (int b = 0; b < l->B; b++)
    for (int n = 0; n < l->N; n++) {
      if (!all_rows && n >= len[b])
        continue;
      for (int h = 0; h < l->H; h++)
        for (int d = 0; d < D; d++) {
          int64_t at = o_layout ? b * l->o_sb + n * l->o_sn + h * l->o_sh + d
                                : b * l->qkv_sb + n * l->qkv_sn + h * l->qkv_sh + d;
          num = fmax(num, fabs(x[at] - ref[at]));
          den = fmax(den, fabs(ref[at]));
        }
    }
  /* a gradient that is zero in exact arithmetic (one key: dS = P (dP - Delta) = 0)
   * is rounding noise on both sides: compare it absolutely, against 1e-3 */
  return num / fmax(den, 1e-3);
}

static void attn_case(const AttnCase *t, int *fails) {
  int B = t->B, H = t->H, N = t->N, D = t->D, C = H * D;
  AttnLayout l = fused_layout(B, H, N, D);
  size_t nq = (size_t)B * N * 3 * C, no = (size_t)B * N * C, nr = (size_t)B * H * N;
  float *qkv = fnew(nq), *o = fnew(no), *dout = fnew(no), *dqkv = fnew(nq);
  float *lse = fnew(nr), *tau = fnew(nr), *ent = fnew(nr), *dent = fnew(nr), *delta = fnew(nr);
  int32_t *kept = calloc(nr, sizeof *kept), *rkept = calloc(nr, sizeof *rkept);
  int32_t len[8];
  for (int b = 0; b < B; b++)
    len[b] = b == 0 ? N : b == 1 ? 1 : 1 + (int)(rnd() % (uint64_t)N);
  for (size_t i = 0; i < nq; i++)
    qkv[i] = t->quantized && (i % (3 * (size_t)C)) < 2 * (size_t)C
                 ? (float)((int)(rnd() % 9) - 4) / 4.0f
                 : qrand(1.5);
  fill(dout, no, 1);
  AttnRefArgs a = {t->sel, t->s, t->keep_min, t->p, 3, 5, 1};
  void *ws = malloc(attn_ref_workspace_bytes(N, D));
  attn_ref_forward(&l, D, &a, qkv, qkv + C, qkv + 2 * C, len, o, lse, tau, kept, ent, dent, ws);
  attn_ref_backward(&l, D, &a, qkv, qkv + C, qkv + 2 * C, o, dout, len, lse, tau, dqkv,
                    dqkv + C, dqkv + 2 * C, delta, ws);
  Spec sp;
  spec_defaults(&sp);
  sp.head_dim = D, sp.max_seq = N, sp.select = t->sel, sp.keep_min = t->keep_min;
  double *ro = calloc(no, sizeof *ro), *rlse = calloc(nr, sizeof *rlse),
         *rtau = calloc(nr, sizeof *rtau), *rent = calloc(nr, sizeof *rent),
         *rdent = calloc(nr, sizeof *rdent);
  AttnFwdArgs fa = {.sparsity = t->s, .dropout = t->p, .seed = 3, .step = 5, .layer = 1};
  AttnFwdOut fo = {.o = ro, .lse = rlse, .tau = rtau, .entropy = rent, .dense_entropy = rdent,
                   .kept = rkept};
  attention_fwd_full_ref(&sp, &l, qkv, qkv + C, qkv + 2 * C, len, &fa, &fo);
  double *rq = calloc(nq, sizeof *rq), *rdelta = calloc(nr, sizeof *rdelta);
  AttnDropout dp = {t->p, 3, 5, 1};
  AttnBwdRef br = {.delta = rdelta, .dq = rq, .dk = rq + C, .dv = rq + 2 * C};
  attention_bwd_ref(&sp, &l, qkv, qkv + C, qkv + 2 * C, dout, len, t->s, &dp, &br);
  /* per-row outputs */
  size_t kept_bad = 0, tau_bad = 0;
  double lse_e = 0, ent_e = 0, dent_e = 0, delta_e = 0;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < N; i++) {
        size_t r = ((size_t)b * H + h) * N + i;
        kept_bad += kept[r] != rkept[r];
        /* the kernels' score is f32(dot) * f32(1/sqrt(D)), the double reference's
         * dot / sqrt(D): the same order, values within an ulp or two */
        tau_bad += !(tau[r] == rtau[r] || fabs(tau[r] - rtau[r]) <= 1e-6 * fabs(rtau[r]));
        lse_e = fmax(lse_e, fabs(lse[r] - rlse[r]) / fmax(1, fabs(rlse[r])));
        ent_e = fmax(ent_e, fabs(ent[r] - rent[r]));
        dent_e = fmax(dent_e, fabs(dent[r] - rdent[r]));
        delta_e = fmax(delta_e, fabs(delta[r] - rdelta[r]) / fmax(1, fabs(rdelta[r])));
      }
  double eo = cmp_rows(o, ro, &l, D, len, true, true);
  double eq = cmp_rows(dqkv, rq, &l, D, len, false, true);
  double ek = cmp_rows(dqkv + C, rq + C, &l, D, len, false, true);
  double ev = cmp_rows(dqkv + 2 * C, rq + 2 * C, &l, D, len, false, true);
  bool good = kept_bad == 0 && (!t->quantized || tau_bad == 0) && lse_e < 1e-5 &&
              ent_e < 1e-5 && dent_e < 1e-5 && delta_e < 1e-5 && eo < 1e-5 && eq < 1e-5 && ek < 1e-5 &&
              ev < 1e-5;
  if (!good || getenv("CRISP_VERBOSE"))
    printf("attention %-14s s %.2f keep_min %d p %.1f B %d H %d N %2d D %2d%s: o %.1e dq %.1e "
           "dk %.1e dv %.1e lse %.1e entropy %.1e dense %.1e delta %.1e, kept/tau mismatches "
           "%zu/%zu\n", select_name(t->sel), t->s, t->keep_min, (double)t->p, B, H, N, D,
           t->quantized ? " (ties)" : "", eo, eq, ek, ev, lse_e, ent_e, dent_e, delta_e,
           kept_bad, tau_bad);
  CHECK(good, "attention reference vs templates' double reference (%s, s %.2f)",
        select_name(t->sel), t->s);
  *fails += !good;
  /* padding invariance: the same valid data at N + 3 gives the same numbers */
  int N2 = N + 3;
  AttnLayout l2 = fused_layout(B, H, N2, D);
  float *qkv2 = fnew((size_t)B * N2 * 3 * C), *o2 = fnew((size_t)B * N2 * C);
  float *lse2 = fnew((size_t)B * H * N2), *tau2 = fnew((size_t)B * H * N2);
  for (int b = 0; b < B; b++)
    memcpy(qkv2 + (size_t)b * N2 * 3 * C, qkv + (size_t)b * N * 3 * C, (size_t)N * 3 * C * 4);
  void *ws2 = malloc(attn_ref_workspace_bytes(N2, D));
  attn_ref_forward(&l2, D, &a, qkv2, qkv2 + C, qkv2 + 2 * C, len, o2, lse2, tau2, NULL, NULL,
                   NULL, ws2);
  size_t pad_diff = 0;
  for (int b = 0; b < B; b++)
    pad_diff += memcmp(o2 + (size_t)b * N2 * C, o + (size_t)b * N * C, (size_t)N * C * 4) != 0;
  CHECK(pad_diff == 0, "attention: output depends on the padded length (%s)", select_name(t->sel));
  free(qkv2), free(o2), free(lse2), free(tau2), free(ws2);
  free(qkv), free(o), free(dout), free(dqkv), free(lse), free(tau), free(ent), free(dent), free(delta);
  free(kept), free(rkept), free(ws), free(ro), free(rlse), free(rtau), free(rent), free(rdent), free(rq);
  free(rdelta);
}

typedef struct AttnFdCtx {
  AttnLayout l;
  int D, C;
  AttnRefArgs a;
  float *qkv, *o, *lse, *tau, *w;
  int32_t *len;
  void *ws;
} AttnFdCtx;

static double attn_loss(void *p) {
  AttnFdCtx *c = p;
  attn_ref_forward(&c->l, c->D, &c->a, c->qkv, c->qkv + c->C, c->qkv + 2 * c->C, c->len, c->o,
                   c->lse, c->tau, NULL, NULL, NULL, c->ws);
  return dot_w(c->o, c->w, (size_t)c->l.B * c->l.N * c->C);
}

/* Dense attention (with and without dropout) against finite differences. */
void test_attention_fd(void) {
  for (int drop = 0; drop < 2; drop++) {
    int B = 2, H = 2, N = 5, D = 4, C = H * D;
    AttnFdCtx c = {fused_layout(B, H, N, D), D, C, {SEL_NONE, 0, 1, drop ? 0.25f : 0, 9, 2, 0},
                   NULL, NULL, NULL, NULL, NULL, (int32_t[]){5, 3}, NULL};
    size_t nq = (size_t)B * N * 3 * C, no = (size_t)B * N * C, nr = (size_t)B * H * N;
    c.qkv = fnew(nq), c.o = fnew(no), c.lse = fnew(nr), c.tau = fnew(nr), c.w = fnew(no);
    c.ws = malloc(attn_ref_workspace_bytes(N, D));
    fill(c.qkv, nq, 1.5), fill(c.w, no, 1);
    attn_loss(&c);
    float *dqkv = fnew(nq), *delta = fnew(nr);
    attn_ref_backward(&c.l, D, &c.a, c.qkv, c.qkv + C, c.qkv + 2 * C, c.o, c.w, c.len, c.lse,
                      c.tau, dqkv, dqkv + C, dqkv + 2 * C, delta, c.ws);
    double e = fd_err(attn_loss, &c, c.qkv, dqkv, nq, 0x1p-6f, 0);
    printf("attention (dense%s): dqkv vs FD %.2e\n", drop ? ", dropout 0.25" : "", e);
    CHECK(e < TOL_LAYER, "attention backward vs FD: %.3e", e);
    free(c.qkv), free(c.o), free(c.lse), free(c.tau), free(c.w), free(c.ws), free(dqkv),
        free(delta);
  }
}

void test_attention_ref(void) {
  SelectKind sels[] = {SEL_NONE, SEL_ROW_TOPK, SEL_HEAD_QUANTILE, SEL_LAYER_QUANTILE};
  double ss[] = {0.0, 0.5, 0.8, 0.97};
  int fails = 0, cases = 0;
  for (int si = 0; si < 4; si++)
    for (int k = 0; k < 4; k++)
      for (int q = 0; q < 2; q++) {
        AttnCase t = {3, 2, k == 3 ? 1 : 5 + 4 * k, k == 2 ? 16 : 8, sels[si], ss[k],
                      k == 1 ? 3 : 1, q ? 0.0f : 0.2f, q == 1};
        attn_case(&t, &fails);
        cases++;
      }
  printf("attention reference vs templates/ (double): %d cases, %d bad\n", cases, fails);
  /* the k-th largest with repeats */
  float x[] = {3, 1, 3, 2, 3, -1, 2}, tmp[7];
  CHECK(attn_ref_kth_largest(x, 7, 1, tmp) == 3 && attn_ref_kth_largest(x, 7, 3, tmp) == 3 &&
        attn_ref_kth_largest(x, 7, 4, tmp) == 2 && attn_ref_kth_largest(x, 7, 6, tmp) == 1 &&
        attn_ref_kth_largest(x, 7, 7, tmp) == -1, "kth_largest with repeats");
}

