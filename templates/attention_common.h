/* IR helpers shared by the attention templates (forward, backward, select). They
 * build IR through ir/ir.h only, so every kernel that uses them computes the same
 * bits: a backward kernel that recomputes scores with attn_row_scores gets exactly
 * the forward's S and so exactly its kept set (S >= tau).
 *
 * Row helpers work in warp-level code (inside pfor.warp) on one row of scores held
 * in a shared array: S_j = buf[base + j] for j < m, lanes over j. */
#ifndef CRISP_ATTENTION_COMMON_H
#define CRISP_ATTENTION_COMMON_H

#include "templates.h"

Op *attn_i32(Builder *b, int64_t v);
Op *attn_add(Builder *b, Op *x, Op *y);
Op *attn_mul(Builder *b, Op *x, Op *y);

/* Order-preserving keys of f32 values, as i32 bit patterns (NaN-free inputs):
 *   attn_order_key:  x < y  <=>  key(x) <u key(y)   (compare with CMP_ULT/CMP_UGE)
 *   attn_signed_key: x < y  <=>  key(x) <  key(y)   (signed: CMP_LT, RED_MAX/RED_MIN)
 * -0 orders just below +0. attn_from_* invert them exactly. */
Op *attn_order_key(Builder *b, Op *x);
Op *attn_from_order_key(Builder *b, Op *key);
Op *attn_signed_key(Builder *b, Op *x);

/* f32 x other than +-0, NaN included: the IR's float compares are ordered, so
 * x != 0 alone is false for NaN; `x == x ? x != 0 : true` is what LLVM folds into one
 * unordered compare (fcmp une; PTX setp.neu: registers unchanged over the
 * ptxas-sweep). The backward's "is there anything to add" tests use it, so a NaN
 * weight is added (and reaches the sums) rather than skipped as a zero
 * (tests/backward_nonfinite.c). */
Op *attn_nonzero(Builder *b, Op *x);
Op *attn_from_signed_key(Builder *b, Op *key);

/* keep = min(max(keep_min, ceil((1 - s) * m - 1e-6)), m), in f64 (DESIGN §4).
 * sparsity: an f64 value; m: i32. Matches attention_keep_count() in reference.c. */
Op *attn_keep_count(Builder *b, Op *sparsity, Op *m, int keep_min);

/* Element offset of (batch, i, head, 0) in a tensor with strides sb, sn, sh (i32). */
Op *attn_offset(Builder *b, Op *batch, Op *i, Op *head, Op *sb, Op *sn, Op *sh);

/* The head after (batch, head) in x, y, z block order, (batch, head + 1) or
 * (batch + 1, 0): a thread's next block where a block is a head. *nb may be B (none). */
void attn_next_head(Builder *b, Op *batch, Op *head, Op *H, Op **nb, Op **nh);

/* One prefetch per 64-byte line of D floats at buf[row] (row: i64). */
void attn_prefetch_row(Builder *b, Buf *buf, Op *row, int D);

/* Block-level: dst[r*ld + d] = src[off0 + r*stride + d] for r < nrows, d < D, rows
 * over the warps and consecutive lanes on consecutive d, so the block reads each row
 * of a tile once, coalesced (off0, stride: i32; with D < 32, or not a multiple of 32,
 * some lanes idle in a row's last step). On the host the rows are a loop and each
 * row a vectorised copy: as one flat loop over r*D + d the copy compiled to gathers
 * and scatters and made the staged select hist 1.6x slower there. The GPU schedules stage
 * K/V (or Q/dO) tiles this way for all warps of a block to share; ld = D + 1 keeps
 * lanes that read one d of 32 different rows on 32 different shared-memory banks.
 * The caller puts the barriers around it (before: the tile's readers are done;
 * after: before they start). */
void attn_stage_rows(Builder *b, Buf *dst, int64_t ld, Buf *src, Op *off0, Op *stride,
                     Op *nrows, int D);

/* The builder of code that runs where a && c holds (either may be NULL: no
 * condition): b itself, or `then`, an `if` appended to b. */
Builder *attn_where(Builder *b, Op *a, Op *c, Builder *then);

typedef struct AttnRow {
  Buf *buf;   /* shared f32 array holding the row */
  Op *base;   /* i32: offset of S_0 in buf */
  Op *m;      /* i32: number of valid entries */
} AttnRow;

/* S_j = (sum_d q[qoff + d] * k[k0 + j*kstride + d]) * f32(1/sqrt(D)) into the row,
 * lanes over j. Every kernel of one schedule scores with the same form, so they all
 * get the same bits (templates.h):
 *   host = true  (SCHED_WARP_HOST): a serial reduce over d, which the host
 *                vectorises (reassociates);
 *   host = false (SCHED_WARP): a sum over d in order, attn_rows_scores for one row. */
void attn_row_scores(Builder *b, const AttnRow *r, Buf *q, Buf *k, Op *qoff, Op *k0,
                     Op *kstride, int D, bool host);

/* SCHED_WARP's scores for R <= ATTN_ROWS_MAX rows at once: rows[t] gets
 * S_tj = (sum_d q[qoff[t] + d] * k[k0 + j*kstride + d], in order of d) * f32(1/sqrt(D))
 * for j < rows[t].m, lanes over j up to the rows' largest m. A lane loads k_jd once
 * for all R rows: R + 1 shared loads per R FMAs instead of 2 per FMA. Each row's sum
 * is the one-row sum, to the bit. Every qoff[t] must address readable q (a row
 * with m = 0 still loads it: point it at a valid row). */
enum { ATTN_ROWS_MAX = 8 };
void attn_rows_scores(Builder *b, int R, const AttnRow rows[], Buf *q, Op *const qoff[],
                      Buf *k, Op *k0, Op *kstride, int D);

/* max_j S_j as f32, reduced as an i32 max over attn_signed_key (vectorises on the
 * CPU, where LLVM 16 cannot vectorise a float max without fast-math flags). A NaN
 * score of either sign makes the max NaN (its key is INT32_MAX, above +inf's), so the
 * row's exponentials, lse and o are NaN: with signed keys alone a negative NaN (the
 * one x86 makes of inf - inf) sorted below -inf, and every kept-key test (S >= tau)
 * is false for it, so the row came out finite as if that key were masked
 * (tests/test_nonfinite.c). */
Op *attn_row_max(Builder *b, const AttnRow *r);

/* #{j : S_j >= tau} (float compare, ties counted), i32. */
Op *attn_row_count_ge(Builder *b, const AttnRow *r, Op *tau);

/* The k-th largest S_j (counting repeats), exactly, -0 as +0; -inf when k >= m (every
 * entry kept). k >= 1. attention_kth.c: a key interval narrowed by counting passes,
 * the probes guessed from a few sampled scores and then interpolated (~6 passes on
 * random rows of 512, the row's max included; at most 47). */
Op *attn_row_kth_largest(Builder *b, const AttnRow *r, Op *k);
/* The same, and *count = #{j : S_j >= the result} (m when k >= m), which the search
 * knows: no separate counting pass. */
Op *attn_row_kth_count(Builder *b, const AttnRow *r, Op *k, Op **count);
/* attn_row_kth_count for n <= ATTN_KTH_ROWS rows at once, their passes interleaved
 * step by step: each search is a chain of dependent passes (count, then the next
 * probe), which n independent chains overlap on an out-of-order CPU. mx: the rows'
 * attn_row_max when the caller has them (NULL: computed where needed). */
enum { ATTN_KTH_ROWS = 8 };
void attn_rows_kth_count(Builder *b, const AttnRow rows[], int n, Op *const k[],
                         Op *const mx[], Op *tau[], Op *count[]);

#endif
