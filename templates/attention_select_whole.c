/* The tile schedule's one-launch select for small heads (round WHOLE, plan
 * SELECT_PLAN_WHOLE; attention_select.h): the hist block of a head scores all of it
 * once into a shared buffer and finds tau there by the forward's exact k-th search.
 *
 * Why: up to 128 x 128 scores the bracket plan's sample already was the whole head,
 * and pick(SAMPLE) then selected among the stored keys by the radix in miniature: a
 * scalar histogram increment per key for the top digit, a compaction, two more
 * sweeps, and per digit 2064 shared bins zeroed, summed and scanned (perf at n = 64,
 * B = 16, H = 12: pick ~44 % of the select, ~24k cycles per head), behind 10 more
 * launches (the bracket and radix rounds, no-ops by then) on the host. The counting
 * search of attention_kth.c (a key interval narrowed by vectorised passes over the
 * scores, probes guessed from the counts) needs ~6-10 passes of 16 compares per
 * vector, and running it in the hist block leaves one launch per call and the scores
 * in the block's own cache.
 *
 * Exact, the same bits as the radix: the search gives the largest f32 value with at
 * least keep scores >= it, i.e. the keep-th largest score, with -0 as +0 (they compare
 * equal). The radix orders -0 below +0 (order keys) and returns -0 where the keep-th
 * largest key is -0's: fewer than keep scores have a clear sign bit. A zero tau pays one
 * more pass to count those (a -0 score needs an underflowing product or sum: rare). */
#include <math.h>

#include "attention_select_impl.h"

#define i32 attn_i32

/* #{j < m : scores[j] has its sign bit clear} (+0 and above, as order keys). */
static Op *count_sign_clear(Builder *b, Buf *scores, Op *m) {
  Builder body;
  Op *red = ir_reduce(b, AXIS_LANE, RED_ADD, TY_I32, m, "j", &body);
  Op *bits = ir_bitcast(&body, TY_I32, ir_load(&body, scores, red->index));
  Op *clear = ir_cmp(&body, CMP_GE, bits, i32(&body, 0));
  ir_yield(&body, ir_select(&body, clear, i32(&body, 1), i32(&body, 0)));
  return red;
}

void select_whole_round(SelCtx *c, Builder *b, const HistBlock *h, Buf *scores,
                        void (*score)(void *ctx, Builder *b), void *ctx) {
  Op *M = select_group_count(c, b, h->g);
  Op *keep = attn_keep_count(b, c->p[SELECT_SPARSITY], M, c->spec->keep_min);
  Op *fits = ir_cmp(b, CMP_LE, M, i32(b, scores->size));
  Op *some = ir_cmp(b, CMP_GT, keep, i32(b, 0));
  /* keep = M > 0: every score kept, -inf; keep = 0 (M = 0): +inf (attention_select.h) */
  Op *tau = ir_var(b, ir_select(b, some, ir_const_f32(b, -INFINITY), ir_const_f32(b, INFINITY)),
                   "tau");
  Op *search = ir_bin(b, OP_AND, ir_bin(b, OP_AND, some, ir_cmp(b, CMP_LT, keep, M)), fits);
  Builder go, zero, one, write;
  ir_if(b, search, &go, NULL);
  score(ctx, &go);
  AttnRow row = {scores, i32(&go, 0), M};
  Op *t = attn_row_kth_largest(&go, &row, keep);
  ir_set(&go, tau, t);
  ir_if(&go, ir_cmp(&go, CMP_EQ, t, ir_const_f32(&go, 0)), &zero, NULL);
  Op *plus = count_sign_clear(&zero, scores, M);
  ir_set(&zero, tau, ir_select(&zero, ir_cmp(&zero, CMP_LT, plus, keep),
                               ir_const_f32(&zero, -0.0), ir_const_f32(&zero, 0.0)));
  ir_pfor(b, AXIS_LANE, i32(b, 1), "one", &one);
  ir_if(&one, fits, &write, NULL);
  ir_store(&write, c->tau_group, h->g, ir_get(&write, tau));
  ir_store(&write, c->rank, h->g, i32(&write, SELECT_DONE));
}
