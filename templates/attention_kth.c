/* The exact k-th largest score of a row (row_topk's threshold, the quantile modes'
 * floor), see attention_common.h. Why not plain bisection on the key's 32 bits: a row
 * of 512 random scores needed ~16 counting passes before exactly k scores were >= the
 * prefix, most of them spent on the sign and exponent bits, which a value-space
 * guess gets in one step. Here the key interval [klo, khi) is narrowed instead:
 *   invariant: #{S_j >= f(klo)} = clo >= k > chi = #{S_j >= f(khi)}  (f = from key),
 *   start: klo = key(-inf), khi = key(max S + 0) + 1 (clo = m, chi = 0);
 *   a step counts at one key strictly inside and moves an end there.
 * Any probe inside the interval keeps the invariant, so a poor guess (NaN, overflow)
 * costs a pass, never a wrong tau: the guesses only decide how many passes a row
 * takes. They work on the count's logit g(c) = log2((c + 1/2) / (m - c + 1/2)), which
 * a bell-shaped row makes roughly linear in the score (tails included, where the
 * count itself is convex and plain regula falsi crawls in from one side), aiming at
 * c = k - 1/2, between the two stopping counts k and k - 1:
 *   first probe: mean + (g(m/2) - g(k - 1/2)) * slope from SAMPLES strided scores,
 *   slope = their standard deviation * ln 2 / 1.702 (the logistic that matches a
 *   normal): no pass for the row's min, which the first probe used to need;
 *   while klo is still -inf: the same slope from the point (f(khi), chi);
 *   then regula falsi in g between the ends, Illinois-modified (the g of an end kept
 *   twice in a row is halved);
 *   after INTERP_STEPS probes, key midpoints: at most INTERP_STEPS + 32 probes
 *   whatever the data (ties: the interval closes to khi = klo + 1 around the value).
 * Stops: count k at klo (tau = min{S_j >= f(klo)}, one pass); count k - 1 at khi
 * (tau = max{S_j : !(S_j >= f(khi))}, one pass, then a count at tau, which ties may
 * push above k); khi = klo + 1 (tau = f(klo)). Each gives the largest key whose float
 * has >= k scores at or above it, i.e. the k-th largest, -0 as +0: the bits the
 * 32-bit bisection gave, which tests/test_kth.c and tests/test_attention.c compare
 * exactly. */
#include "attention_common.h"

#include <math.h>

#define i32 attn_i32
#define add attn_add

/* Probes guessed before the midpoints take over, and scores sampled for the first.
 * Random rows of 128 and 512 take ~4.8 and ~5.7 passes, against ~7.2 and ~8.2 for
 * the min-max regula falsi before (docs/kernels.md); rows with ties need the
 * midpoints. */
enum { INTERP_STEPS = 12, SAMPLES = 16 };
/* Every row closes within STEPS steps (32 midpoints halve any key interval to 1);
 * the loop runs them in CHUNKs of steps (attn_rows_kth_count). */
enum { STEPS = INTERP_STEPS + 32, CHUNK = 4 };
_Static_assert(STEPS % CHUNK == 0, "whole chunks");

static Op *row_at(Builder *b, const AttnRow *r, Op *j) {
  return ir_load(b, r->buf, add(b, r->base, j));
}

static Op *f32c(Builder *b, double v) { return ir_const_f32(b, v); }
static Op *sub(Builder *b, Op *x, Op *y) { return ir_bin(b, OP_SUB, x, y); }
#define mul attn_mul

/* The smallest S_j >= t (above: +inf's key, i.e. NaN, when none is), or the largest
 * S_j that is not >= t (so all of them when t is NaN): one min or max pass over the
 * row's signed keys, the other side's scores replaced by the reduction's identity. */
static Op *row_bound(Builder *b, const AttnRow *r, Op *t, bool above) {
  Builder body;
  Op *red = ir_reduce(b, AXIS_LANE, above ? RED_MIN : RED_MAX, TY_I32, r->m, "j", &body);
  Op *x = row_at(&body, r, red->index);
  Op *key = attn_signed_key(&body, x);
  Op *none = i32(&body, above ? INT32_MAX : INT32_MIN);
  ir_yield(&body, ir_select(&body, ir_cmp(&body, CMP_GE, x, t), above ? key : none,
                            above ? none : key));
  return attn_from_signed_key(b, red);
}

static Op *row_min_ge(Builder *b, const AttnRow *r, Op *lo) { return row_bound(b, r, lo, true); }

static Op *row_max_below(Builder *b, const AttnRow *r, Op *hi) {
  return row_bound(b, r, hi, false);
}

/* The sums over the samples of d_i and d_i^2, d_i = S_(i m / SAMPLES) - S_0 (the
 * shift keeps the f32 variance clear of cancellation on rows far from 0). A warp
 * searching one row (the GPU's schedule) has a lane load each sample and reduces; the
 * CPU tile's interleaved rows sum them as straight-line trees, since there two reduce
 * loops cost ~10 ns more per row of 128 (bench_kth), their setup more than their 16
 * elements, while on the GPU the trees' 32 live values cost 14 registers (ptxas). */
static Op *sample_reduce(Builder *b, const AttnRow *r, Op *x0, int pw) {
  Builder body;
  Op *red = ir_reduce(b, AXIS_LANE, RED_ADD, TY_F32, i32(b, SAMPLES), "i", &body);
  Op *j = ir_bin(&body, OP_SHR, attn_mul(&body, red->index, r->m), i32(&body, 4));
  Op *d = sub(&body, row_at(&body, r, j), x0);
  ir_yield(&body, pw == 2 ? mul(&body, d, d) : d);
  return red;
}

static void sample_sums(Builder *b, const AttnRow *r, Op *x0, bool tree, Op **s1, Op **s2) {
  if (!tree) {
    *s1 = sample_reduce(b, r, x0, 1), *s2 = sample_reduce(b, r, x0, 2);
    return;
  }
  Op *d[SAMPLES], *d2[SAMPLES];
  for (int i = 0; i < SAMPLES; i++) {
    Op *j = ir_bin(b, OP_SHR, attn_mul(b, i32(b, i), r->m), i32(b, 4));
    d[i] = sub(b, row_at(b, r, j), x0);
    d2[i] = mul(b, d[i], d[i]);
  }
  for (int w = SAMPLES / 2; w >= 1; w /= 2)
    for (int i = 0; i < w; i++) {
      d[i] = ir_bin(b, OP_ADD, d[i], d[i + w]);
      d2[i] = ir_bin(b, OP_ADD, d2[i], d2[i + w]);
    }
  *s1 = d[0], *s2 = d2[0];
}
_Static_assert(SAMPLES == 16, "the sample index divides by SAMPLES with a shift by 4");

/* log2(x) within 0.09, for x > 0 normal: the float's bits read as a fixed-point
 * exponent.mantissa. The guesses need a monotone log, not an exact one, and this is
 * four instructions where a log is a polynomial (or a call) per step. */
static Op *rough_log2(Builder *b, Op *x) {
  Op *bits = ir_cast(b, TY_F32, ir_bitcast(b, TY_I32, x));
  return sub(b, mul(b, bits, f32c(b, 1.0 / (1 << 23))), f32c(b, 127));
}

/* g(c) = log2((c + 1/2) / (m - c + 1/2)), roughly (c, mf: f32 count and m). */
static Op *count_logit(Builder *b, Op *c, Op *mf) {
  Op *h = f32c(b, 0.5);
  return sub(b, rough_log2(b, ir_bin(b, OP_ADD, c, h)),
             rough_log2(b, ir_bin(b, OP_ADD, sub(b, mf, c), h)));
}

/* The search's state for one row, as vars. */
typedef struct {
  Op *sel;                  /* k < m: a search at all */
  Op *klo, *khi, *clo, *chi;
  Op *glo, *ghi;            /* f32: g(count) - g(k - 1/2) at the ends, Illinois-halved */
  Op *last;                 /* i32: 1 when klo moved last, -1 khi, 0 neither */
  Op *gw;                   /* f32: g(k - 1/2), the target */
  Op *slope, *first;        /* f32: score per unit of g; the first probe */
  Op *tau, *count;          /* the result */
} Search;

static Op *fvar(Builder *b, const char *hint) { return ir_var(b, f32c(b, 0), hint); }

/* slope = sd * ln 2 / 1.702 (g is in log2 units) and first = mean - g(k - 1/2) * slope
 * (g(m/2) = 0), from the samples. */
static void sample_guess(Builder *b, const AttnRow *r, const Search *q, bool tree) {
  Op *x0 = row_at(b, r, i32(b, 0));
  Op *s1, *s2;
  sample_sums(b, r, x0, tree, &s1, &s2);
  Op *var = mul(b, sub(b, s2, mul(b, s1, mul(b, s1, f32c(b, 1.0 / SAMPLES)))),
                f32c(b, 1.0 / (SAMPLES - 1)));
  Op *sd = ir_un(b, OP_SQRT, ir_bin(b, OP_MAX, var, f32c(b, 0)));
  Op *slope = mul(b, sd, f32c(b, M_LN2 / 1.702));
  Op *mean = ir_bin(b, OP_ADD, x0, mul(b, s1, f32c(b, 1.0 / SAMPLES)));
  ir_set(b, q->slope, slope);
  ir_set(b, q->first, sub(b, mean, mul(b, ir_get(b, q->gw), slope)));
}

static void search_start(Builder *b, const AttnRow *r, Op *k, Op *mx, bool tree, Search *q) {
  Builder sel;
  q->sel = ir_cmp(b, CMP_LT, k, r->m);
  q->klo = ir_var(b, i32(b, 0), "klo");
  q->khi = ir_var(b, i32(b, 0), "khi");   /* gap 0: closed, no probes */
  q->clo = ir_var(b, r->m, "clo");
  q->chi = ir_var(b, i32(b, 0), "chi");
  q->glo = fvar(b, "glo"), q->ghi = fvar(b, "ghi");
  q->last = ir_var(b, i32(b, 0), "last");
  q->gw = fvar(b, "gw"), q->slope = fvar(b, "slope"), q->first = fvar(b, "first");
  ir_if(b, q->sel, &sel, NULL);
  Op *hi = ir_bin(&sel, OP_ADD, mx ? mx : attn_row_max(&sel, r), f32c(&sel, 0));
  ir_set(&sel, q->klo, attn_order_key(&sel, f32c(&sel, -INFINITY)));
  ir_set(&sel, q->khi, add(&sel, attn_order_key(&sel, hi), i32(&sel, 1)));
  Op *mf = ir_cast(&sel, TY_F32, r->m);
  Op *gw = count_logit(&sel, sub(&sel, ir_cast(&sel, TY_F32, k), f32c(&sel, 0.5)), mf);
  ir_set(&sel, q->gw, gw);
  ir_set(&sel, q->glo, sub(&sel, count_logit(&sel, mf, mf), gw));
  ir_set(&sel, q->ghi, sub(&sel, count_logit(&sel, f32c(&sel, 0), mf), gw));
  sample_guess(&sel, r, q, tree);
}

/* The guessed probe (see the header), clamped to klo + 1 .. khi - 1 (khi - klo >= 2). */
static Op *guess(Builder *b, const Search *q, Op *klo, Op *khi, Op *step) {
  Op *glo = ir_get(b, q->glo), *ghi = ir_get(b, q->ghi), *xhi = attn_from_order_key(b, khi);
  Op *vlo = attn_from_order_key(b, klo), *vhi = xhi;
  Op *frac = ir_bin(b, OP_DIV, glo, sub(b, glo, ghi));
  Op *t = ir_bin(b, OP_ADD, vlo, ir_bin(b, OP_MUL, ir_bin(b, OP_SUB, vhi, vlo), frac));
  Op *down = ir_bin(b, OP_ADD, xhi, mul(b, ghi, ir_get(b, q->slope)));
  Op *ts = ir_select(b, ir_cmp(b, CMP_EQ, step, i32(b, 0)), ir_get(b, q->first), down);
  Op *open_lo = ir_cmp(b, CMP_EQ, klo, attn_order_key(b, f32c(b, -INFINITY)));
  Op *kc = attn_order_key(b, ir_select(b, open_lo, ts, t));
  Op *lo1 = add(b, klo, i32(b, 1)), *hi1 = ir_bin(b, OP_SUB, khi, i32(b, 1));
  kc = ir_select(b, ir_cmp(b, CMP_ULT, kc, lo1), lo1, kc);
  return ir_select(b, ir_cmp(b, CMP_UGE, kc, khi), hi1, kc);
}

/* The ends' new g after a count: the moved end gets the count's, the kept end is
 * halved when it was kept the step before too (Illinois). */
static void move_weights(Builder *b, const AttnRow *r, const Search *q, Op *up, Op *c) {
  Op *g = count_logit(b, ir_cast(b, TY_F32, c), ir_cast(b, TY_F32, r->m));
  g = sub(b, g, ir_get(b, q->gw));
  Op *glo = ir_get(b, q->glo), *ghi = ir_get(b, q->ghi), *last = ir_get(b, q->last);
  Op *half = f32c(b, 0.5);
  Op *glo_kept = ir_select(b, ir_cmp(b, CMP_EQ, last, i32(b, -1)), mul(b, glo, half), glo);
  Op *ghi_kept = ir_select(b, ir_cmp(b, CMP_EQ, last, i32(b, 1)), mul(b, ghi, half), ghi);
  ir_set(b, q->glo, ir_select(b, up, g, glo_kept));
  ir_set(b, q->ghi, ir_select(b, up, ghi_kept, g));
  ir_set(b, q->last, ir_select(b, up, i32(b, 1), i32(b, -1)));
}

/* The interval still open: not closed (khi - klo >= 2), no stop reached. */
static Op *search_open(Builder *b, Op *k, const Search *q) {
  Op *gap = ir_bin(b, OP_SUB, ir_get(b, q->khi), ir_get(b, q->klo));
  Op *open = ir_bin(b, OP_AND, ir_cmp(b, CMP_NE, ir_get(b, q->clo), k),
                    ir_cmp(b, CMP_UGE, gap, i32(b, 2)));
  Op *kmin1 = ir_bin(b, OP_SUB, k, i32(b, 1));
  return ir_bin(b, OP_AND, open, ir_cmp(b, CMP_NE, ir_get(b, q->chi), kmin1));
}

/* One step of the search (step: the loop index), a counting pass when the interval
 * is still open; the ends move by selects (which end moves is a coin flip that a
 * branch would mispredict). */
static void search_step(Builder *b, const AttnRow *r, Op *k, const Search *q, Op *step) {
  Builder go;
  ir_if(b, search_open(b, k, q), &go, NULL);
  Op *lo = ir_get(&go, q->klo), *hk = ir_get(&go, q->khi), *clo = ir_get(&go, q->clo);
  Op *gap = ir_bin(&go, OP_SUB, hk, lo);
  Op *mid = add(&go, lo, ir_bin(&go, OP_SHR, gap, i32(&go, 1)));
  Op *early = ir_cmp(&go, CMP_LT, step, i32(&go, INTERP_STEPS));
  Op *probe = ir_select(&go, early, guess(&go, q, lo, hk, step), mid);
  Op *c = attn_row_count_ge(&go, r, attn_from_order_key(&go, probe));
  Op *up = ir_cmp(&go, CMP_GE, c, k);
  move_weights(&go, r, q, up, c);
  ir_set(&go, q->klo, ir_select(&go, up, probe, lo));
  ir_set(&go, q->clo, ir_select(&go, up, c, clo));
  ir_set(&go, q->khi, ir_select(&go, up, hk, probe));
  ir_set(&go, q->chi, ir_select(&go, up, ir_get(&go, q->chi), c));
}

/* tau and its count from a finished search: exactly k at klo -> the smallest score
 * there (count k); k - 1 at khi, the interval open -> the largest score below and
 * its count; closed -> f(klo) (count clo); no search -> -inf (count m). + 0: -0
 * becomes +0, as the bit bisection gave. */
static void search_tau(Builder *b, const AttnRow *r, Op *k, Search *q) {
  q->tau = ir_var(b, f32c(b, -INFINITY), "kth");
  q->count = ir_var(b, ir_get(b, q->clo), "kept");
  Builder sel, exact, other, below, closed;
  ir_if(b, q->sel, &sel, NULL);
  Op *t = attn_from_order_key(&sel, ir_get(&sel, q->klo));
  ir_if(&sel, ir_cmp(&sel, CMP_EQ, ir_get(&sel, q->clo), k), &exact, &other);
  ir_set(&exact, q->tau, ir_bin(&exact, OP_ADD, row_min_ge(&exact, r, t), f32c(&exact, 0)));
  Op *gap = ir_bin(&other, OP_SUB, ir_get(&other, q->khi), ir_get(&other, q->klo));
  ir_if(&other, ir_cmp(&other, CMP_UGE, gap, i32(&other, 2)), &below, &closed);
  Op *xhi = attn_from_order_key(&below, ir_get(&below, q->khi));
  Op *a = ir_bin(&below, OP_ADD, row_max_below(&below, r, xhi), f32c(&below, 0));
  ir_set(&below, q->tau, a);
  ir_set(&below, q->count, attn_row_count_ge(&below, r, a));
  ir_set(&closed, q->tau, t);
}

void attn_rows_kth_count(Builder *b, const AttnRow rows[], int n, Op *const k[],
                         Op *const mx[], Op *tau[], Op *count[]) {
  Search q[ATTN_KTH_ROWS] = {{0}};
  for (int r = 0; r < n; r++)
    search_start(b, &rows[r], k[r], mx ? mx[r] : NULL, n > 1, &q[r]);
  /* steps in chunks, each entered only while some row is open: the IR has no break,
   * and checking every row at each of 44 steps cost ~4 ns per row of 128 (bench_kth).
   * The chunks only where some row searches at all: at s = 0 (k = m) the 11 checks of
   * 4 rows' state were ~3% of the tile forward's samples at n = 64. */
  Builder some, chunk, any, steps;
  Op *sel = q[0].sel;
  for (int r = 1; r < n; r++)
    sel = ir_bin(b, OP_OR, sel, q[r].sel);
  ir_if(b, sel, &some, NULL);
  Op *c = ir_for(&some, i32(&some, 0), i32(&some, STEPS / CHUNK), 1, "chunk", &chunk)->index;
  Op *open = search_open(&chunk, k[0], &q[0]);
  for (int r = 1; r < n; r++)
    open = ir_bin(&chunk, OP_OR, open, search_open(&chunk, k[r], &q[r]));
  ir_if(&chunk, open, &any, NULL);
  Op *i = ir_for(&any, i32(&any, 0), i32(&any, CHUNK), 1, "step", &steps)->index;
  Op *step = add(&steps, mul(&steps, c, i32(&steps, CHUNK)), i);
  for (int r = 0; r < n; r++)
    search_step(&steps, &rows[r], k[r], &q[r], step);
  for (int r = 0; r < n; r++) {
    search_tau(b, &rows[r], k[r], &q[r]);
    tau[r] = ir_get(b, q[r].tau);
    count[r] = ir_get(b, q[r].count);
  }
}

Op *attn_row_kth_count(Builder *b, const AttnRow *r, Op *k, Op **count) {
  Op *tau, *cnt;
  attn_rows_kth_count(b, r, 1, &k, NULL, &tau, &cnt);
  if (count)
    *count = cnt;
  return tau;
}

Op *attn_row_kth_largest(Builder *b, const AttnRow *r, Op *k) {
  return attn_row_kth_count(b, r, k, NULL);
}
