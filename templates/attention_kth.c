/* The exact k-th largest score of a row (row_topk's threshold, the quantile modes'
 * floor), see attention_common.h. Why not plain bisection on the key's 32 bits: a row
 * of 512 random scores needed ~16 counting passes before exactly k scores were >= the
 * prefix, most of them spent on the sign and exponent bits, which a value-space
 * guess gets in one step. Here the key interval [klo, khi) is narrowed instead:
 *   invariant: #{S_j >= f(klo)} = clo >= k > chi = #{S_j >= f(khi)}  (f = from key),
 *   start: klo = key(min S), khi = key(max S + 0) + 1 (clo = m, chi = 0);
 *   a step counts at one key strictly inside and moves an end there;
 * the first INTERP_STEPS steps probe where the straight line through (f(klo), clo)
 * and (f(khi), chi) reaches k + 1/2 (regula falsi on the count, aiming at the middle
 * of the gap between the k-th and (k+1)-th largest), the later ones the key midpoint,
 * so the answer is reached in at most INTERP_STEPS + 32 passes whatever the data (ties:
 * the interval closes to khi = klo + 1 around the tied value). Any probe inside the
 * interval keeps the invariant, so a poor guess (NaN, overflow) costs a pass, never
 * a wrong tau. Stops: count == k at klo (tau = min{S_j >= f(klo)} + 0, one pass) or
 * khi = klo + 1 (tau = f(klo)). Both are the largest key whose float has >= k
 * scores at or above it, i.e. the k-th largest, -0 as +0: the bits the 32-bit
 * bisection gave, which tests/test_attention.c compares exactly. */
#include "attention_common.h"

#include <math.h>

#define i32 attn_i32
#define add attn_add

/* Steps guessed by interpolation before the midpoints take over: random rows of
 * 128 and 512 stop after ~6 probes, ~9 passes with min, max and the final min
 * (docs/kernels.md); rows with a few outlying scores need more, ties the midpoints. */
enum { INTERP_STEPS = 8 };

static Op *row_at(Builder *b, const AttnRow *r, Op *j) {
  return ir_load(b, r->buf, add(b, r->base, j));
}

/* The smallest S_j >= lo (+inf's key, i.e. NaN, when none is). */
static Op *row_min_ge(Builder *b, const AttnRow *r, Op *lo) {
  Builder body;
  Op *red = ir_reduce(b, AXIS_LANE, RED_MIN, TY_I32, r->m, "j", &body);
  Op *x = row_at(&body, r, red->index);
  ir_yield(&body, ir_select(&body, ir_cmp(&body, CMP_GE, x, lo), attn_signed_key(&body, x),
                            attn_i32(&body, INT32_MAX)));
  return attn_from_signed_key(b, red);
}

static Op *row_min(Builder *b, const AttnRow *r) {
  return row_min_ge(b, r, ir_const_f32(b, -INFINITY));
}

static Op *f64(Builder *b, Op *x) { return ir_cast(b, TY_F64, x); }

/* The interpolated probe, clamped to klo + 1 .. khi - 1 (khi - klo >= 2). */
static Op *guess(Builder *b, Op *klo, Op *khi, Op *clo, Op *chi, Op *k) {
  Op *vlo = f64(b, attn_from_order_key(b, klo)), *vhi = f64(b, attn_from_order_key(b, khi));
  Op *want = ir_bin(b, OP_ADD, f64(b, k), ir_const_f64(b, 0.5));
  Op *frac = ir_bin(b, OP_DIV, ir_bin(b, OP_SUB, f64(b, clo), want),
                    f64(b, ir_bin(b, OP_SUB, clo, chi)));
  Op *t = ir_bin(b, OP_ADD, vlo, ir_bin(b, OP_MUL, ir_bin(b, OP_SUB, vhi, vlo), frac));
  Op *kc = attn_order_key(b, ir_cast(b, TY_F32, t));
  Op *lo1 = add(b, klo, i32(b, 1)), *hi1 = ir_bin(b, OP_SUB, khi, i32(b, 1));
  kc = ir_select(b, ir_cmp(b, CMP_ULT, kc, lo1), lo1, kc);
  return ir_select(b, ir_cmp(b, CMP_UGE, kc, khi), hi1, kc);
}

/* The search's state for one row, as vars. */
typedef struct {
  Op *sel;                  /* k < m: a search at all */
  Op *klo, *khi, *clo, *chi;
} Search;

static void search_start(Builder *b, const AttnRow *r, Op *k, Op *mx, Search *q) {
  Builder sel;
  q->sel = ir_cmp(b, CMP_LT, k, r->m);
  q->klo = ir_var(b, i32(b, 0), "klo");
  q->khi = ir_var(b, i32(b, 0), "khi");   /* gap 0: closed, no probes */
  q->clo = ir_var(b, r->m, "clo");
  q->chi = ir_var(b, i32(b, 0), "chi");
  ir_if(b, q->sel, &sel, NULL);
  Op *hi = ir_bin(&sel, OP_ADD, mx ? mx : attn_row_max(&sel, r), ir_const_f32(&sel, 0));
  ir_set(&sel, q->klo, attn_order_key(&sel, row_min(&sel, r)));
  ir_set(&sel, q->khi, add(&sel, attn_order_key(&sel, hi), i32(&sel, 1)));
}

/* One step of the search (step: the loop index), a counting pass when the interval
 * is still open; the ends move by selects (which end moves is a coin flip that a
 * branch would mispredict). */
static void search_step(Builder *b, const AttnRow *r, Op *k, const Search *q, Op *step) {
  Builder go;
  Op *lo = ir_get(b, q->klo), *hk = ir_get(b, q->khi), *clo = ir_get(b, q->clo);
  Op *gap = ir_bin(b, OP_SUB, hk, lo);
  Op *open = ir_bin(b, OP_AND, ir_cmp(b, CMP_NE, clo, k), ir_cmp(b, CMP_UGE, gap, i32(b, 2)));
  ir_if(b, open, &go, NULL);
  Op *mid = add(&go, lo, ir_bin(&go, OP_SHR, gap, i32(&go, 1)));
  Op *early = ir_cmp(&go, CMP_LT, step, i32(&go, INTERP_STEPS));
  Op *probe = ir_select(&go, early, guess(&go, lo, hk, clo, ir_get(&go, q->chi), k), mid);
  Op *c = attn_row_count_ge(&go, r, attn_from_order_key(&go, probe));
  Op *up = ir_cmp(&go, CMP_GE, c, k);
  ir_set(&go, q->klo, ir_select(&go, up, probe, lo));
  ir_set(&go, q->clo, ir_select(&go, up, c, clo));
  ir_set(&go, q->khi, ir_select(&go, up, hk, probe));
  ir_set(&go, q->chi, ir_select(&go, up, ir_get(&go, q->chi), c));
}

/* tau from a finished search: exactly k at klo -> the smallest score there (+ 0:
 * -0 becomes +0, as the bit bisection gave); closed -> f(klo); no search -> -inf. */
static Op *search_tau(Builder *b, const AttnRow *r, Op *k, const Search *q) {
  Op *tau = ir_var(b, ir_const_f32(b, -INFINITY), "kth");
  Builder sel, exact, closed;
  ir_if(b, q->sel, &sel, NULL);
  Op *t = attn_from_order_key(&sel, ir_get(&sel, q->klo));
  ir_if(&sel, ir_cmp(&sel, CMP_EQ, ir_get(&sel, q->clo), k), &exact, &closed);
  ir_set(&exact, tau, ir_bin(&exact, OP_ADD, row_min_ge(&exact, r, t), ir_const_f32(&exact, 0)));
  ir_set(&closed, tau, t);
  return ir_get(b, tau);
}

void attn_rows_kth_count(Builder *b, const AttnRow rows[], int n, Op *const k[],
                         Op *const mx[], Op *tau[], Op *count[]) {
  Search q[ATTN_KTH_ROWS];
  Builder loop;
  for (int r = 0; r < n; r++)
    search_start(b, &rows[r], k[r], mx ? mx[r] : NULL, &q[r]);
  Op *step = ir_for(b, i32(b, 0), i32(b, INTERP_STEPS + 32), 1, "step", &loop)->index;
  for (int r = 0; r < n; r++)
    search_step(&loop, &rows[r], k[r], &q[r], step);
  for (int r = 0; r < n; r++) {
    tau[r] = search_tau(b, &rows[r], k[r], &q[r]);
    count[r] = ir_get(b, q[r].clo);
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
