/* The backward's warp schedule: the helpers its two kernels share, the sums over a
 * staged tile in both forms, the shared-memory layout and the kernel builder
 * (attention_bwd_warp.h says what the schedule is). */
#include "attention_bwd_warp.h"

#include <math.h>
#include <stdio.h>

#include "dropout.h"

/* Offset of row `row` of (batch, head) with strides p[sb], p[sb + 1], p[sb + 2]. */
Op *bwd_row_offset(Ctx *c, Builder *b, int sb, Op *row) {
  return attn_offset(b, c->batch, row, c->head, c->p[sb], c->p[sb + 1], c->p[sb + 2]);
}

/* Index of (batch, head, row) in a [B, H, N] per-row array. */
Op *bwd_row_stat(Ctx *c, Builder *b, Op *row) {
  return add(b, mul(b, add(b, mul(b, c->batch, c->p[ATTN_BWD_H]), c->head), c->p[ATTN_BWD_N]),
             row);
}

Op *bwd_row_hash(Ctx *c, Builder *b, Op *i) {
  return dropout_row_hash_ir(b, c->p[ATTN_BWD_SEED], c->p[ATTN_BWD_STEP], c->p[ATTN_BWD_LAYER],
                             c->batch, c->head, i);
}

/* Thread code: sum_d g[goff + d] * t[toff + d], a serial f32 dot (i64 offsets, as in
 * attn_row_scores). dP has no bit-for-bit contract, only S has. */
Op *bwd_dot_serial(Builder *b, Buf *g, Op *goff, Buf *t, Op *toff, int D) {
  Builder dot;
  Op *g64 = ir_cast(b, TY_I64, goff), *t64 = ir_cast(b, TY_I64, toff);
  Op *red = ir_reduce(b, AXIS_SERIAL, RED_ADD, TY_F32, ir_const_i64(b, D), "d", &dot);
  Op *d = red->index;
  ir_yield(&dot, mul(&dot, ir_load(&dot, g, add(&dot, g64, d)), ir_load(&dot, t, add(&dot, t64, d))));
  return red;
}

/* Lane code: out[t] = sum_d g[goff[t] + d] * v[voff + d] for t < R, in order of d,
 * as vars, summed where `when` holds (else 0). Per d one load of v for all R rows. */
void bwd_dots(Builder *lane, Op *when, int R, Buf *g, Op *const goff[], Buf *v, Op *voff,
              int D, Op *out[]) {
  Builder calc, dot;
  for (int t = 0; t < R; t++)
    out[t] = ir_var(lane, f32(lane, 0), "dp");
  ir_if(lane, when, &calc, NULL);
  Op *g64[ATTN_ROWS_MAX], *v64 = ir_cast(&calc, TY_I64, voff);
  for (int t = 0; t < R; t++)
    g64[t] = ir_cast(&calc, TY_I64, goff[t]);
  Op *d = ir_for(&calc, ir_const_i64(&calc, 0), ir_const_i64(&calc, D), 1, "d", &dot)->index;
  Op *vd = ir_load(&dot, v, add(&dot, v64, d));
  for (int t = 0; t < R; t++) {
    Op *gd = ir_load(&dot, g, add(&dot, g64[t], d));
    ir_set(&dot, out[t], add(&dot, ir_get(&dot, out[t]), mul(&dot, gd, vd)));
  }
}

/* lanes over d: dst[off + d] = val (a constant or acc[base + d] * factor) */
void bwd_write_vec(Ctx *c, Builder *b, Buf *dst, Op *off, Buf *acc, Op *base, Op *factor) {
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

/* lanes over d: acc[base + d] = 0 */
void bwd_zero_vec(Ctx *c, Builder *b, Op *base) {
  Builder lane;
  Op *d = ir_pfor(b, AXIS_LANE, i32(b, c->spec->head_dim), "d", &lane)->index;
  ir_store(&lane, c->acc, add(&lane, base, d), f32(&lane, 0));
}

/* The block's rows (keys) as warp code: warp w takes r = w, w + warps, ..., and
 * *in runs for i = first + r < lim. The same warp owns a row in every such loop. */
void bwd_block_rows(Ctx *c, Builder *b, Op *lim, Builder *in, Op **w, Op **r, Op **i) {
  Builder warp, rows;
  *w = ir_pfor(b, AXIS_WARP, i32(b, c->warps), "w", &warp)->index;
  *r = ir_for(&warp, *w, i32(&warp, c->rows), c->warps, "r", &rows)->index;
  *i = add(&rows, c->first, *r);
  ir_if(&rows, lt(&rows, *i, lim), in, NULL);
}

/* Block-level: each warp w's rows (keys) r = w, w + warps, ... in sets of R: *set runs
 * for each set's first row r0 (returned); its rows are r0 + warps t, t < R. */
Op *bwd_row_sets(Ctx *c, Builder *b, Op **w, Builder *set) {
  Builder warp;
  *w = ir_pfor(b, AXIS_WARP, i32(b, c->warps), "w", &warp)->index;
  return ir_for(&warp, *w, i32(&warp, c->rows), (int64_t)c->warps * c->R, "r0", set)->index;
}

void bwd_set_rows(Ctx *c, Builder *b, Op *r0, Op *valid[], Op *at[], Op *r[], Op *i[]) {
  Op *i0 = add(b, c->first, r0);
  for (int t = 0; t < c->R; t++) {
    Op *rt = add(b, r0, i32(b, t * c->warps));
    at[t] = add(b, c->first, rt);
    valid[t] = lt(b, at[t], c->len);
    if (t)
      valid[t] = ir_bin(b, OP_AND, valid[t], lt(b, rt, i32(b, c->rows)));
    r[t] = ir_select(b, valid[t], rt, r0);
    i[t] = ir_select(b, valid[t], at[t], i0);
  }
}

/* Block-level: a loop over tiles of kt rows t0 in [lo, hi), each staged once: a
 * barrier (the previous tile's readers are done), the copies, a barrier. Returns t0;
 * *n = the tile's row count. */
Op *bwd_tile_loop(Ctx *c, Builder *b, Op *lo, Op *hi, Builder *body, Op **n) {
  Op *t0 = ir_for(b, lo, hi, c->kt, "t0", body)->index;
  *n = min_(body, i32(body, c->kt), sub(body, hi, t0));
  ir_barrier(body);
  return t0;
}

Op *bwd_round_up(Builder *b, Op *n, int g) {
  return mul(b, ir_bin(b, OP_DIV, add(b, n, i32(b, g - 1)), i32(b, g)), i32(b, g));
}

/* Block-level: rows n .. bwd_round_up(n, group) - 1 of a staged tile = 0, so that a group
 * of the sums running past the tile's last row adds 0 * 0, never a stale or unwritten
 * value. */
void bwd_zero_tail(Ctx *c, Builder *b, Buf *tile, Op *n) {
  int D = c->spec->head_dim;
  Builder body;
  Op *cnt = mul(b, sub(b, bwd_round_up(b, n, c->group), n), i32(b, D));
  Op *t = ir_pfor(b, AXIS_BLOCK, cnt, "t", &body)->index;
  Op *row = add(&body, n, ir_bin(&body, OP_DIV, t, i32(&body, D)));
  Op *d = ir_bin(&body, OP_REM, t, i32(&body, D));
  ir_store(&body, tile, add(&body, mul(&body, row, i32(&body, c->ld)), d), f32(&body, 0));
}

/* Warp code, step 3 of both kernels: for tile rows e in [lo, hi) (hi - lo a multiple of
 * the group; slot entries 0 where there is nothing to add), for each sum h < n:
 *   acc[base_h + d] += sum_e slot[slot_h + e] * tile_h[e ld + d],
 * serially over e in order, a group of `group` rows per step, a group whose weights
 * are all zero skipped (the same branch in every lane). The slots are read inside the
 * lane loop, whose end synchronises the warp before the next row overwrites them. Two
 * forms (templates.h), the same fma chain per d, so the same bits:
 *   SCHED_WARP_HOST  lanes over d inside the group loop, the sum in a register for a
 *                    group: what the host vectorises (an inner loop over e would not
 *                    be);
 *   SCHED_WARP       lane l owns d = l, l + 32, ... and keeps those sums in registers
 *                    over all of [lo, hi): per row e one shared load per distinct tile
 *                    and slice, shared by the sums over that tile, and one of each
 *                    weight per lane; the sums read and written once. */
enum { MAXG = ATTN_BWD_SUM_GROUP };

/* x[h][q] = the weights of rows g + q, q < group, of each sum h < n; returns whether
 * any of them is nonzero. */
static Op *load_weights(Ctx *c, Builder *b, Op *g, int n, const BwdSum sum[],
                        Op *x[][MAXG]) {
  Op *any = NULL;
  for (int h = 0; h < n; h++)
    for (int q = 0; q < c->group; q++) {
      x[h][q] = ir_load(b, c->slot, add(b, add(b, sum[h].slot, i32(b, q)), g));
      Op *nz = attn_nonzero(b, x[h][q]);
      any = any ? ir_bin(b, OP_OR, any, nz) : nz;
    }
  return any;
}

static void add_rows_host(Ctx *c, Builder *b, Op *lo, Op *hi, int n, const BwdSum sum[]) {
  int U = c->group, ld = c->ld;
  Builder loop, lane, hit, ok;
  Op *g = ir_for(b, lo, hi, U, "g", &loop)->index;
  Op *d = ir_pfor(&loop, AXIS_LANE, i32(&loop, c->spec->head_dim), "d", &lane)->index;
  Op *x[BWD_MAX_SUMS][MAXG];
  ir_if(&lane, load_weights(c, &lane, g, n, sum, x), &hit, NULL);
  Op *row0 = add(&hit, mul(&hit, g, i32(&hit, ld)), d);
  for (int h = 0; h < n; h++) {
    Builder *at_b = attn_where(&hit, sum[h].valid, NULL, &ok);
    Op *at = add(at_b, sum[h].base, d), *a = ir_load(at_b, c->acc, at);
    for (int q = 0; q < U; q++)
      a = ir_fma(at_b, x[h][q],
                 ir_load(at_b, sum[h].tile, add(at_b, row0, i32(at_b, q * ld))), a);
    ir_store(at_b, c->acc, at, a);
  }
}

enum { MAX_SLICES = 8 };   /* d per lane: head_dim <= 256 */

static void add_rows_registers(Ctx *c, Builder *b, Op *lo, Op *hi, int n, const BwdSum sum[]) {
  int U = c->group, ld = c->ld, D = c->spec->head_dim;
  int lanes = D < 32 ? D : 32, per = (D + lanes - 1) / lanes;
  Builder lane, loop, hit, in, out;
  Op *l = ir_pfor(b, AXIS_LANE, i32(b, lanes), "l", &lane)->index;
  Op *d[MAX_SLICES], *has[MAX_SLICES], *acc[BWD_MAX_SUMS][MAX_SLICES];
  for (int u = 0; u < per; u++) {
    d[u] = add(&lane, l, i32(&lane, u * lanes));
    /* only the last slice can run past D (a multiple of 8) */
    has[u] = (u + 1) * lanes <= D ? NULL : lt(&lane, d[u], i32(&lane, D));
    for (int h = 0; h < n; h++)
      acc[h][u] = ir_var(&lane, f32(&lane, 0), "acc");
    for (int h = 0; h < n; h++) {
      Builder *at = attn_where(&lane, sum[h].valid, has[u], &in);
      ir_set(at, acc[h][u], ir_load(at, c->acc, add(at, sum[h].base, d[u])));
    }
  }
  Op *g = ir_for(&lane, lo, hi, U, "g", &loop)->index;
  Op *x[BWD_MAX_SUMS][MAXG];
  ir_if(&loop, load_weights(c, &loop, g, n, sum, x), &hit, NULL);
  Op *row0 = mul(&hit, g, i32(&hit, ld));
  for (int u = 0; u < per; u++) {
    /* a lane past D reads an entry of its own tile row (d = D - 1) and never stores */
    Op *du = has[u] ? min_(&hit, d[u], i32(&hit, D - 1)) : d[u];
    for (int q = 0; q < U; q++) {
      Op *t[BWD_MAX_SUMS];
      for (int h = 0; h < n; h++) {
        int first = h;   /* the first sum over the same tile loads its row once */
        while (first > 0 && sum[first - 1].tile == sum[h].tile)
          first--;
        t[h] = first < h ? t[first]
                         : ir_load(&hit, sum[h].tile,
                                   add(&hit, add(&hit, row0, du), i32(&hit, q * ld)));
        ir_set(&hit, acc[h][u], ir_fma(&hit, x[h][q], t[h], ir_get(&hit, acc[h][u])));
      }
    }
  }
  for (int u = 0; u < per; u++)
    for (int h = 0; h < n; h++) {
      Builder *at = attn_where(&lane, sum[h].valid, has[u], &out);
      ir_store(at, c->acc, add(at, sum[h].base, d[u]), ir_get(at, acc[h][u]));
    }
}

void bwd_add_rows(Ctx *c, Builder *b, Op *lo, Op *hi, int n, const BwdSum sum[]) {
  if (c->host)
    add_rows_host(c, b, lo, hi, n, sum);
  else
    add_rows_registers(c, b, lo, hi, n, sum);
}

/* Block-level, where they fit: the block's own valid rows (i < L) of a and b into
 * own[0], own[1] (D floats apart), before the first tile's barriers, which order them
 * before any read. Their readers take a row from there, else from global memory,
 * where every lane of a warp read it again for every staged tile. */
void bwd_stage_own(Ctx *c, Builder *b, int sa, int ia, int sb, int ib) {
  if (!c->own[0])
    return;
  int D = c->spec->head_dim;
  Op *n = ir_bin(b, OP_MAX, min_(b, i32(b, c->rows), sub(b, c->len, c->first)), i32(b, 0));
  attn_stage_rows(b, c->own[0], D, c->buf[ia], bwd_row_offset(c, b, sa, c->first),
                  c->p[sa + 1], n, D);
  attn_stage_rows(b, c->own[1], D, c->buf[ib], bwd_row_offset(c, b, sb, c->first),
                  c->p[sb + 1], n, D);
}

/* Row r of the block's own rows h: the staged copy, or row i of buf in global memory. */
Buf *bwd_own_row(Ctx *c, Builder *b, int h, int buf, int sb, Op *i, Op *r, Op **off) {
  if (c->own[h]) {
    *off = mul(b, r, i32(b, c->spec->head_dim));
    return c->own[h];
  }
  *off = bwd_row_offset(c, b, sb, i);
  return c->buf[buf];
}

/* ---- the shared-memory layout and the kernels ---- */

/* Shared floats of one kernel with staged tiles of kt rows: two tiles, the block's
 * sums (D per row for dq, 2D per key for dkdv), the warps' slots, the per-row
 * values (dq: Delta per block row; dkdv: lse, tau, Delta and the hash per tile row). */
int bwd_rows_per_warp(const Spec *s, const TileConfig *t, bool dq) {
  if (t->sched == SCHED_WARP_HOST)
    return 1;
  /* at most 4, and at most 16 sums of one d slice each per lane (registers) */
  int per = (s->head_dim + 31) / 32, cap = 16 / (per * (dq ? 1 : 2));
  int R = t->rows / t->warps;
  R = R < 4 ? R : 4;
  R = R < cap ? R : cap;
  return R < 1 ? 1 : R;
}

static int64_t shared_floats(const Spec *s, const TileConfig *t, bool dq, int64_t kt,
                             bool own) {
  int64_t D = s->head_dim, rows = t->rows, W = t->warps, o = own ? 2 * rows * D : 0;
  int64_t slots = W * bwd_rows_per_warp(s, t, dq) * kt;
  if (dq)
    return 2 * kt * (D + 1) + rows * D + slots + rows + o;
  return 2 * kt * (D + 1) + 2 * rows * D + 2 * slots + 4 * kt + o;
}

int attention_bwd_stage_rows(const Spec *s, const TileConfig *t, bool dq) {
  int kt = ATTN_BWD_STAGE_ROWS;
  while (kt > 1 && 4 * shared_floats(s, t, dq, kt, false) > TILE_SHARED_LIMIT)
    kt /= 2;
  return kt;
}

bool attention_bwd_stages_own(const Spec *s, const TileConfig *t, bool dq) {
  int kt = attention_bwd_stage_rows(s, t, dq);
  return 4 * shared_floats(s, t, dq, kt, true) <= TILE_SHARED_LIMIT;
}

int64_t attention_bwd_shared_bytes(const Spec *s, const TileConfig *t) {
  int64_t dq = shared_floats(s, t, true, attention_bwd_stage_rows(s, t, true),
                             attention_bwd_stages_own(s, t, true));
  int64_t dkdv = shared_floats(s, t, false, attention_bwd_stage_rows(s, t, false),
                               attention_bwd_stages_own(s, t, false));
  return 4 * (dq > dkdv ? dq : dkdv);
}

static Kernel *build(const Spec *s, const TileConfig *t, bool dq) {
  char name[96];
  snprintf(name, sizeof name, "%s_attn_bwd_%s", s->name, dq ? "dq" : "dkdv");
  Kernel *k = ir_kernel_new(name, t->warps);
  Builder b = ir_builder(k);
  int D = s->head_dim, kt = attention_bwd_stage_rows(s, t, dq);
  Ctx c = {.k = k, .spec = s, .rows = t->rows, .warps = t->warps, .kt = kt, .ld = D + 1,
           .group = kt < ATTN_BWD_SUM_GROUP ? kt : ATTN_BWD_SUM_GROUP,
           .host = t->sched == SCHED_WARP_HOST, .R = bwd_rows_per_warp(s, t, dq)};
  bwd_declare_params(k, dq ? ATTN_BWD_DQ_PART : ATTN_BWD_DKDV_PART, c.buf, c.p);
  c.ta = ir_shared(k, dq ? "k_tile" : "q_tile", TY_F32, (int64_t)kt * c.ld);
  c.tb = ir_shared(k, dq ? "v_tile" : "do_tile", TY_F32, (int64_t)kt * c.ld);
  c.acc = ir_shared(k, dq ? "dq_sum" : "dkdv_sum", TY_F32, (int64_t)t->rows * (dq ? D : 2 * D));
  c.slot = ir_shared(k, "slot", TY_F32, (int64_t)t->warps * c.R * (dq ? kt : 2 * kt));
  c.stat = ir_shared(k, dq ? "delta_rows" : "tile_rows", TY_F32, dq ? t->rows : 3 * kt);
  if (!dq)
    c.hash = ir_shared(k, "tile_hash", TY_I32, kt);
  if (attention_bwd_stages_own(s, t, dq))
    for (int h = 0; h < 2; h++)
      c.own[h] = ir_shared(k, h ? (dq ? "do_rows" : "v_rows") : (dq ? "q_rows" : "k_rows"),
                           TY_F32, (int64_t)t->rows * D);
  ir_set_grid(k, 0, ATTN_BWD_N, -1, t->rows);
  ir_set_grid(k, 1, ATTN_BWD_H, -1, 1);
  ir_set_grid(k, 2, ATTN_BWD_B, -1, 1);

  c.first = mul(&b, ir_block_id(&b, 0), i32(&b, t->rows));
  c.head = ir_block_id(&b, 1);
  c.batch = ir_block_id(&b, 2);
  c.len = ir_load(&b, c.buf[ATTN_BWD_LENGTHS], c.batch);
  c.scale = f32(&b, 1.0 / sqrt((double)D));
  Op *p = c.p[ATTN_BWD_DROPOUT];
  c.thresh = dropout_threshold_ir(&b, p);
  c.inv_keep = ir_bin(&b, OP_DIV, f32(&b, 1.0), sub(&b, f32(&b, 1.0), p));
  if (dq)
    bwd_dq_body(&c, &b);
  else
    bwd_dkdv_body(&c, &b);
  return k;
}

Kernel *attention_bwd_dq_build(const Spec *s, const TileConfig *t) { return build(s, t, true); }
Kernel *attention_bwd_dkdv_build(const Spec *s, const TileConfig *t) { return build(s, t, false); }

