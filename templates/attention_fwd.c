/* The crisp attention forward template (DESIGN §4), every select mode, causal or not:
 * the per-row steps both schedules share, and the entry point that picks one
 * (attention_fwd_staged.c: the GPU's, blocks of rows against staged K/V tiles;
 * attention_fwd_tile.c: the CPU's register-blocked tiles).
 *
 * Per row, with M valid keys (j < L, and j <= i when causal), scores in a shared slot:
 *   1. S_j = q_i . k_j / sqrt(d) for j < M (attn_row_scores, by the schedule);
 *   2. the threshold tau and the kept count (S_j >= tau, ties kept):
 *        none            tau = -inf
 *        row_topk        tau = keep(M)-th largest S_j (bisection on order keys)
 *        head/layer      tau = min(tau_group[g], keep_min-th largest): if at least
 *                        min(keep_min, M) scores reach tau_group[g] it is tau_group[g],
 *                        else the keep_min-th largest (bisection), so no row is empty;
 *   3. mx = max_j S_j; e_j = exp(S_j - mx) stored signed over the scores (+ kept,
 *      - dropped by the selection); sum = sum of kept e_j; lse = mx + log(sum);
 *      kept, lse, tau written; the entropies when the stats flags ask (from e_j);
 *   4. O_i = sum_j e_j v_j / (sum (1 - p)) over kept j that attention dropout keeps
 *      (mask tested per kept j, only when p > 0), by the schedule: P.V touches kept,
 *      undropped entries only.
 * Softmax, lse and entropies are taken before dropout. mx is always kept (tau <= mx),
 * so sum >= 1: no NaN however sparse. The written tau is -inf when the row keeps
 * every valid key, so kept <=> S >= tau always (what the backward recomputes P from).
 * Padded rows (i >= L): o = 0, kept = 0, lse = 0, tau = +inf, entropies 0.
 * L is clamped to max_seq (rows past it count as padding): callers must refuse
 * N > max_seq; the clamp only keeps a bad call from overflowing shared memory. */
#include <math.h>
#include <stdio.h>

#include "attention_fwd_impl.h"
#include "dropout.h"


#define i32 attn_i32
#define add attn_add
#define mul attn_mul

static Op *zero_f(Builder *b) { return ir_const_f32(b, 0); }

/* tau and the kept count of a row, per select mode (see the top of the file). */
void fwd_emit_select(Ctx *c, Builder *b, const AttnRow *r, Op **tau, Op **cnt) {
  switch (c->spec->select) {
  case SEL_ROW_TOPK:
    *tau = attn_row_kth_count(b, r, attn_keep_count(b, c->p[ATTN_SPARSITY], r->m,
                                                    c->spec->keep_min), cnt);
    return;
  case SEL_HEAD_QUANTILE: case SEL_LAYER_QUANTILE: {
    Op *tv = ir_var(b, c->tg, "tau"), *cv = ir_var(b, attn_row_count_ge(b, r, c->tg), "cnt");
    Op *kmin = ir_bin(b, OP_MIN, i32(b, c->spec->keep_min), r->m);
    Builder floor;
    ir_if(b, ir_cmp(b, CMP_LT, ir_get(b, cv), kmin), &floor, NULL);
    Op *fc;
    ir_set(&floor, tv, attn_row_kth_count(&floor, r, kmin, &fc));
    ir_set(&floor, cv, fc);
    *tau = ir_get(b, tv);
    *cnt = ir_get(b, cv);
    return;
  }
  default:
    *tau = ir_const_f32(b, -INFINITY);
    *cnt = r->m;
  }
}

/* 3. e_j = exp(S_j - mx) over the row, stored signed: +e_j for kept j, -e_j for the
 * others (so the dense statistics stay at hand); returns sum over kept j of e_j. */
Op *fwd_emit_exp_store(Builder *b, const AttnRow *r, Op *mx, Op *tau) {
  Builder body;
  Op *red = ir_reduce(b, AXIS_LANE, RED_ADD, TY_F32, r->m, "j", &body);
  Op *at = add(&body, r->base, red->index);
  Op *s = ir_load(&body, r->buf, at);
  Op *e = ir_un(&body, OP_EXP, ir_bin(&body, OP_SUB, s, mx));
  Op *kept = ir_cmp(&body, CMP_GE, s, tau);
  ir_store(&body, r->buf, at, ir_select(&body, kept, e, ir_un(&body, OP_NEG, e)));
  ir_yield(&body, ir_select(&body, kept, e, zero_f(&body)));
  return red;
}

/* sum_j a_j [log a_j] over the stored row, a_j = e_j (kept j, e_j > 0) or |e_j|
 * (dense); terms with a_j = 0 (exp underflow) are 0. */
static Op *e_sum(Builder *b, const AttnRow *r, bool dense, bool times_log) {
  Builder body;
  Op *red = ir_reduce(b, AXIS_LANE, RED_ADD, TY_F32, r->m, "j", &body);
  Op *a = ir_load(&body, r->buf, add(&body, r->base, red->index));
  if (dense)
    a = ir_un(&body, OP_ABS, a);
  Op *pos = ir_cmp(&body, CMP_GT, a, zero_f(&body));
  Op *v = a;
  if (times_log)   /* log(1) stands in for log(0), whose term is dropped below */
    v = mul(&body, a, ir_un(&body, OP_LOG, ir_select(&body, pos, a, ir_const_f32(&body, 1))));
  ir_yield(&body, ir_select(&body, pos, v, zero_f(&body)));
  return red;
}

/* H = log Z - sum_j e_j log e_j / Z with e_j = e^(S_j - mx) <= 1, Z = sum_j e_j:
 * both terms are >= 0, so no cancellation. */
static Op *entropy(Builder *b, Op *z, Op *elog) {
  return ir_bin(b, OP_SUB, ir_un(b, OP_LOG, z), ir_bin(b, OP_DIV, elog, z));
}

static Op *flag_set(Builder *b, Op *stats, int flag) {
  return ir_cmp(b, CMP_NE, ir_bin(b, OP_AND, stats, i32(b, flag)), i32(b, 0));
}

/* Position of row i in the per-row outputs [B, H, N]. */
Op *fwd_row_at(Ctx *c, Builder *b, Op *i) {
  Op **p = c->p;
  return add(b, mul(b, add(b, mul(b, c->batch, p[ATTN_H]), c->head), p[ATTN_N]), i);
}

/* 3'. the entropies the stats flags ask for, from the stored signed e_j (r = NULL:
 * a padded row, zeros); z_kept = sum over kept j of e_j. */
void fwd_store_entropies(Ctx *c, Builder *b, const AttnRow *r, Op *z_kept, Op *i) {
  Op *stats = c->p[ATTN_STATS];
  Buf *out[2] = {c->ent, c->dent};
  for (int dense = 0; dense < 2; dense++) {
    Builder on, lane;
    ir_if(b, flag_set(b, stats, dense ? ATTN_STATS_DENSE_ENTROPY : ATTN_STATS_ENTROPY), &on,
          NULL);
    Op *h = zero_f(&on);
    if (r) {
      Op *z = dense ? e_sum(&on, r, true, false) : z_kept;
      h = entropy(&on, z, e_sum(&on, r, dense, true));
    }
    ir_pfor(&on, AXIS_LANE, i32(&on, 1), "one", &lane);
    ir_store(&lane, out[dense], fwd_row_at(c, &lane, i), h);
  }
}

/* kept, lse and tau of one row, by one lane. */
void fwd_store_row(Ctx *c, Builder *b, Op *i, Op *kept, Op *lse, Op *tau) {
  Builder lane;
  ir_pfor(b, AXIS_LANE, i32(b, 1), "one", &lane);
  Op *at = fwd_row_at(c, &lane, i);
  ir_store(&lane, c->kept, at, kept);
  ir_store(&lane, c->lse, at, lse);
  ir_store(&lane, c->tau, at, tau);
}

Op *fwd_softmax_row(Ctx *c, Builder *b, const AttnRow *r, Op *i) {
  Op *tau, *cnt;
  fwd_emit_select(c, b, r, &tau, &cnt);
  return fwd_softmax_row_at(c, b, r, i, tau, cnt, attn_row_max(b, r));
}

Op *fwd_softmax_row_at(Ctx *c, Builder *b, const AttnRow *r, Op *i, Op *tau, Op *cnt, Op *mx) {
  Op *sum = fwd_emit_exp_store(b, r, mx, tau);
  Op *lse = add(b, mx, ir_un(b, OP_LOG, sum));
  Op *all = ir_cmp(b, CMP_EQ, cnt, r->m);
  fwd_store_row(c, b, i, cnt, lse, ir_select(b, all, ir_const_f32(b, -INFINITY), tau));
  fwd_store_entropies(c, b, r, sum, i);
  /* sum (1 - p) as fma(-sum, p, sum): exactly sum when p = 0 */
  return ir_fma(b, ir_un(b, OP_NEG, sum), c->p[ATTN_DROPOUT], sum);
}

void fwd_emit_padded_row(Ctx *c, Builder *b, Op *i) {
  Builder lane;
  Op **p = c->p;
  Op *ooff = attn_offset(b, c->batch, i, c->head, p[ATTN_O_SB], p[ATTN_O_SN], p[ATTN_O_SH]);
  Op *d = ir_pfor(b, AXIS_LANE, i32(b, c->spec->head_dim), "d", &lane)->index;
  ir_store(&lane, c->o, add(&lane, ooff, d), zero_f(&lane));
  fwd_store_row(c, b, i, i32(b, 0), zero_f(b), ir_const_f32(b, INFINITY));
  fwd_store_entropies(c, b, NULL, NULL, i);
}

void fwd_declare_params(Ctx *c, Kernel *k) {
  static const char *const ints[] = {"B", "H", "N", "qkv_sb", "qkv_sn", "qkv_sh",
                                     "o_sb", "o_sn", "o_sh"};
  c->q = ir_param_buf(k, "q", TY_F32, ROLE_IN);
  c->kk = ir_param_buf(k, "k", TY_F32, ROLE_IN);
  c->v = ir_param_buf(k, "v", TY_F32, ROLE_IN);
  c->o = ir_param_buf(k, "o", TY_F32, ROLE_OUT);
  c->lengths = ir_param_buf(k, "lengths", TY_I32, ROLE_IN);
  c->kept = ir_param_buf(k, "kept", TY_I32, ROLE_OUT);
  c->lse = ir_param_buf(k, "lse", TY_F32, ROLE_OUT);
  c->tau = ir_param_buf(k, "tau", TY_F32, ROLE_OUT);
  c->ent = ir_param_buf(k, "entropy", TY_F32, ROLE_OUT);
  c->dent = ir_param_buf(k, "dense_entropy", TY_F32, ROLE_OUT);
  c->tau_group = ir_param_buf(k, "tau_group", TY_F32, ROLE_IN);
  for (int i = 0; i < 9; i++)
    c->p[ATTN_B + i] = ir_param_scalar(k, ints[i], TY_I32);
  c->p[ATTN_SPARSITY] = ir_param_scalar(k, "sparsity", TY_F64);
  c->p[ATTN_DROPOUT] = ir_param_scalar(k, "dropout", TY_F32);
  c->p[ATTN_SEED] = ir_param_scalar(k, "seed", TY_I32);
  c->p[ATTN_STEP] = ir_param_scalar(k, "step", TY_I32);
  c->p[ATTN_LAYER] = ir_param_scalar(k, "layer", TY_I32);
  c->p[ATTN_STATS] = ir_param_scalar(k, "stats", TY_I32);
}

void fwd_block_values(Ctx *c, Builder *b) {
  const Spec *s = c->spec;
  c->head = ir_block_id(b, 1);
  c->batch = ir_block_id(b, 2);
  /* lengths beyond max_seq would overflow the score slots: clamp (callers refuse them) */
  c->len = ir_bin(b, OP_MIN, ir_load(b, c->lengths, c->batch), i32(b, s->max_seq));
  if (s->select == SEL_HEAD_QUANTILE)
    c->tg = ir_load(b, c->tau_group, add(b, mul(b, c->batch, c->p[ATTN_H]), c->head));
  else if (s->select == SEL_LAYER_QUANTILE)
    c->tg = ir_load(b, c->tau_group, i32(b, 0));
  c->drop_thr = dropout_threshold_ir(b, c->p[ATTN_DROPOUT]);
}

Kernel *attention_fwd_build(const Spec *s, const TileConfig *t) {
  return t->sched == SCHED_TILE ? attention_fwd_tile_build(s, t) : attention_fwd_staged_build(s, t);
}
