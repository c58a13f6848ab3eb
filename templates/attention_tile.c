/* Register-blocked micro-kernels of the CPU tile schedule (see attention_tile.h). */
#include "attention_tile.h"

#include "attention_common.h"

#define i32 attn_i32
#define add attn_add
#define mul attn_mul

/* Addresses are built in i64: an i32 sum would be sign-extended per element, and
 * LLVM then versions the vector loops for wrap-around (a scalar copy of every
 * micro-kernel, and accumulators it can no longer keep in registers). */
static Op *i64(Builder *b, int64_t v) { return ir_const_i64(b, v); }
static Op *wide(Builder *b, Op *x) { return x->type == TY_I64 ? x : ir_cast(b, TY_I64, x); }

Op *tile_pad(Builder *b, Op *cnt) {
  Op *up = add(b, cnt, i32(b, TILE_JQ - 1));
  return mul(b, ir_bin(b, OP_DIV, up, i32(b, TILE_JQ)), i32(b, TILE_JQ));
}

/* Tiles of 16 keys x 16 d by transpose16 (registers and shuffles on the host; a
 * strided lane loop compiled to gathers cost ~13% of the forward at n = 64); keys
 * past cnt are not read and store 0. */
static void pack_t16(Builder *b, Buf *dst, int64_t ld, Buf *src, Op *x0, Op *xs, Op *cnt, int D) {
  Builder keys, dims;
  Op *x064 = wide(b, x0), *xs64 = wide(b, xs), *cnt64 = wide(b, cnt);
  Op *j0 = ir_for(b, i64(b, 0), wide(b, tile_pad(b, cnt)), 16, "j0", &keys)->index;
  Op *row = add(&keys, x064, mul(&keys, j0, xs64));
  Op *rows = ir_bin(&keys, OP_SUB, cnt64, j0);
  Op *d0 = ir_for(&keys, i64(&keys, 0), i64(&keys, D), 16, "d0", &dims)->index;
  ir_transpose(&dims, dst, add(&dims, mul(&dims, d0, i64(&dims, ld)), j0), ld, src,
               add(&dims, row, d0), xs64, rows);
}

/* By transpose16 tiles when D is a multiple of 16; otherwise lanes over keys j
 * (contiguous stores, strided loads), rows past cnt reading row cnt - 1 (always in
 * bounds) and storing 0. */
void tile_copy_rows(Builder *b, Buf *dst, Buf *src, Op *x0, Op *xs, Op *cnt, int D) {
  Builder rows, lane;
  Op *j = ir_for(b, i32(b, 0), cnt, 1, "j", &rows)->index;
  Op *from = add(&rows, x0, mul(&rows, j, xs)), *to = mul(&rows, j, i32(&rows, D));
  Op *d = ir_pfor(&rows, AXIS_LANE, i32(&rows, D), "d", &lane)->index;
  ir_store(&lane, dst, add(&lane, to, d), ir_load(&lane, src, add(&lane, from, d)));
}

void tile_pack_t(Builder *b, Buf *dst, int64_t ld, Buf *src, Op *x0, Op *xs, Op *cnt, int D) {
  if (D % 16 == 0) {
    pack_t16(b, dst, ld, src, x0, xs, cnt, D);
    return;
  }
  Builder loop, lane;
  Op *pad = wide(b, tile_pad(b, cnt));
  Op *cnt64 = wide(b, cnt), *x064 = wide(b, x0), *xs64 = wide(b, xs);
  Op *d = ir_for(b, i64(b, 0), i64(b, D), 1, "d", &loop)->index;
  Op *src0 = add(&loop, x064, d), *dst0 = mul(&loop, d, i64(&loop, ld));
  Op *j = ir_pfor(&loop, AXIS_LANE, pad, "j", &lane)->index;
  Op *in = ir_cmp(&lane, CMP_LT, j, cnt64);
  Op *jc = ir_bin(&lane, OP_MIN, j, ir_bin(&lane, OP_SUB, cnt64, i64(&lane, 1)));
  Op *x = ir_load(&lane, src, add(&lane, src0, mul(&lane, jc, xs64)));
  ir_store(&lane, dst, add(&lane, dst0, j), ir_select(&lane, in, x, ir_const_f32(&lane, 0)));
}

void tile_zero(Builder *b, Buf *acc, int R, int D) {
  Builder lane;
  Op *t = ir_pfor(b, AXIS_LANE, i64(b, (int64_t)R * D), "t", &lane)->index;
  ir_store(&lane, acc, t, ir_const_f32(&lane, 0));
}

/* One key tile j0 .. j0 + W - 1 of R rows: the d loop is outermost so each of the
 * R * W sums stays in acc (registers once unrolled) for all D steps; per step R row
 * values are broadcast against one contiguous run of W packed keys. */
static void score_tile(Builder *b, Buf *out, Op *obase, int64_t ldo, Buf *a, Op *const arow[],
                       int R, Buf *bt, int64_t ld, Op *j0, int W, int D, Buf *acc, Op *scale) {
  Builder loop, lane;
  tile_zero(b, acc, R, W);
  Op *d = ir_for(b, i64(b, 0), i64(b, D), 1, "d", &loop)->index;
  Op *brow = add(&loop, mul(&loop, d, i64(&loop, ld)), j0);
  for (int r = 0; r < R; r++) {
    Op *ar = ir_load(&loop, a, add(&loop, arow[r], d));
    Op *jj = ir_pfor(&loop, AXIS_LANE, i64(&loop, W), "jj", &lane)->index;
    Op *at = add(&lane, i64(&lane, (int64_t)r * W), jj);
    Op *bv = ir_load(&lane, bt, add(&lane, brow, jj));
    ir_store(&lane, acc, at, ir_fma(&lane, ar, bv, ir_load(&lane, acc, at)));
  }
  for (int r = 0; r < R; r++) {
    Op *jj = ir_pfor(b, AXIS_LANE, i64(b, W), "jj", &lane)->index;
    Op *sv = ir_load(&lane, acc, add(&lane, i64(&lane, (int64_t)r * W), jj));
    Op *at = add(&lane, add(&lane, obase, i64(&lane, r * ldo)), add(&lane, j0, jj));
    ir_store(&lane, out, at, scale ? mul(&lane, sv, scale) : sv);
  }
}

/* Tiles TILE_ACC / R keys wide while they fit the padded count, then the rest (a
 * multiple of TILE_JQ) in at most one tile of each narrower multiple of TILE_JQ,
 * widest first, so no key past tile_pad(cnt) is scored. */
void tile_scores_rows(Builder *b, Buf *out, Op *obase, int64_t ldo, Buf *a, Op *const arow[],
                      int R, Buf *bt, int64_t ld, Op *cnt, int D, Buf *acc, Op *scale) {
  Builder loop, tail;
  Op *rows[TILE_ACC / TILE_JQ];
  int width = TILE_ACC / R;
  for (int r = 0; r < R; r++)
    rows[r] = wide(b, arow[r]);
  Op *base = wide(b, obase), *pad = wide(b, tile_pad(b, cnt));
  Op *full = mul(b, ir_bin(b, OP_DIV, pad, i64(b, width)), i64(b, width));
  Op *j0 = ir_for(b, i64(b, 0), full, width, "j0", &loop)->index;
  score_tile(&loop, out, base, ldo, a, rows, R, bt, ld, j0, width, D, acc, scale);
  Op *j = full;
  for (int w = width - TILE_JQ; w >= TILE_JQ; w -= TILE_JQ) {
    Op *fits = ir_cmp(b, CMP_GE, ir_bin(b, OP_SUB, pad, j), i64(b, w));
    ir_if(b, fits, &tail, NULL);
    score_tile(&tail, out, base, ldo, a, rows, R, bt, ld, j, w, D, acc, scale);
    j = ir_select(b, fits, add(b, j, i64(b, w)), j);
  }
}

void tile_scores(Builder *b, Buf *out, Op *obase, int64_t ld, Buf *a, Op *const arow[],
                 Buf *bt, Op *cnt, int D, Buf *acc, Op *scale) {
  tile_scores_rows(b, out, obase, ld, a, arow, TILE_RT, bt, ld, cnt, D, acc, scale);
}

/* Unconditional on purpose: skipping keys no row uses (an `if` around the update)
 * made LLVM keep one vector store per fma in the loop (the accumulators could no
 * longer stay in registers across it), which measured slower at every sparsity
 * than doing the dense work; with random per-row kept sets few keys are unused by
 * all TILE_RT rows anyway. */
void tile_axpy_at(Builder *b, Buf *acc, Op *aoff, Op *const w[], int R, Buf *x, Op *xoff,
                  int D) {
  Builder lane;
  Op *x0 = wide(b, xoff), *a0 = wide(b, aoff);
  for (int r = 0; r < R; r++) {
    Op *d = ir_pfor(b, AXIS_LANE, i64(b, D), "d", &lane)->index;
    Op *at = add(&lane, add(&lane, a0, i64(&lane, (int64_t)r * D)), d);
    Op *xv = ir_load(&lane, x, add(&lane, x0, d));
    ir_store(&lane, acc, at, ir_fma(&lane, w[r], xv, ir_load(&lane, acc, at)));
  }
}

void tile_axpy(Builder *b, Buf *acc, Op *const w[], int R, Buf *x, Op *xoff, int D) {
  tile_axpy_at(b, acc, i64(b, 0), w, R, x, xoff, D);
}

Op *tile_popcount(Builder *b, Op *x) {
  Op *m1 = i32(b, 0x55555555), *m2 = i32(b, 0x33333333), *m4 = i32(b, 0x0F0F0F0F);
  x = ir_bin(b, OP_SUB, x, ir_bin(b, OP_AND, ir_bin(b, OP_SHR, x, i32(b, 1)), m1));
  x = add(b, ir_bin(b, OP_AND, x, m2), ir_bin(b, OP_AND, ir_bin(b, OP_SHR, x, i32(b, 2)), m2));
  x = ir_bin(b, OP_AND, add(b, x, ir_bin(b, OP_SHR, x, i32(b, 4))), m4);
  return ir_bin(b, OP_SHR, mul(b, x, i32(b, 0x01010101)), i32(b, 24));
}

Op *tile_for_bits(Builder *b, Op *mask, const char *hint, Builder *body) {
  Op *left = ir_var(b, mask, "left");
  ir_for(b, i32(b, 0), tile_popcount(b, mask), 1, hint, body);
  Op *rest = ir_get(body, left);
  /* the lowest set bit's index (tzcnt), then that bit cleared (blsr) */
  ir_set(body, left, ir_bin(body, OP_AND, rest, ir_bin(body, OP_SUB, rest, i32(body, 1))));
  return ir_un(body, OP_CTZ, rest);
}

Op *tile_bits_steps(Builder *b, Buf *bits, Op *cnt, int per) {
  Builder lane;
  Op *tiles = ir_bin(b, OP_DIV, add(b, cnt, i32(b, per - 1)), i32(b, per));
  Op *red = ir_reduce(b, AXIS_LANE, RED_ADD, TY_I32, tiles, "t", &lane);
  Op *j0 = mul(&lane, red->index, i32(&lane, per));
  Op *last = ir_bin(&lane, OP_SUB, cnt, i32(&lane, 1)), *m = i32(&lane, 0);
  for (int k = 0; k < per; k++)   /* past cnt: the last entry again, which adds no bit */
    m = ir_bin(&lane, OP_OR, m,
               ir_load(&lane, bits, ir_bin(&lane, OP_MIN, add(&lane, j0, i32(&lane, k)), last)));
  ir_yield(&lane, tile_popcount(&lane, m));
  return red;
}
