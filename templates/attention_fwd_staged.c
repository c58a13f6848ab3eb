/* The forward's GPU schedule (SCHED_WARP), staged: K and V are read from global
 * memory once per group of query rows, coalesced, instead of once per row.
 *
 * A block takes `rows` query rows of one (b, h) and works through them in groups of
 * `group` rows (attention_fwd_stage: as many as fit in 48 KiB of shared memory,
 * split evenly). For each group, in block-level code:
 *   1. the group's Q rows are staged into `qa` (group x D);
 *   2. per key tile of `keys` keys (32 unless a max_seq too large for that leaves
 *      no room for one row per warp): barrier, the tile's K rows staged into `kv`
 *      (keys x (D + 1): lanes reading one d of 32 keys hit 32 banks), barrier, then
 *      the group's valid rows scored from the staged Q rows and tile into their score
 *      slots (group x max_seq, all rows at once): SCHED_WARP a warp per set of R
 *      consecutive rows (attn_rows_scores), then a barrier after the last tile, since
 *      step 3 deals the rows out one per warp; SCHED_WARP_HOST a warp per row
 *      (attn_row_scores' reduce, which the host vectorises);
 *   3. pfor.warp over the group's rows: selection, softmax, kept/lse/tau and the
 *      statistics on the whole slot (fwd_softmax_row, unchanged), 1 / (Z (1 - p))
 *      into `scale`, the row's `qa` entries zeroed to become its P.V accumulator
 *      (the Q row is not read again, and the warp owning row r here owns it in
 *      every step below, so no barrier is needed between); padded rows written;
 *   4. per key tile: barrier, V rows staged into `kv`, barrier, then e_j v_j added
 *      into each valid row's accumulator for the tile's kept (e_j > 0), undropped j
 *      in key order, as the per-row schedule did (the same fma chain, so the same
 *      bits): SCHED_WARP a warp per set of R of its rows (r0, r0 + warps, ...), each
 *      lane keeping its slices of d of their sums in registers over the tile and
 *      visiting only the keys some row keeps (a bit mask per row);
 *      SCHED_WARP_HOST a warp per row, lanes over d inside the key loop;
 *   5. o = acc * scale.
 * Causal: a group reads keys up to its last valid row (first + nvalid); each row
 * only scores and sums its own j < min(i + 1, L). Tiles with no valid row are never
 * staged: a group of padded rows reads nothing. */
#include <stdio.h>

#include "attention_fwd_impl.h"
#include "attention_tile.h"
#include "dropout.h"

#define i32 attn_i32
#define add attn_add
#define mul attn_mul

enum { STAGE_KEYS = 32 };

static int64_t stage_bytes(const Spec *s, int64_t group, int64_t keys) {
  int64_t D = s->head_dim;
  return 4 * (keys * (D + 1) + group * (s->max_seq + D + 1));
}

/* Group size: the most rows whose slots fit beside one key tile, then split evenly
 * (64 rows with room for 17 -> 4 groups of 16) and kept a multiple of the warps so
 * no warp idles for a group's last round. The key tile shrinks only when not even
 * one row per warp fits beside 32 keys (max_seq in the thousands). */
FwdStage attention_fwd_stage(const Spec *s, const TileConfig *t) {
  for (int keys = STAGE_KEYS; keys >= 1; keys /= 2) {
    int64_t room = TILE_SHARED_LIMIT - stage_bytes(s, 0, keys);
    int64_t fit = room / stage_bytes(s, 1, 0);
    if (fit > t->rows)
      fit = t->rows;
    if (fit < t->warps)
      continue;
    int64_t groups = (t->rows + fit - 1) / fit;
    int64_t g = (t->rows + groups - 1) / groups;
    g = (g + t->warps - 1) / t->warps * t->warps;
    if (g > fit)
      g = fit / t->warps * t->warps;
    return (FwdStage){(int)g, keys, stage_bytes(s, g, keys)};
  }
  /* the smallest layout this tile could have; over the limit, so tile_check refuses it */
  return (FwdStage){0, 1, stage_bytes(s, t->warps, 1)};
}

typedef struct {
  Ctx *c;
  FwdStage st;
  bool host;              /* SCHED_WARP_HOST: the host's forms (templates.h) */
  int R;                  /* SCHED_WARP: rows a warp scores and sums at once */
  int warps;
  Buf *kv, *qa, *scale;   /* c->scores holds the slots */
  Op *first;              /* the group's first row */
  Op *nin, *nvalid;       /* its rows below N, and below min(N, L) */
  Op *mg;                 /* keys it reads */
} Group;

static Op *clamp0(Builder *b, Op *x, Op *hi) {
  return ir_bin(b, OP_MAX, ir_bin(b, OP_MIN, x, hi), i32(b, 0));
}

/* Valid keys of row i: j < L, and j <= i when causal. */
static Op *row_keys(Ctx *c, Builder *b, Op *i) {
  return c->spec->causal ? ir_bin(b, OP_MIN, add(b, i, i32(b, 1)), c->len) : c->len;
}

/* Row r's keys within the tile at kt of nk keys (0 past the row's last key). */
static Op *tile_keys(Ctx *c, Builder *b, Op *i, Op *kt, Op *nk) {
  return clamp0(b, ir_bin(b, OP_SUB, row_keys(c, b, i), kt), nk);
}

/* Block-level: barrier, rows [kt, kt + nk) of src (K or V) into kv, barrier. */
static Op *stage_tile(Group *g, Builder *b, Buf *src, Op *kt) {
  Ctx *c = g->c;
  Op *nk = ir_bin(b, OP_MIN, i32(b, g->st.keys), ir_bin(b, OP_SUB, g->mg, kt));
  Op *off = attn_offset(b, c->batch, kt, c->head, c->p[ATTN_QKV_SB], c->p[ATTN_QKV_SN],
                        c->p[ATTN_QKV_SH]);
  ir_barrier(b);
  attn_stage_rows(b, g->kv, c->spec->head_dim + 1, src, off, c->p[ATTN_QKV_SN], nk,
                  c->spec->head_dim);
  ir_barrier(b);
  return nk;
}

static AttnRow slot(Group *g, Builder *b, Op *r, Op *kt, Op *m) {
  return (AttnRow){g->c->scores, add(b, mul(b, r, i32(b, g->c->spec->max_seq)), kt), m};
}

/* 2. S for the group's valid rows, one staged K tile at a time. SCHED_WARP: a warp
 * scores R rows at once (attn_rows_scores), rows rs R + t; the rows' softmax is then
 * another warp's, so a barrier follows the last tile. */
static void emit_scores(Group *g, Builder *b) {
  Ctx *c = g->c;
  int D = c->spec->head_dim, R = g->R;
  Builder tile, warp;
  Op *kt = ir_for(b, i32(b, 0), g->mg, g->st.keys, "kt", &tile)->index;
  Op *nk = stage_tile(g, &tile, c->kk, kt);
  if (g->host) {
    Op *r = ir_pfor(&tile, AXIS_WARP, g->nvalid, "r", &warp)->index;
    Op *i = add(&warp, g->first, r);
    AttnRow row = slot(g, &warp, r, kt, tile_keys(c, &warp, i, kt, nk));
    attn_row_scores(&warp, &row, g->qa, g->kv, mul(&warp, r, i32(&warp, D)), i32(&warp, 0),
                    i32(&warp, D + 1), D, true);
    return;
  }
  Op *sets = ir_bin(&tile, OP_DIV, add(&tile, g->nvalid, i32(&tile, R - 1)), i32(&tile, R));
  Op *rs = ir_pfor(&tile, AXIS_WARP, sets, "rs", &warp)->index;
  Op *r0 = mul(&warp, rs, i32(&warp, R));
  AttnRow rows[ATTN_ROWS_MAX];
  Op *qoff[ATTN_ROWS_MAX];
  for (int t = 0; t < R; t++) {
    Op *r = add(&warp, r0, i32(&warp, t));
    Op *valid = ir_cmp(&warp, CMP_LT, r, g->nvalid);
    Op *m = tile_keys(c, &warp, add(&warp, g->first, r), kt, nk);
    rows[t] = slot(g, &warp, r, kt, ir_select(&warp, valid, m, i32(&warp, 0)));
    qoff[t] = mul(&warp, ir_select(&warp, valid, r, r0), i32(&warp, D));
  }
  attn_rows_scores(&warp, R, rows, g->qa, qoff, g->kv, i32(&warp, 0), i32(&warp, D + 1), D);
  if (R > 1)
    ir_barrier(b);
}

/* 3. Per row: softmax and statistics, or a padded row's outputs. */
static void emit_softmax(Group *g, Builder *b) {
  Ctx *c = g->c;
  int D = c->spec->head_dim;
  Builder warp, valid, padded, lane;
  Op *r = ir_pfor(b, AXIS_WARP, g->nin, "r", &warp)->index;
  Op *i = add(&warp, g->first, r);
  ir_if(&warp, ir_cmp(&warp, CMP_LT, r, g->nvalid), &valid, &padded);
  AttnRow row = slot(g, &valid, r, i32(&valid, 0), row_keys(c, &valid, i));
  Op *mass = fwd_softmax_row(c, &valid, &row, i);
  Op *scale = ir_bin(&valid, OP_DIV, ir_const_f32(&valid, 1.0), mass);
  ir_pfor(&valid, AXIS_LANE, i32(&valid, 1), "one", &lane);
  ir_store(&lane, g->scale, r, scale);
  Op *d = ir_pfor(&valid, AXIS_LANE, i32(&valid, D), "d", &lane)->index;
  ir_store(&lane, g->qa, add(&lane, mul(&lane, r, i32(&lane, D)), d), ir_const_f32(&lane, 0));
  fwd_emit_padded_row(c, &padded, i);
}

/* Where key j of the tile at kt counts (e_j > 0 and, when p > 0, undropped): `go`
 * becomes the code that runs for it. */
static void if_kept(Group *g, Builder *b, Op *ej, Op *rh, Op *kt, Op *j, Builder *go) {
  Ctx *c = g->c;
  Builder hit, drop;
  ir_if(b, ir_cmp(b, CMP_GT, ej, ir_const_f32(b, 0)), &hit, NULL);
  Op *live = ir_var(&hit, ir_const_bool(&hit, true), "live");
  ir_if(&hit, ir_cmp(&hit, CMP_GT, c->p[ATTN_DROPOUT], ir_const_f32(&hit, 0)), &drop, NULL);
  ir_set(&drop, live, dropout_keep_ir(&drop, rh, add(&drop, kt, j), c->drop_thr));
  ir_if(&hit, ir_get(&hit, live), go, NULL);
}

/* SCHED_WARP_HOST: acc[d] += e_j v_j over the tile's kept keys j < mt in order, a
 * serial loop over j with lanes over d inside. */
static void tile_pv_lanes_inner(Group *g, Builder *b, Op *r, Op *rh, Op *kt, Op *mt) {
  Ctx *c = g->c;
  int D = c->spec->head_dim;
  Op *srow = add(b, mul(b, r, i32(b, c->spec->max_seq)), kt);
  Op *arow = mul(b, r, i32(b, D));
  Builder lane, loop, go;
  Op *j = ir_for(b, i32(b, 0), mt, 1, "j", &loop)->index;
  Op *ej = ir_load(&loop, c->scores, add(&loop, srow, j));
  if_kept(g, &loop, ej, rh, kt, j, &go);
  Op *vrow = mul(&go, j, i32(&go, D + 1));
  Op *d = ir_pfor(&go, AXIS_LANE, i32(&go, D), "d", &lane)->index;
  Op *ai = add(&lane, arow, d);
  Op *vd = ir_load(&lane, g->kv, add(&lane, vrow, d));
  ir_store(&lane, g->qa, ai, ir_fma(&lane, ej, vd, ir_load(&lane, g->qa, ai)));
}

/* Warp code: bit j of the result is set where row key j of the tile (j < mt <= 32) is
 * kept (e_j > 0) and, when p > 0, undropped; one lane reduce, the bits disjoint, so
 * their sum is their union. */
static Op *kept_bits(Group *g, Builder *b, Op *srow, Op *rh, Op *kt, Op *mt) {
  Ctx *c = g->c;
  Builder lane, drop;
  Op *red = ir_reduce(b, AXIS_LANE, RED_ADD, TY_I32, mt, "j", &lane);
  Op *j = red->index;
  Op *ej = ir_load(&lane, c->scores, add(&lane, srow, j));
  Op *live = ir_var(&lane, ir_cmp(&lane, CMP_GT, ej, ir_const_f32(&lane, 0)), "live");
  ir_if(&lane, ir_bin(&lane, OP_AND, ir_get(&lane, live),
                      ir_cmp(&lane, CMP_GT, c->p[ATTN_DROPOUT], ir_const_f32(&lane, 0))),
        &drop, NULL);
  ir_set(&drop, live, dropout_keep_ir(&drop, rh, add(&drop, kt, j), c->drop_thr));
  ir_yield(&lane, ir_select(&lane, ir_get(&lane, live), ir_bin(&lane, OP_SHL, i32(&lane, 1), j),
                            i32(&lane, 0)));
  return red;
}

/* SCHED_WARP: the same sums for a set of rows r[t] (t < R; mt[t] keys in the tile, 0
 * for a row past the group, valid[t] false there; mx the most), lane l owning
 * d = l, l + 32, ...: each lane loads its entries of the rows' accumulators into
 * registers (vars) once per tile, runs the keys some row keeps, and stores them back.
 * Which keys: a bit mask per row (kept_bits: one lane reduce, the dropout hash once per
 * key), so the key loop visits only kept keys, lowest first (tile_for_bits); per key
 * the lane loads its slices of v_j once for the set and the e_j of the rows that keep
 * it. Each row's chain per d is the same fma chain in key order: the same bits. */
static void tile_pv_registers(Group *g, Builder *b, int R, Op *const r[], Op *const rh[],
                              Op *const valid[], Op *kt, Op *const mt[]) {
  Ctx *c = g->c;
  int D = c->spec->head_dim, lanes = D < 32 ? D : 32, per = (D + lanes - 1) / lanes;
  Op *arow[ATTN_ROWS_MAX], *srow[ATTN_ROWS_MAX], *bits[ATTN_ROWS_MAX], *any = NULL;
  for (int t = 0; t < R; t++) {
    arow[t] = mul(b, r[t], i32(b, D));
    srow[t] = add(b, mul(b, r[t], i32(b, c->spec->max_seq)), kt);
    bits[t] = kept_bits(g, b, srow[t], rh[t], kt, mt[t]);
    any = any ? ir_bin(b, OP_OR, any, bits[t]) : bits[t];
  }
  Builder lane, keys, in;
  Op *l = ir_pfor(b, AXIS_LANE, i32(b, lanes), "l", &lane)->index;
  Op *d[8], *cut[8], *acc[ATTN_ROWS_MAX][8];
  for (int u = 0; u < per; u++) {
    d[u] = add(&lane, l, i32(&lane, u * lanes));
    /* only the last slice can run past D (D is a multiple of 8, lanes of 32) */
    cut[u] = (u + 1) * lanes <= D ? NULL : ir_cmp(&lane, CMP_LT, d[u], i32(&lane, D));
    for (int t = 0; t < R; t++) {
      acc[t][u] = ir_var(&lane, ir_const_f32(&lane, 0), "acc");
      Builder *at = attn_where(&lane, valid[t], cut[u], &in);
      ir_set(at, acc[t][u], ir_load(at, g->qa, add(at, arow[t], d[u])));
    }
  }
  Op *j = tile_for_bits(&lane, any, "j", &keys);
  Op *vrow = mul(&keys, j, i32(&keys, D + 1)), *vd[8], *one = i32(&keys, 1);
  for (int u = 0; u < per; u++) {
    /* a lane past D reads a staged entry of its own row (d = D - 1) and never stores */
    Op *du = cut[u] ? ir_bin(&keys, OP_MIN, d[u], i32(&keys, D - 1)) : d[u];
    vd[u] = ir_load(&keys, g->kv, add(&keys, vrow, du));
  }
  for (int t = 0; t < R; t++) {
    Builder kept;
    Op *has = R > 1 ? ir_cmp(&keys, CMP_NE, ir_bin(&keys, OP_AND, ir_bin(&keys, OP_SHR,
                                                                          bits[t], j), one),
                             i32(&keys, 0))
                    : NULL;
    Builder *at = attn_where(&keys, has, NULL, &kept);
    Op *e = ir_load(at, c->scores, add(at, srow[t], j));
    for (int u = 0; u < per; u++)
      ir_set(at, acc[t][u], ir_fma(at, e, vd[u], ir_get(at, acc[t][u])));
  }
  for (int u = 0; u < per; u++)
    for (int t = 0; t < R; t++) {
      Builder *at = attn_where(&lane, valid[t], cut[u], &in);
      ir_store(at, g->qa, add(at, arow[t], d[u]), ir_get(at, acc[t][u]));
    }
}

static Op *row_hash(Group *g, Builder *b, Op *i) {
  Op **p = g->c->p;
  return dropout_row_hash_ir(b, p[ATTN_SEED], p[ATTN_STEP], p[ATTN_LAYER], g->c->batch,
                             g->c->head, i);
}

/* 4. P.V from the staged V tile at kt (nk keys): SCHED_WARP_HOST a row per warp at a
 * time; SCHED_WARP sets of R rows, r0 + warps t, the rows the warp owned in step 3. */
static void emit_tile_pv(Group *g, Builder *b, Op *kt, Op *nk) {
  Ctx *c = g->c;
  Builder warp, set, some;
  if (g->host) {
    Op *r = ir_pfor(b, AXIS_WARP, g->nvalid, "r", &warp)->index;
    Op *i = add(&warp, g->first, r);
    tile_pv_lanes_inner(g, &warp, r, row_hash(g, &warp, i), kt, tile_keys(c, &warp, i, kt, nk));
    return;
  }
  int R = g->R, W = g->warps;
  Op *w = ir_pfor(b, AXIS_WARP, i32(b, W), "w", &warp)->index;
  Op *r0 = ir_for(&warp, w, g->nvalid, (int64_t)W * R, "r0", &set)->index;
  Op *r[ATTN_ROWS_MAX], *rh[ATTN_ROWS_MAX], *valid[ATTN_ROWS_MAX], *mt[ATTN_ROWS_MAX];
  Op *mx = NULL;
  for (int t = 0; t < R; t++) {
    Op *rt = add(&set, r0, i32(&set, t * W));
    valid[t] = t ? ir_cmp(&set, CMP_LT, rt, g->nvalid) : NULL;
    r[t] = t ? ir_select(&set, valid[t], rt, r0) : r0;
    Op *i = add(&set, g->first, r[t]);
    mt[t] = tile_keys(c, &set, i, kt, nk);
    if (t)
      mt[t] = ir_select(&set, valid[t], mt[t], i32(&set, 0));
    rh[t] = row_hash(g, &set, i);
    mx = mx ? ir_bin(&set, OP_MAX, mx, mt[t]) : mt[t];
  }
  ir_if(&set, ir_cmp(&set, CMP_GT, mx, i32(&set, 0)), &some, NULL);
  tile_pv_registers(g, &some, R, r, rh, valid, kt, mt);
}

/* 4-5. P.V one staged V tile at a time, then o = acc * scale. */
static void emit_pv(Group *g, Builder *b) {
  Ctx *c = g->c;
  Op **p = c->p;
  int D = c->spec->head_dim;
  Builder tile, warp, lane;
  Op *kt = ir_for(b, i32(b, 0), g->mg, g->st.keys, "kt", &tile)->index;
  emit_tile_pv(g, &tile, kt, stage_tile(g, &tile, c->v, kt));

  Op *r = ir_pfor(b, AXIS_WARP, g->nvalid, "r", &warp)->index;
  Op *i = add(&warp, g->first, r);
  Op *ooff = attn_offset(&warp, c->batch, i, c->head, p[ATTN_O_SB], p[ATTN_O_SN], p[ATTN_O_SH]);
  Op *scale = ir_load(&warp, g->scale, r);
  Op *d = ir_pfor(&warp, AXIS_LANE, i32(&warp, D), "d", &lane)->index;
  Op *acc = ir_load(&lane, g->qa, add(&lane, mul(&lane, r, i32(&lane, D)), d));
  ir_store(&lane, c->o, add(&lane, ooff, d), mul(&lane, acc, scale));
}

/* One group: rows [first, first + n) of the block (block-level code). */
static void emit_group(Group *g, Builder *b, Op *first, Op *n) {
  Ctx *c = g->c;
  Op **p = c->p;
  int D = c->spec->head_dim;
  g->first = first;
  g->nin = clamp0(b, ir_bin(b, OP_SUB, p[ATTN_N], first), n);
  Op *vend = ir_bin(b, OP_MIN, p[ATTN_N], c->len);
  g->nvalid = clamp0(b, ir_bin(b, OP_SUB, vend, first), n);
  Op *any = ir_cmp(b, CMP_GT, g->nvalid, i32(b, 0));
  Op *keys = c->spec->causal ? add(b, first, g->nvalid) : c->len;
  g->mg = ir_select(b, any, keys, i32(b, 0));
  ir_barrier(b);   /* the previous group is done with every shared array */
  attn_stage_rows(b, g->qa, D, c->q,
                  attn_offset(b, c->batch, first, c->head, p[ATTN_QKV_SB], p[ATTN_QKV_SN],
                              p[ATTN_QKV_SH]),
                  p[ATTN_QKV_SN], g->nvalid, D);
  emit_scores(g, b);
  emit_softmax(g, b);
  emit_pv(g, b);
}

Kernel *attention_fwd_staged_build(const Spec *s, const TileConfig *t) {
  char name[96];
  snprintf(name, sizeof name, "%s_attn_fwd", s->name);
  Kernel *k = ir_kernel_new(name, t->warps);
  Builder b = ir_builder(k);
  Ctx c = {.spec = s};
  Group g = {.c = &c, .st = attention_fwd_stage(s, t), .host = t->sched == SCHED_WARP_HOST};
  /* rows per warp in a group, at most 4 (5 loads per 4 FMAs in the dots) and at most
   * 16 register sums of one d slice each per lane */
  int cap = 16 / ((s->head_dim + 31) / 32);
  g.R = g.st.group / t->warps;
  g.R = g.R < 4 ? g.R : 4;
  g.R = g.R < cap ? g.R : cap;
  if (g.R < 1)
    g.R = 1;
  g.warps = t->warps;
  if (g.st.group < 1) {   /* tile_check refuses such tiles first */
    ir_kernel_free(k);
    return NULL;
  }
  int D = s->head_dim;
  fwd_declare_params(&c, k);
  g.kv = ir_shared(k, "kv", TY_F32, (int64_t)g.st.keys * (D + 1));
  g.qa = c.acc = ir_shared(k, "qa", TY_F32, (int64_t)g.st.group * D);
  c.scores = ir_shared(k, "scores", TY_F32, (int64_t)g.st.group * s->max_seq);
  g.scale = ir_shared(k, "scale", TY_F32, g.st.group);
  ir_set_grid(k, 0, ATTN_N, -1, t->rows);
  ir_set_grid(k, 1, ATTN_H, -1, 1);
  ir_set_grid(k, 2, ATTN_B, -1, 1);

  Op *row0 = mul(&b, ir_block_id(&b, 0), i32(&b, t->rows));
  fwd_block_values(&c, &b);
  Builder body;
  Op *gi = ir_for(&b, i32(&b, 0), i32(&b, t->rows), g.st.group, "g", &body)->index;
  emit_group(&g, &body, add(&body, row0, gi),
             ir_bin(&body, OP_MIN, i32(&body, g.st.group), ir_bin(&body, OP_SUB,
                                                                   i32(&body, t->rows), gi)));
  return k;
}
