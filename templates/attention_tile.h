/* Register-blocked building blocks of the CPU ("tile") schedule of the attention
 * kernels: GEMM-like micro-kernels written as IR, so the CPU mapping turns them into
 * straight vector code (lanes over keys or over d become vectorised loops, the small
 * accumulator tile a handful of vector registers).
 *
 * All helpers emit warp-level code (inside pfor.warp), store only through pfor.lane,
 * and are therefore also valid GPU kernels: the interpreter checks them with GPU
 * semantics (one warp, lanes over the vector dimension) for races and reads of
 * unwritten shared memory.
 *
 * Score bits: tile_scores sums d = 0..D-1 in order as an fma chain, then multiplies
 * by the scale. Every kernel of the tile schedule (forward, dq, dkdv) uses it for S,
 * so they agree bit for bit on S and hence on the kept set S >= tau; operand order
 * of a product does not matter (fma rounds once). */
#ifndef CRISP_ATTENTION_TILE_H
#define CRISP_ATTENTION_TILE_H

#include "templates.h"

/* Rows (of the left operand) and keys (columns) of one score micro-tile: 4 x 64
 * f32 accumulators are 16 zmm registers on AVX-512, twice the FMA latency x pipes
 * (4 x 2) of the CPU measured in docs/kernels.md (4 x 32, exactly 4 x 2: forward +
 * backward took 1.12x the time), leaving room for the broadcast row values and the
 * four key vectors. TILE_JT / 16 must be a power of two (the lowering vectorises a lane
 * loop whole only with a power-of-two interleave; 96 keys were left a loop over
 * memory accumulators). Counts are padded to TILE_JQ keys; a count that is not a
 * multiple of TILE_JT ends in one narrower tile (TILE_JT - TILE_JQ, ... keys). */
enum { TILE_RT = 4, TILE_JT = 64, TILE_JQ = 32, TILE_ACC = TILE_RT * TILE_JT };

/* The backward's dK/dV updates: query rows per update (a multiple of TILE_RT, at most
 * 32: one bit each in an i32 row mask; each update reads and writes the block's keys'
 * rows of the head's dK and dV, 256 KiB at n = 512, d = 64, so fewer updates mean less
 * L2 traffic) and keys per register tile (KEY_TILE keys x D of dK and of dV). */
enum { TILE_KR = 32, KEY_TILE = 2 };

/* Floats of padding per slot or packed row (one cache line): rows tile_ld apart, so
 * the rows a tile reads down a column fall in different L1 sets. At max_seq 512 a
 * stride of 2 KiB put the D = 64 packed rows a score tile reads for a head of 64 keys
 * (256 B each) into 8 of the 64 sets, and a key's TILE_KR backward slot rows into two. */
enum { TILE_SLOT_PAD = 16 };

/* The stride of slot and packed rows for max_seq keys: max_seq rounded up to TILE_JT,
 * plus TILE_SLOT_PAD. */
static inline int64_t tile_ld(int max_seq) {
  return (int64_t)(max_seq + TILE_JT - 1) / TILE_JT * TILE_JT + TILE_SLOT_PAD;
}

/* cnt rounded up to a multiple of TILE_JQ (i32). */
Op *tile_pad(Builder *b, Op *cnt);

/* Packs a (b, h) slice transposed: dst[d * ld + j] = src[x0 + j * xs + d] for
 * j < cnt, and 0 for cnt <= j < tile_pad(cnt); d < D. cnt >= 1. ld >= tile_pad(cnt). */
void tile_pack_t(Builder *b, Buf *dst, int64_t ld, Buf *src, Op *x0, Op *xs, Op *cnt, int D);

/* dst[j * D + d] = src[x0 + j * xs + d] for j < cnt, d < D (i32 offsets): rows a
 * tensor stride apart copied contiguous, so later sweeps over them stay in few pages
 * and spread over the L1 sets. */
void tile_copy_rows(Builder *b, Buf *dst, Buf *src, Op *x0, Op *xs, Op *cnt, int D);

/* out[obase + r * ld + j] = scale * sum_{d<D} a[arow[r] + d] * bt[d * ld + j] for
 * r < TILE_RT and j < tile_pad(cnt), a TILE_RT x TILE_JT tile at a time accumulated
 * in acc (a shared array of TILE_RT * TILE_JT floats); scale NULL: no scaling.
 * ld >= tile_pad(cnt). */
void tile_scores(Builder *b, Buf *out, Op *obase, int64_t ld, Buf *a, Op *const arow[],
                 Buf *bt, Op *cnt, int D, Buf *acc, Op *scale);

/* tile_scores for R rows (R divides TILE_ACC, TILE_ACC / R a multiple of TILE_JQ):
 * R x (TILE_ACC / R) tiles in the same acc, e.g. 8 x 32 (also 16 accumulators, but
 * each packed key vector loaded once per 8 rows instead of 4), out's rows ldo apart
 * (bt's ld). Same bits. */
void tile_scores_rows(Builder *b, Buf *out, Op *obase, int64_t ldo, Buf *a, Op *const arow[],
                      int R, Buf *bt, int64_t ld, Op *cnt, int D, Buf *acc, Op *scale);

/* acc[r * D + d] = 0 for r < R, d < D. */
void tile_zero(Builder *b, Buf *acc, int R, int D);

/* acc[r * D + d] += w[r] * x[xoff + d] for every r < R and d < D (an fma; a zero
 * weight leaves its row unchanged). Dense: the caller's loop over keys gives
 * skipped pairs weight 0 (see attention_tile.c for why it does not branch). */
void tile_axpy(Builder *b, Buf *acc, Op *const w[], int R, Buf *x, Op *xoff, int D);

/* tile_axpy on acc[aoff + r * D + d] (aoff an integer Op). */
void tile_axpy_at(Builder *b, Buf *acc, Op *aoff, Op *const w[], int R, Buf *x, Op *xoff,
                  int D);

/* Bits set in x (i32), the SWAR way (LLVM turns it into popcnt). */
Op *tile_popcount(Builder *b, Op *x);

/* A loop over the set bits of mask (i32, bit 31 included), lowest first: *body is its
 * body, the result the bit's index there. One step per set bit, so a sparse product
 * can run over the rows (keys) a mask lists without an `if` in the loop (see
 * tile_axpy). */
Op *tile_for_bits(Builder *b, Op *mask, const char *hint, Builder *body);

/* The steps tile_for_bits loops take over masks bits[0 .. cnt - 1] (i32, cnt >= 1)
 * taken `per` at a time: the sum over t of the set bits of bits[t per] | ... |
 * bits[t per + per - 1], entries past cnt left out (i32; lanes over t). What a
 * masked product will cost, known before it runs. */
Op *tile_bits_steps(Builder *b, Buf *bits, Op *cnt, int per);

#endif
