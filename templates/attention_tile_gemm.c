/* The tile schedule's GEMM micro-kernel (see attention_tile_gemm.h). */
#include "attention_tile_gemm.h"

#include "attention_common.h"
#include "attention_tile.h"

static Op *wide(Builder *b, Op *x) { return x->type == TY_I64 ? x : ir_cast(b, TY_I64, x); }

/* In i64 (see attention_tile.c: i32 addresses make LLVM version the loops). */
void tile_gemm_acc(Builder *b, Buf *acc, Op *aoff, int R, Buf *w, Op *woff, int64_t wr,
                   int64_t wt, Buf *x, Op *xoff, Op *xs, Op *cnt, int D) {
  Builder loop;
  Op *wv[4];
  Op *w0 = wide(b, woff), *x0 = wide(b, xoff), *xs64 = wide(b, xs);
  Op *t = ir_for(b, ir_const_i64(b, 0), wide(b, cnt), 1, "t", &loop)->index;
  Op *wt0 = attn_add(&loop, w0, attn_mul(&loop, t, ir_const_i64(&loop, wt)));
  for (int r = 0; r < R; r++)
    wv[r] = ir_load(&loop, w, attn_add(&loop, wt0, ir_const_i64(&loop, r * wr)));
  tile_axpy_at(&loop, acc, aoff, wv, R, x,
               attn_add(&loop, x0, attn_mul(&loop, t, xs64)), D);
}
