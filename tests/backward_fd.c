/* backward_fd.c: test_backward's suite a): the double reference backward against
 * central finite differences of the masked double forward (L = sum O * G, mask held
 * fixed), every selection mode, causal or not, dropout on and off, padding. Apart
 * because it checks the reference itself, which every other suite trusts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_SHARED
#include "backward_test.h"
#include "check.h"

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

void fd_suite(void) {
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
