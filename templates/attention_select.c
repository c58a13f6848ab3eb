/* The select template: group thresholds by a 3-round radix select over order keys
 * of recomputed scores (see attention_select.h for the algorithm and the plan). */
#include "attention_select_impl.h"
#include "attention_tile.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define i32 attn_i32
#define add attn_add
#define mul attn_mul

enum { CHUNK = SELECT_CHUNK, NCHUNKS = SELECT_NCHUNKS };   /* pick: bins per thread, threads */

static const char *const suffixes[SELECT_NKERNELS] = {"select_init", "select_hist",
                                                      "select_pick"};

const char *attention_select_kernel_name(SelectKernel which) { return suffixes[which]; }

static bool per_head(const Spec *s) { return s->select == SEL_HEAD_QUANTILE; }

static bool has_groups(const Spec *s) {
  return s->select == SEL_HEAD_QUANTILE || s->select == SEL_LAYER_QUANTILE;
}

int attention_select_groups(const Spec *s, int B, int H) {
  return !has_groups(s) ? 0 : per_head(s) ? B * H : 1;
}

bool attention_select_has_cand(const TileConfig *t) { return t->sched == SCHED_TILE; }

/* An eighth of the scores, or the whole head's row groups while they hold at most
 * SELECT_SAMPLE_KEYS (so round SAMPLE takes the whole of a small head), plus the room
 * a row group reserves before it is stored */
int attention_select_cand_cap(int max_len) {
  int64_t L = max_len, groups = (L + TILE_RT - 1) / TILE_RT * TILE_RT * L;
  int64_t whole = groups < SELECT_SAMPLE_KEYS ? groups : SELECT_SAMPLE_KEYS;
  return (int)((L * L / 8 > whole ? L * L / 8 : whole) + TILE_RT * L);
}

int64_t attention_select_cand_len(int B, int H, int cap) {
  return (int64_t)B * H * ((cap > 0 ? cap : 0) + SELECT_CAND_HEAD);
}

static void declare_params(SelCtx *c, const TileConfig *t) {
  static const char *const ints[] = {"B", "H", "N", "qkv_sb", "qkv_sn", "qkv_sh"};
  Kernel *k = c->k;
  c->q = ir_param_buf(k, "q", TY_F32, ROLE_IN);
  c->kk = ir_param_buf(k, "k", TY_F32, ROLE_IN);
  c->lengths = ir_param_buf(k, "lengths", TY_I32, ROLE_IN);
  c->hist = ir_param_buf(k, "hist", TY_I32, ROLE_INOUT);
  c->prefix = ir_param_buf(k, "prefix", TY_I32, ROLE_INOUT);
  c->rank = ir_param_buf(k, "rank", TY_I32, ROLE_INOUT);
  c->tau_group = ir_param_buf(k, "tau_group", TY_F32, ROLE_OUT);
  for (int i = 0; i < 6; i++)
    c->p[SELECT_B + i] = ir_param_scalar(k, ints[i], TY_I32);
  c->p[SELECT_SPARSITY] = ir_param_scalar(k, "sparsity", TY_F64);
  c->p[SELECT_ROUND] = ir_param_scalar(k, "round", TY_I32);
  if (attention_select_has_cand(t)) {
    c->cand = ir_param_buf(k, "cand", TY_I32, ROLE_INOUT);
    c->p[SELECT_CAND_CAP] = ir_param_scalar(k, "cand_cap", TY_I32);
  }
}

/* Kernels with one block per group: grid (H, B) for head_quantile, (1) for layer. */
static Op *group_grid(SelCtx *c, Builder *b) {
  if (!per_head(c->spec))
    return i32(b, 0);
  ir_set_grid(c->k, 0, SELECT_H, -1, 1);
  ir_set_grid(c->k, 1, SELECT_B, -1, 1);
  return add(b, mul(b, ir_block_id(b, 1), c->p[SELECT_H]), ir_block_id(b, 0));
}

/* Per round: a = round 0 ? v0 : round 1 ? v1 : v2, block-uniform. */
static Op *by_round(SelCtx *c, Builder *b, int64_t v0, int64_t v1, int64_t v2) {
  Op *r = c->p[SELECT_ROUND];
  Op *late = ir_select(b, ir_cmp(b, CMP_EQ, r, i32(b, 1)), i32(b, v1), i32(b, v2));
  return ir_select(b, ir_cmp(b, CMP_EQ, r, i32(b, 0)), i32(b, v0), late);
}

/* position of the round's digit in the key: bits 31..21, 20..10, 9..0 */
static Op *digit_shift(SelCtx *c, Builder *b) { return by_round(c, b, SELECT_SHIFT0, 10, 0); }

/* ---- init ---- */

static void build_init(SelCtx *c, Builder *b) {
  Op *g = group_grid(c, b);
  Op *base = mul(b, g, i32(b, SELECT_BINS));
  Builder zb, one;
  Op *i = ir_pfor(b, AXIS_BLOCK, i32(b, SELECT_BINS), "bin", &zb)->index;
  ir_store(&zb, c->hist, add(&zb, base, i), i32(&zb, 0));
  ir_pfor(b, AXIS_BLOCK, i32(b, 1), "one", &one);
  ir_store(&one, c->prefix, g, i32(&one, 0));
  ir_store(&one, c->rank, g, i32(&one, 0));
}

/* ---- hist ---- */

void select_hist_begin(SelCtx *c, Builder *b, const TileConfig *t, HistBlock *h) {
  Kernel *k = c->k;
  h->bins = ir_shared(k, "bins", TY_I32, SELECT_BINS);
  ir_set_grid(k, 0, SELECT_N, -1, t->rows);
  ir_set_grid(k, 1, SELECT_H, -1, 1);
  ir_set_grid(k, 2, SELECT_B, -1, 1);
  h->row0 = mul(b, ir_block_id(b, 0), i32(b, t->rows));
  h->head = ir_block_id(b, 1), h->batch = ir_block_id(b, 2);
  h->len = ir_bin(b, OP_MIN, ir_load(b, c->lengths, h->batch), c->p[SELECT_N]);
  h->g = per_head(c->spec) ? add(b, mul(b, h->batch, c->p[SELECT_H]), h->head) : i32(b, 0);
  Op *round0 = ir_cmp(b, CMP_EQ, c->p[SELECT_ROUND], i32(b, 0));
  /* the bits decided in earlier rounds (none in round 0) */
  h->match = ir_select(b, round0, i32(b, 0), ir_load(b, c->prefix, h->g));
  h->himask = by_round(c, b, 0, (int32_t)0xFFE00000u, (int32_t)0xFFFFFC00u);
  h->dmask = by_round(c, b, 0x7FF, 0x7FF, 0x3FF);
  h->shift = digit_shift(c, b);
  h->binned = ir_const_bool(b, true);
  if (t->sched == SCHED_TILE) {
    /* the tile schedule bins in rounds 0-2 only, and only for groups not settled
     * (attention_select_tile.c); the zeroing and the flush of 2048 bins were ~1/4 of
     * the hist kernel at n = 64, where every launch after SAMPLE bins nothing */
    Op *radix = ir_cmp(b, CMP_LT, c->p[SELECT_ROUND], i32(b, SELECT_ROUNDS));
    Op *live = ir_cmp(b, CMP_NE, ir_load(b, c->rank, h->g), i32(b, SELECT_DONE));
    h->binned = ir_bin(b, OP_AND, radix, live);
  } else {   /* the warp schedule: rounds 0-2, or WHOLE, which bins nothing */
    h->binned = ir_cmp(b, CMP_LT, c->p[SELECT_ROUND], i32(b, SELECT_ROUNDS));
  }
  Builder used, zb;
  ir_if(b, h->binned, &used, NULL);
  Op *bin = ir_pfor(&used, AXIS_BLOCK, i32(&used, SELECT_BINS), "bin", &zb)->index;
  ir_store(&zb, h->bins, bin, i32(&zb, 0));
  ir_barrier(b);
}

Op *select_key_matches(Builder *b, const HistBlock *h, Op *key) {
  return ir_cmp(b, CMP_EQ, ir_bin(b, OP_AND, key, h->himask), h->match);
}

void select_bin_score(Builder *lane, const HistBlock *h, Op *s) {
  select_bin_key(lane, h, attn_order_key(lane, s));
}

void select_bin_key(Builder *lane, const HistBlock *h, Op *key) {
  Builder hit;
  ir_if(lane, select_key_matches(lane, h, key), &hit, NULL);
  Op *digit = ir_bin(&hit, OP_AND, ir_bin(&hit, OP_SHR, key, h->shift), h->dmask);
  ir_atomic_add(&hit, h->bins, digit, i32(&hit, 1));
}

void select_hist_end(SelCtx *c, Builder *b, const HistBlock *h) {
  Builder used, fb, nz;
  ir_barrier(b);
  ir_if(b, h->binned, &used, NULL);
  Op *base = mul(&used, h->g, i32(&used, SELECT_BINS));
  Op *bin = ir_pfor(&used, AXIS_BLOCK, i32(&used, SELECT_BINS), "bin", &fb)->index;
  Op *n = ir_load(&fb, h->bins, bin);
  ir_if(&fb, ir_cmp(&fb, CMP_NE, n, i32(&fb, 0)), &nz, NULL);
  ir_atomic_add(&nz, c->hist, add(&nz, base, bin), n);
}

static void build_hist(SelCtx *c, Builder *b, const TileConfig *t) {
  HistBlock h;
  if (t->sched == SCHED_TILE) {
    TileConfig head = select_tile_hist_rows(c->spec, t);
    select_hist_begin(c, b, &head, &h);
    select_hist_tile_rows(c, b, &head, &h);
  } else {
    select_hist_begin(c, b, t, &h);
    select_hist_warp_rows(c, b, t, &h);
  }
  select_hist_end(c, b, &h);
}

/* ---- pick ---- */

/* Single-thread code: for x = first + n - 1 down to first, run += buf[x]; the first
 * x where run reaches rank goes to the var `found` (which must hold -1 before) and
 * the count above it (run before adding buf[x]) to the var `above`. */
static void scan_down(Builder *b, Buf *buf, Op *first, int n, Op *rank, Op *run, Op *found,
                      Op *above) {
  Builder loop, hit;
  Op *r = ir_for(b, i32(b, 0), i32(b, n), 1, "r", &loop)->index;
  Op *x = add(&loop, first, ir_bin(&loop, OP_SUB, i32(&loop, n - 1), r));
  Op *v = ir_load(&loop, buf, x);
  Op *before = ir_get(&loop, run);
  Op *after = add(&loop, before, v);
  Op *first_hit = ir_bin(&loop, OP_AND, ir_cmp(&loop, CMP_LT, ir_get(&loop, found), i32(&loop, 0)),
                         ir_cmp(&loop, CMP_GE, after, rank));
  ir_if(&loop, first_hit, &hit, NULL);
  ir_set(&hit, found, x);
  ir_set(&hit, above, before);
  ir_set(&loop, run, after);
}

void select_chunk_sums(Builder *b, Buf *hs, Buf *cs, bool banked) {
  Builder cb, loop;
  Op *ch = ir_pfor(b, AXIS_BLOCK, i32(b, NCHUNKS), "chunk", &cb)->index;
  Op *acc = ir_var(&cb, i32(&cb, 0), "sum");
  Op *e = ir_for(&cb, i32(&cb, 0), i32(&cb, CHUNK), 1, "e", &loop)->index;
  /* banked: a rotated start, so the threads of a warp hit different banks; on the
   * CPU the rotation made each chunk a gather (vpgatherdd), ~1/3 of pick(SAMPLE) at
   * n = 64, where a plain run is one vector load (the sum is the same either way) */
  Op *rot = banked ? ir_bin(&loop, OP_AND, add(&loop, e, ch), i32(&loop, CHUNK - 1)) : e;
  Op *v = ir_load(&loop, hs, add(&loop, mul(&loop, ch, i32(&loop, CHUNK)), rot));
  ir_set(&loop, acc, add(&loop, ir_get(&loop, acc), v));
  ir_store(&cb, cs, ch, ir_get(&cb, acc));
  ir_barrier(b);
}

Op *select_find_bin(Builder *one, Buf *hs, Buf *cs, Op *rank, Op **above) {
  Op *run = ir_var(one, i32(one, 0), "run");
  Op *chunk = ir_var(one, i32(one, -1), "chunk");
  Op *above_chunk = ir_var(one, i32(one, 0), "above_chunk");
  scan_down(one, cs, i32(one, 0), NCHUNKS, rank, run, chunk, above_chunk);
  Op *cfound = ir_bin(one, OP_MAX, ir_get(one, chunk), i32(one, 0));
  Op *run2 = ir_var(one, ir_get(one, above_chunk), "run");
  Op *sel = ir_var(one, i32(one, -1), "bin");
  Op *ab = ir_var(one, i32(one, 0), "above");
  scan_down(one, hs, mul(one, cfound, i32(one, CHUNK)), CHUNK, rank, run2, sel, ab);
  *above = ir_get(one, ab);
  return ir_bin(one, OP_MAX, ir_get(one, sel), i32(one, 0));
}

void select_settle(SelCtx *c, Builder *one, Op *g, double tau) {
  ir_store(one, c->tau_group, g, ir_const_f32(one, (float)tau));
  ir_store(one, c->rank, g, i32(one, SELECT_DONE));
}

/* The radix rounds' pick. Groups already settled (rank[g] = SELECT_DONE: by round 0's
 * pick when they keep every score, or in the tile schedule by the sample or the
 * bracket) keep their tau: nothing of theirs is written (their histogram is empty
 * in the tile schedule, whose hist skips them and whose pick block then exits at
 * once, build_pick; the warp schedule's is zeroed unread). tile: the CPU's tile
 * schedule (chunk sums in plain order). */
static void radix_pick(SelCtx *c, Builder *b, Buf *hs, Buf *cs, Op *g, bool tile) {
  Op *base = mul(b, g, i32(b, SELECT_BINS));
  Op *round = c->p[SELECT_ROUND];

  /* 1. move the group's histogram to shared memory (zeroing it for the next
   * round), then sum chunks of CHUNK bins */
  Builder mb, one;
  Op *bin = ir_pfor(b, AXIS_BLOCK, i32(b, SELECT_BINS), "bin", &mb)->index;
  Op *at = add(&mb, base, bin);
  ir_store(&mb, hs, bin, ir_load(&mb, c->hist, at));
  ir_store(&mb, c->hist, at, i32(&mb, 0));
  ir_barrier(b);
  select_chunk_sums(b, hs, cs, !tile);

  /* 2. one thread: the rank (round 0: keep_g of the total), the chunk and the bin
   * where the count from the top reaches it, the new prefix and rank */
  ir_pfor(b, AXIS_BLOCK, i32(b, 1), "one", &one);
  Builder live;
  ir_if(&one, ir_cmp(&one, CMP_GE, ir_load(&one, c->rank, g), i32(&one, 0)), &live, NULL);
  one = live;
  Builder tl;
  Op *total = ir_var(&one, i32(&one, 0), "total");
  Op *t = ir_for(&one, i32(&one, 0), i32(&one, NCHUNKS), 1, "c", &tl)->index;
  ir_set(&tl, total, add(&tl, ir_get(&tl, total), ir_load(&tl, cs, t)));
  Op *keep = attn_keep_count(&one, c->p[SELECT_SPARSITY], ir_get(&one, total),
                             c->spec->keep_min);
  Op *round0 = ir_cmp(&one, CMP_EQ, round, i32(&one, 0));
  Op *rank = ir_select(&one, round0, keep, ir_load(&one, c->rank, g));
  Op *prefix = ir_select(&one, round0, i32(&one, 0), ir_load(&one, c->prefix, g));
  Op *above;
  Op *digit = select_find_bin(&one, hs, cs, rank, &above);
  Op *key = ir_bin(&one, OP_OR, prefix, ir_bin(&one, OP_SHL, digit, digit_shift(c, &one)));
  Op *left = ir_bin(&one, OP_SUB, rank, above);
  ir_store(&one, c->prefix, g, key);
  ir_store(&one, c->rank, g, left);
  /* round 0: a group that keeps every one of its scores is settled at -inf
   * (attention_select.h), and the later rounds skip it */
  Builder all;
  Op *every = ir_bin(&one, OP_AND, ir_cmp(&one, CMP_EQ, keep, ir_get(&one, total)),
                     ir_cmp(&one, CMP_GT, keep, i32(&one, 0)));
  ir_if(&one, ir_bin(&one, OP_AND, round0, every), &all, NULL);
  select_settle(c, &all, g, -INFINITY);
  /* 3. after the last round the key is complete: tau; rank 0 means no valid score */
  Builder last;
  ir_if(&one, ir_cmp(&one, CMP_GE, round, i32(&one, SELECT_ROUNDS - 1)), &last, NULL);
  Op *tau = ir_select(&last, ir_cmp(&last, CMP_GT, left, i32(&last, 0)),
                      attn_from_order_key(&last, key), ir_const_f32(&last, INFINITY));
  ir_store(&last, c->tau_group, g, tau);
}

/* Round ALL_KEPT, the whole plan when every group keeps every score (the host's
 * attention_select_keeps_all): -inf for a group with scores, +inf for an empty one,
 * from the lengths alone; no score is computed. */
static void all_kept_pick(SelCtx *c, Builder *b, Op *g) {
  Builder one, some, none;
  ir_pfor(b, AXIS_BLOCK, i32(b, 1), "one", &one);
  Op *M = select_group_count(c, &one, g);
  ir_if(&one, ir_cmp(&one, CMP_GT, M, i32(&one, 0)), &some, &none);
  select_settle(c, &some, g, -INFINITY);
  select_settle(c, &none, g, INFINITY);
}

static void build_pick(SelCtx *c, Builder *b, const TileConfig *t) {
  Kernel *k = c->k;
  bool tile = attention_select_has_cand(t);
  Buf *hs = ir_shared(k, "bins", TY_I32, SELECT_BINS + (tile ? SELECT_SPARE_BINS : 0));
  Buf *cs = ir_shared(k, "chunks", TY_I32, NCHUNKS);
  Op *g = group_grid(c, b);
  Builder all, rounds, radix, early;
  ir_if(b, ir_cmp(b, CMP_EQ, c->p[SELECT_ROUND], i32(b, SELECT_ROUND_ALL_KEPT)), &all, &rounds);
  all_kept_pick(c, &all, g);
  if (!tile) {
    radix_pick(c, &rounds, hs, cs, g, false);
    return;
  }
  ir_if(&rounds, ir_cmp(&rounds, CMP_LT, c->p[SELECT_ROUND], i32(&rounds, SELECT_ROUNDS)), &radix,
        &early);
  /* a settled group's block exits at once: the tile schedule's hist left its
   * histogram empty (it skips settled groups), so there is nothing to move or zero;
   * at n = 64 the sample settles every head and rounds 0-2 are these no-ops */
  Builder live;
  ir_if(&radix, ir_cmp(&radix, CMP_GE, ir_load(&radix, c->rank, g), i32(&radix, 0)), &live, NULL);
  radix_pick(c, &live, hs, cs, g, true);
  select_pick_bracket(c, &early, hs, cs, g);
}

/* ---- kernels, module, plan ---- */

Kernel *attention_select_build_kernel(const Spec *s, const TileConfig *t, SelectKernel which) {
  if (!has_groups(s))
    return NULL;
  char name[96];
  snprintf(name, sizeof name, "%s_%s", s->name, suffixes[which]);
  Kernel *k = ir_kernel_new(name, t->warps);
  Builder b = ir_builder(k);
  SelCtx c = {.spec = s, .k = k};
  declare_params(&c, t);
  switch (which) {
  case SELECT_KERNEL_INIT: build_init(&c, &b); break;
  case SELECT_KERNEL_HIST: build_hist(&c, &b, t); break;
  default: build_pick(&c, &b, t); break;
  }
  return k;
}

int attention_select_build(const Spec *s, const TileConfig *t, Module *m, char *err, size_t cap) {
  if (!has_groups(s))
    return 0;
  if (attention_select_check(s, t, err, cap))
    return -1;
  if (m->n + SELECT_NKERNELS > (int)(sizeof m->kernels / sizeof m->kernels[0])) {
    snprintf(err, cap, "module full: no room for the %d select kernels", SELECT_NKERNELS);
    return -1;
  }
  for (int w = 0; w < SELECT_NKERNELS; w++)
    m->kernels[m->n++] = attention_select_build_kernel(s, t, (SelectKernel)w);
  return 0;
}

bool attention_select_brackets(bool tile, int N) { return tile && N >= SELECT_BRACKET_MIN_N; }

int attention_select_whole_keys(const Spec *s) {
  int64_t sq = (int64_t)s->max_seq * s->max_seq;
  return (int)(sq < SELECT_WHOLE_KEYS ? sq : SELECT_WHOLE_KEYS);
}

bool attention_select_whole(const Spec *s, bool tile, int N) {
  int64_t keys = tile ? attention_select_whole_keys(s) : attention_select_warp_whole_keys(s);
  return per_head(s) && N <= s->max_seq && (int64_t)N * N <= keys;
}

/* keep(M) = M for every M <= M_max, by one of three sufficient conditions (each, if it
 * holds for M_max, holds for every smaller M too): s <= 0 ((1 - s) M >= M, so the
 * ceil is at least M); keep_min >= M_max; s M_max <= 1 - 2^-10, where (1 - s) M -
 * 1e-6 > M - 1 with room to spare for the f64 rounding (about 2^-52 M against a
 * margin of 2^-10 - 1e-6). Between 1 - 2^-10 and 1 - 1e-6 the groups still keep all,
 * but the full plan runs and its picks find that (-inf, the same result). */
bool attention_select_keeps_all(const Spec *s, int B, int H, int N, double sparsity) {
  double n = N > 0 ? N : 0, per_head = s->causal ? n * (n + 1) / 2 : n * n;
  double m_max = s->select == SEL_LAYER_QUANTILE ? (double)B * H * per_head : per_head;
  return sparsity <= 0 || s->keep_min >= m_max || sparsity * m_max <= 1 - 1.0 / 1024;
}

SelectPlanKind attention_select_plan_kind(const Spec *s, bool tile, int B, int H, int N,
                                          double sparsity) {
  if (attention_select_keeps_all(s, B, H, N, sparsity))
    return SELECT_PLAN_ALL_KEPT;
  if (attention_select_whole(s, tile, N))
    return SELECT_PLAN_WHOLE;
  return attention_select_brackets(tile, N) ? SELECT_PLAN_BRACKET : SELECT_PLAN_RADIX;
}

int attention_select_plan(SelectPlanKind kind, SelectLaunch plan[SELECT_PLAN_MAX]) {
  int n = 0;
  if (kind == SELECT_PLAN_ALL_KEPT) {
    plan[n++] = (SelectLaunch){SELECT_KERNEL_PICK, SELECT_ROUND_ALL_KEPT};
    return n;
  }
  if (kind == SELECT_PLAN_WHOLE) {
    plan[n++] = (SelectLaunch){SELECT_KERNEL_HIST, SELECT_ROUND_WHOLE};
    return n;
  }
  plan[n++] = (SelectLaunch){SELECT_KERNEL_INIT, 0};
  for (int r = SELECT_ROUND_SAMPLE; kind == SELECT_PLAN_BRACKET && r <= SELECT_ROUND_BRACKET; r++) {
    plan[n++] = (SelectLaunch){SELECT_KERNEL_HIST, r};
    plan[n++] = (SelectLaunch){SELECT_KERNEL_PICK, r};
  }
  for (int r = 0; r < SELECT_ROUNDS; r++) {
    plan[n++] = (SelectLaunch){SELECT_KERNEL_HIST, r};
    plan[n++] = (SelectLaunch){SELECT_KERNEL_PICK, r};
  }
  return n;
}

int attention_select_run(Kernel *const kernels[SELECT_NKERNELS], const Spec *s,
                         void *const *args, SelectLaunchFn launch, void *ctx) {
  bool tile = ir_param_index(kernels[SELECT_KERNEL_HIST], "cand") >= 0;
  int B = *(const int32_t *)args[SELECT_B], H = *(const int32_t *)args[SELECT_H];
  int N = *(const int32_t *)args[SELECT_N];
  double sparsity = *(const double *)args[SELECT_SPARSITY];
  return attention_select_run_plan(kernels, args,
                                   attention_select_plan_kind(s, tile, B, H, N, sparsity), launch,
                                   ctx);
}

int attention_select_run_plan(Kernel *const kernels[SELECT_NKERNELS], void *const *args,
                              SelectPlanKind kind, SelectLaunchFn launch, void *ctx) {
  SelectLaunch plan[SELECT_PLAN_MAX];
  int n = attention_select_plan(kind, plan);
  void *a[SELECT_NPARAMS];
  memcpy(a, args, sizeof a);
  int32_t round;
  a[SELECT_ROUND] = &round;
  for (int i = 0; i < n; i++) {
    Kernel *k = kernels[plan[i].kernel];
    int32_t grid[3];
    round = plan[i].round;
    ir_grid(k, a, grid);
    int rc = launch(ctx, plan[i].kernel, k, a, grid);
    if (rc)
      return rc;
  }
  return 0;
}
