/* The crisp attention backward template (see attention_bwd.h for the contract).
 *
 * Schedule, like the forward's: a block takes `rows` rows of one (b, h); each warp
 * owns one row at a time and keeps that row's recomputed probabilities in a shared
 * slot of max_seq floats; per-warp vectors of D floats (a stashed row, the sums)
 * live in shared memory too, lanes over d.
 *
 * dq kernel, warp per query row i (valid keys j < m; m = L, or min(i + 1, L) causal):
 *   1. Delta_i = dO_i . O_i (lane reduce over d), written to delta; dO_i stashed;
 *   2. S_ij for every valid j by attn_row_scores (the forward's own code, so the
 *      same bits), then lanes over j: kept = S_ij >= tau_i, and for kept j only
 *      P_ij = exp(S_ij - lse_i) and the dropout bit; the slot holds P (z = 1),
 *      -P (z = 0) or 0 (not kept);
 *   3. serially over j, skipping zeros (a warp-uniform branch): dP = z/(1-p) dO_i . V_j
 *      (lane reduce over d), dS = P (dP - Delta_i), dQ_i += dS K_j (lanes over d);
 *   4. dq_i = dQ_i / sqrt(d).
 * dkdv kernel, warp per key j (query rows i in [lo, L), lo = j when causal, else 0):
 *   1. V_j stashed, dK_j = dV_j = 0;
 *   2. S_ij for every such i by attn_row_scores with the roles of q and k swapped
 *      (k_j . q_i: the same products, summed in the same order), then lanes over i:
 *      kept with tau_i, P_ij from lse_i and z_ij for kept pairs only (slot as above);
 *   3. serially over i, skipping zeros: dP = z/(1-p) dO_i . V_j, dS = P (dP - Delta_i),
 *      dV_j += P z/(1-p) dO_i, dK_j += dS Q_i (lanes over d);
 *   4. dk_j = dK_j / sqrt(d), dv_j = dV_j.
 * Padded rows / keys (>= L) are written as zeros. */
#include "attention_bwd.h"

#include <math.h>
#include <stdio.h>

#include "attention_bwd_impl.h"
#include "attention_common.h"
#include "dropout.h"

typedef struct {
  Kernel *k;
  const Spec *spec;
  Buf *buf[ATTN_BWD_NPARAMS];   /* buffer parameters by ATTN_BWD_* index */
  Op *p[ATTN_BWD_NPARAMS];      /* scalar parameter values */
  Buf *slot, *vecs;             /* shared: per-warp row slot; per-warp vectors of D */
  Op *batch, *head, *len;       /* b, h, L of this block */
  Op *scale, *thresh, *inv_keep;
} Ctx;

static Op *add(Builder *b, Op *x, Op *y) { return attn_add(b, x, y); }
static Op *sub(Builder *b, Op *x, Op *y) { return ir_bin(b, OP_SUB, x, y); }
static Op *mul(Builder *b, Op *x, Op *y) { return attn_mul(b, x, y); }
static Op *i32(Builder *b, int64_t v) { return attn_i32(b, v); }
static Op *f32(Builder *b, double v) { return ir_const_f32(b, v); }

/* Offset of row `row` of (batch, head) with strides p[sb], p[sb + 1], p[sb + 2]. */
static Op *row_offset(Ctx *c, Builder *b, int sb, Op *row) {
  return attn_offset(b, c->batch, row, c->head, c->p[sb], c->p[sb + 1], c->p[sb + 2]);
}

/* Index of (batch, head, row) in a [B, H, N] per-row array. */
static Op *row_stat(Ctx *c, Builder *b, Op *row) {
  return add(b, mul(b, add(b, mul(b, c->batch, c->p[ATTN_BWD_H]), c->head), c->p[ATTN_BWD_N]),
             row);
}

/* Warp code, after attn_row_scores filled the row r with S: lanes over the row turn
 * each S into P (z = 1), -P (z = 0) or 0 (not kept). Entry e belongs to query
 * i = i0 + e (i0 NULL: the row's own query `qi`) and key j = e (i0 given: the
 * dkdv kernel's key `kj`). rh: the query row's dropout hash when uniform, else NULL.
 * Exp and the hash run for kept pairs only. The dq kernel's one row loads its lse
 * before the lanes: read under the kept test, the host made it a masked gather of
 * one address per vector (the same change in the tile schedule: backward 0.94x). */
static void emit_probs(Ctx *c, Builder *b, const AttnRow *r, Op *qi, Op *kj, Op *i0, Op *rh) {
  Builder lane, yes, no;
  Op *lse = i0 ? NULL : ir_load(b, c->buf[ATTN_BWD_LSE], row_stat(c, b, qi));
  Op *e = ir_pfor(b, AXIS_LANE, r->m, i0 ? "ii" : "j", &lane)->index;
  Op *at = add(&lane, r->base, e);
  Op *s = ir_load(&lane, r->buf, at);
  Op *i = i0 ? add(&lane, i0, e) : qi, *j = i0 ? kj : e;
  Op *row = row_stat(c, &lane, i);
  Op *kept = ir_const_bool(&lane, true);
  if (c->spec->select != SEL_NONE)
    kept = ir_cmp(&lane, CMP_GE, s, ir_load(&lane, c->buf[ATTN_BWD_TAU], row));
  ir_if(&lane, kept, &yes, &no);
  if (!lse)
    lse = ir_load(&yes, c->buf[ATTN_BWD_LSE], row);
  Op *pr = ir_un(&yes, OP_EXP, sub(&yes, s, lse));
  if (!rh)
    rh = dropout_row_hash_ir(&yes, c->p[ATTN_BWD_SEED], c->p[ATTN_BWD_STEP],
                             c->p[ATTN_BWD_LAYER], c->batch, c->head, i);
  Op *z = dropout_keep_ir(&yes, rh, j, c->thresh);
  ir_store(&yes, r->buf, at, ir_select(&yes, z, pr, ir_un(&yes, OP_NEG, pr)));
  ir_store(&no, r->buf, at, f32(&no, 0));
}

/* Warp code for one slot entry x != 0 (a kept pair): P = |x| and
 * dP = z/(1-p) * (dO . V), the dot a lane reduce over d of g[goff + d] and the stashed
 * vec[vbase + d] (dq kernel: V_j and dO_i; dkdv kernel: dO_i and V_j). Returns
 * dS = P (dP - Delta); *pt = P z/(1-p) when pt is given. */
static Op *grad_score(Ctx *c, Builder *b, Op *x, Buf *g, Op *goff, Op *vbase, Op *delta,
                      Op **pt) {
  Builder dot;
  Op *red = ir_reduce(b, AXIS_LANE, RED_ADD, TY_F32, i32(b, c->spec->head_dim), "d", &dot);
  Op *d = red->index;
  Op *gd = ir_load(&dot, g, add(&dot, goff, d));
  ir_yield(&dot, mul(&dot, gd, ir_load(&dot, c->vecs, add(&dot, vbase, d))));
  Op *pr = ir_un(b, OP_ABS, x);
  Op *zs = ir_select(b, ir_cmp(b, CMP_GT, x, f32(b, 0)), c->inv_keep, f32(b, 0));
  if (pt)
    *pt = mul(b, pr, zs);
  return mul(b, pr, sub(b, mul(b, red, zs), delta));
}

/* lanes over d: dst[off + d] = val (a constant or acc[base + d] * factor) */
static void write_vec(Ctx *c, Builder *b, Buf *dst, Op *off, Buf *acc, Op *base, Op *factor) {
  Builder lane;
  Op *d = ir_pfor(b, AXIS_LANE, i32(b, c->spec->head_dim), "d", &lane)->index;
  Op *val = f32(&lane, 0);
  if (acc) {
    val = ir_load(&lane, acc, add(&lane, base, d));
    if (factor)
      val = mul(&lane, val, factor);
  }
  ir_store(&lane, dst, add(&lane, off, d), val);
}

/* ---- dq: a warp per query row i ---- */

static void emit_dq_row(Ctx *c, Builder *b, Op *i, Op *w) {
  int D = c->spec->head_dim;
  Op *qoff = row_offset(c, b, ATTN_BWD_QKV_SB, i);
  Op *ooff = row_offset(c, b, ATTN_BWD_O_SB, i);
  Op *goff = row_offset(c, b, ATTN_BWD_DQKV_SB, i);
  Op *row = row_stat(c, b, i);
  Op *slot = mul(b, w, i32(b, c->spec->max_seq));
  Op *vbase = mul(b, w, i32(b, 2 * D));   /* dO_i, then dQ_i */
  Op *abase = add(b, vbase, i32(b, D));
  Builder valid, padded, lane, one, dot, loop, hit;
  ir_if(b, ir_cmp(b, CMP_LT, i, c->len), &valid, &padded);

  /* 1. Delta_i; dO_i into the stash; dQ_i = 0 */
  Op *dred = ir_reduce(&valid, AXIS_LANE, RED_ADD, TY_F32, i32(&valid, D), "d", &dot);
  Op *at = add(&dot, ooff, dred->index);
  ir_yield(&dot, mul(&dot, ir_load(&dot, c->buf[ATTN_BWD_DOUT], at),
                     ir_load(&dot, c->buf[ATTN_BWD_O], at)));
  Op *d = ir_pfor(&valid, AXIS_LANE, i32(&valid, D), "d", &lane)->index;
  ir_store(&lane, c->vecs, add(&lane, vbase, d),
           ir_load(&lane, c->buf[ATTN_BWD_DOUT], add(&lane, ooff, d)));
  ir_store(&lane, c->vecs, add(&lane, abase, d), f32(&lane, 0));
  ir_pfor(&valid, AXIS_LANE, i32(&valid, 1), "one", &one);
  ir_store(&one, c->buf[ATTN_BWD_DELTA], row, dred);

  /* 2. probabilities of the row's valid keys */
  Op *m = c->len;
  if (c->spec->causal)
    m = ir_bin(&valid, OP_MIN, add(&valid, i, i32(&valid, 1)), c->len);
  Op *rh = dropout_row_hash_ir(&valid, c->p[ATTN_BWD_SEED], c->p[ATTN_BWD_STEP],
                               c->p[ATTN_BWD_LAYER], c->batch, c->head, i);
  AttnRow r = {c->slot, slot, m};
  attn_row_scores(&valid, &r, c->buf[ATTN_BWD_Q], c->buf[ATTN_BWD_K], qoff,
                  row_offset(c, &valid, ATTN_BWD_QKV_SB, i32(&valid, 0)), c->p[ATTN_BWD_QKV_SN],
                  D);
  emit_probs(c, &valid, &r, i, NULL, NULL, rh);

  /* 3. kept keys only: dS_ij and dQ_i += dS_ij K_j */
  Op *j = ir_for(&valid, i32(&valid, 0), m, 1, "j", &loop)->index;
  Op *x = ir_load(&loop, c->slot, add(&loop, slot, j));
  ir_if(&loop, ir_cmp(&loop, CMP_NE, x, f32(&loop, 0)), &hit, NULL);
  Op *koff = row_offset(c, &hit, ATTN_BWD_QKV_SB, j);
  Op *ds = grad_score(c, &hit, x, c->buf[ATTN_BWD_V], koff, vbase, dred, NULL);
  d = ir_pfor(&hit, AXIS_LANE, i32(&hit, D), "d", &lane)->index;
  Op *ai = add(&lane, abase, d);
  Op *kd = ir_load(&lane, c->buf[ATTN_BWD_K], add(&lane, koff, d));
  ir_store(&lane, c->vecs, ai, ir_fma(&lane, ds, kd, ir_load(&lane, c->vecs, ai)));

  /* 4. */
  write_vec(c, &valid, c->buf[ATTN_BWD_DQ], goff, c->vecs, abase, c->scale);

  write_vec(c, &padded, c->buf[ATTN_BWD_DQ], goff, NULL, NULL, NULL);
  ir_pfor(&padded, AXIS_LANE, i32(&padded, 1), "one", &one);
  ir_store(&one, c->buf[ATTN_BWD_DELTA], row, f32(&one, 0));
}

/* ---- dkdv: a warp per key j ---- */

static void emit_dkdv_row(Ctx *c, Builder *b, Op *j, Op *w) {
  int D = c->spec->head_dim;
  Op *koff = row_offset(c, b, ATTN_BWD_QKV_SB, j);
  Op *goff = row_offset(c, b, ATTN_BWD_DQKV_SB, j);
  Op *slot = mul(b, w, i32(b, c->spec->max_seq));
  Op *vbase = mul(b, w, i32(b, 3 * D));   /* V_j, then dK_j, then dV_j */
  Op *kbase = add(b, vbase, i32(b, D)), *vsum = add(b, vbase, i32(b, 2 * D));
  Builder valid, padded, lane, loop, hit;
  ir_if(b, ir_cmp(b, CMP_LT, j, c->len), &valid, &padded);

  /* 1. V_j into the stash; dK_j = dV_j = 0 */
  Op *d = ir_pfor(&valid, AXIS_LANE, i32(&valid, D), "d", &lane)->index;
  ir_store(&lane, c->vecs, add(&lane, vbase, d),
           ir_load(&lane, c->buf[ATTN_BWD_V], add(&lane, koff, d)));
  ir_store(&lane, c->vecs, add(&lane, kbase, d), f32(&lane, 0));
  ir_store(&lane, c->vecs, add(&lane, vsum, d), f32(&lane, 0));

  /* 2. probabilities of the query rows that see key j */
  Op *lo = c->spec->causal ? j : i32(&valid, 0);
  Op *cnt = sub(&valid, c->len, lo);
  AttnRow r = {c->slot, slot, cnt};
  attn_row_scores(&valid, &r, c->buf[ATTN_BWD_K], c->buf[ATTN_BWD_Q], koff,
                  row_offset(c, &valid, ATTN_BWD_QKV_SB, lo), c->p[ATTN_BWD_QKV_SN], D);
  emit_probs(c, &valid, &r, NULL, j, lo, NULL);

  /* 3. kept rows only */
  Op *ii = ir_for(&valid, i32(&valid, 0), cnt, 1, "ii", &loop)->index;
  Op *x = ir_load(&loop, c->slot, add(&loop, slot, ii));
  ir_if(&loop, ir_cmp(&loop, CMP_NE, x, f32(&loop, 0)), &hit, NULL);
  Op *i = add(&hit, lo, ii);
  Op *ooff = row_offset(c, &hit, ATTN_BWD_O_SB, i);
  Op *qoff = row_offset(c, &hit, ATTN_BWD_QKV_SB, i);
  Op *delta = ir_load(&hit, c->buf[ATTN_BWD_DELTA], row_stat(c, &hit, i));
  Op *pt;
  Op *ds = grad_score(c, &hit, x, c->buf[ATTN_BWD_DOUT], ooff, vbase, delta, &pt);
  d = ir_pfor(&hit, AXIS_LANE, i32(&hit, D), "d", &lane)->index;
  Op *ak = add(&lane, kbase, d), *av = add(&lane, vsum, d);
  Op *qd = ir_load(&lane, c->buf[ATTN_BWD_Q], add(&lane, qoff, d));
  Op *gd = ir_load(&lane, c->buf[ATTN_BWD_DOUT], add(&lane, ooff, d));
  ir_store(&lane, c->vecs, ak, ir_fma(&lane, ds, qd, ir_load(&lane, c->vecs, ak)));
  ir_store(&lane, c->vecs, av, ir_fma(&lane, pt, gd, ir_load(&lane, c->vecs, av)));

  /* 4. */
  write_vec(c, &valid, c->buf[ATTN_BWD_DK], goff, c->vecs, kbase, c->scale);
  write_vec(c, &valid, c->buf[ATTN_BWD_DV], goff, c->vecs, vsum, NULL);

  write_vec(c, &padded, c->buf[ATTN_BWD_DK], goff, NULL, NULL, NULL);
  write_vec(c, &padded, c->buf[ATTN_BWD_DV], goff, NULL, NULL, NULL);
}

/* ---- kernels ---- */

void bwd_declare_params(Kernel *k, BwdPart part, Buf **buf, Op **p) {
  static const char *const bufs[] = {"q", "k", "v", "o", "dout", "lse", "tau", "lengths",
                                     "delta", "dq", "dk", "dv"};
  static const char *const scalars[] = {"B", "H", "N", "qkv_sb", "qkv_sn", "qkv_sh", "o_sb",
                                        "o_sn", "o_sh", "dqkv_sb", "dqkv_sn", "dqkv_sh"};
  for (int i = ATTN_BWD_Q; i <= ATTN_BWD_DV; i++) {
    Role role = ROLE_IN;
    if (i == ATTN_BWD_DELTA || i == ATTN_BWD_DQ)
      role = part == ATTN_BWD_DKDV_PART ? ROLE_IN : ROLE_OUT;
    else if (i == ATTN_BWD_DK || i == ATTN_BWD_DV)
      role = part == ATTN_BWD_DQ_PART ? ROLE_IN : ROLE_OUT;
    buf[i] = ir_param_buf(k, bufs[i], i == ATTN_BWD_LENGTHS ? TY_I32 : TY_F32, role);
  }
  for (int i = 0; i < 12; i++)
    p[ATTN_BWD_B + i] = ir_param_scalar(k, scalars[i], TY_I32);
  p[ATTN_BWD_DROPOUT] = ir_param_scalar(k, "dropout", TY_F32);
  p[ATTN_BWD_SEED] = ir_param_scalar(k, "seed", TY_I32);
  p[ATTN_BWD_STEP] = ir_param_scalar(k, "step", TY_I32);
  p[ATTN_BWD_LAYER] = ir_param_scalar(k, "layer", TY_I32);
}

static Kernel *build(const Spec *s, const TileConfig *t, bool dq) {
  char name[96];
  snprintf(name, sizeof name, "%s_attn_bwd_%s", s->name, dq ? "dq" : "dkdv");
  Kernel *k = ir_kernel_new(name, t->warps);
  Builder b = ir_builder(k);
  Ctx c = {.k = k, .spec = s};
  bwd_declare_params(k, dq ? ATTN_BWD_DQ_PART : ATTN_BWD_DKDV_PART, c.buf, c.p);
  int D = s->head_dim;
  c.slot = ir_shared(k, "slot", TY_F32, (int64_t)t->warps * s->max_seq);
  c.vecs = ir_shared(k, "vecs", TY_F32, (int64_t)t->warps * (dq ? 2 : 3) * D);
  ir_set_grid(k, 0, ATTN_BWD_N, -1, t->rows);
  ir_set_grid(k, 1, ATTN_BWD_H, -1, 1);
  ir_set_grid(k, 2, ATTN_BWD_B, -1, 1);

  Op *row0 = mul(&b, ir_block_id(&b, 0), i32(&b, t->rows));
  c.head = ir_block_id(&b, 1);
  c.batch = ir_block_id(&b, 2);
  c.len = ir_load(&b, c.buf[ATTN_BWD_LENGTHS], c.batch);
  c.scale = f32(&b, 1.0 / sqrt((double)D));
  Op *p = c.p[ATTN_BWD_DROPOUT];
  c.thresh = dropout_threshold_ir(&b, p);
  c.inv_keep = ir_bin(&b, OP_DIV, f32(&b, 1.0), sub(&b, f32(&b, 1.0), p));
  Builder warp, rows, inside;
  Op *w = ir_pfor(&b, AXIS_WARP, i32(&b, t->warps), "w", &warp)->index;
  Op *r = ir_for(&warp, w, i32(&warp, t->rows), t->warps, "r", &rows)->index;
  Op *i = add(&rows, row0, r);
  ir_if(&rows, ir_cmp(&rows, CMP_LT, i, c.p[ATTN_BWD_N]), &inside, NULL);
  if (dq)
    emit_dq_row(&c, &inside, i, w);
  else
    emit_dkdv_row(&c, &inside, i, w);
  return k;
}

Kernel *attention_bwd_dq_build(const Spec *s, const TileConfig *t) { return build(s, t, true); }
Kernel *attention_bwd_dkdv_build(const Spec *s, const TileConfig *t) { return build(s, t, false); }

int64_t attention_bwd_shared_bytes(const Spec *s, const TileConfig *t) {
  return 4 * (int64_t)t->warps * (s->max_seq + 3 * (int64_t)s->head_dim);
}

enum { BWD_SHARED_LIMIT = 48 * 1024 };   /* static shared memory per block on sm_80/sm_90 */

int attention_bwd_build(const Spec *s, const TileConfig *t, Module *m, char *err, size_t cap) {
  if (t->sched == SCHED_TILE) {
    if (tile_check(s, t, err, cap))
      return -1;
  } else if (t->warps < 1 || t->warps > 16 || t->rows < 1 || t->rows % t->warps) {
    snprintf(err, cap, "tile rows = %d, warps = %d: rows must be a positive multiple of warps "
             "(1..16)", t->rows, t->warps);
    return -1;
  }
  int64_t bytes = attention_bwd_shared_bytes(s, t);
  if (t->sched != SCHED_TILE && bytes > BWD_SHARED_LIMIT) {
    snprintf(err, cap, "backward: tile warps = %d needs %lld bytes of shared memory with "
             "max_seq = %d, head_dim = %d (limit %d)", t->warps, (long long)bytes, s->max_seq,
             s->head_dim, BWD_SHARED_LIMIT);
    return -1;
  }
  if (m->n + 2 > (int)(sizeof m->kernels / sizeof m->kernels[0])) {
    snprintf(err, cap, "backward: the module already holds %d kernels", m->n);
    return -1;
  }
  if (t->sched == SCHED_TILE) {
    m->kernels[m->n++] = attention_bwd_tile_build(s, t);
    return 0;
  }
  m->kernels[m->n++] = attention_bwd_dq_build(s, t);
  m->kernels[m->n++] = attention_bwd_dkdv_build(s, t);
  return 0;
}
