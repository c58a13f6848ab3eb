/* The tile schedule's picks of the SAMPLE and BRACKET rounds (attention_select.h):
 * tau found from stored keys, so the select scores every valid score once.
 *
 * Why: the radix plan scored every score in rounds 0 and 1 (round 0 to find tau's
 * top 11 bits, round 1 to keep the keys of that bin); the scoring is most of the
 * select's time. A sample of the head's rows, scored first, says where tau lies
 * closely enough that one full pass can store every key near it and count those
 * above: tau is then an exact select among the stored keys. Where the sample
 * misleads (rows very unlike the sampled ones) or cand overflows, the group goes
 * through the radix rounds, so tau never depends on the sample, only the cost.
 *
 * pick(SAMPLE), per group: M = its valid scores, keep = keep_g, m = the sample's keys
 * (stored by hist(SAMPLE) in the group's cand regions: one (b, h), or all for
 * layer_quantile).
 *   - keep = 0 (M = 0): tau = +inf, done (as the radix gives); keep = M > 0 (every
 *     score kept): tau = -inf, done;
 *   - the sample is every score (small heads): tau = the keep-th largest stored key;
 *   - else tau's rank in the sample is about r = keep / M * m; with a margin of
 *     MARGIN_SD binomial deviations plus MARGIN_KEYS (the rows are a cluster sample,
 *     so the binomial deviation understates the spread), hi = the sample's key of rank
 *     r - delta and lo = the one of rank r + delta (unbounded past the sample's ends).
 * pick(BRACKET): with `above` keys > hi counted and `stored` keys in [lo, hi] kept
 * by hist(BRACKET), if nothing overflowed and above < keep <= above + stored, tau is
 * the (keep - above)-th largest stored key; else the radix rounds decide.
 *
 * The exact select over stored keys (kth_stored) is the radix select of the rounds
 * in miniature: three passes of 11, 11, 10 bits over the keys with a shared
 * histogram, the same chunked scan; for head_quantile the region is compacted in
 * place to the keys of the chosen bins after each of the first two passes, so the
 * later ones go over a few percent of the keys. */
#include <math.h>

#include "attention_select_impl.h"
#include "attention_tile.h"

#define i32 attn_i32
#define add attn_add
#define mul attn_mul

/* The bracket's margin on each side, in sample ranks: MARGIN_SD deviations of a
 * binomial count of the sample (sqrt(r (1 - keep / M))) plus MARGIN_KEYS. */
static const double MARGIN_SD = 4.0;
enum { MARGIN_KEYS = 64 };

/* Shared words of the pick block. Per rank r of the select (r = 0: the one rank, or
 * SAMPLE's hi; r = 1: SAMPLE's lo), at r * ST_PER_RANK: the key so far and the rank
 * left, whether the next digit's sweep matches a mixed share of the keys
 * (stored_digits), and the keys of the bin just chosen. Then what to do, SAMPLE's
 * unbounded ends (bit 0: hi, bit 1: lo) and the keys left after compaction. */
enum { ST_KEY, ST_RANK, ST_MIXED, ST_MATCH, ST_PER_RANK };
enum { ST_MODE = 2 * ST_PER_RANK, ST_OPEN, ST_LEFT, ST_KEPT, ST_N };
enum { MODE_NONE, MODE_WHOLE, MODE_BRACKET };

static Op *st_at(Builder *b, int r, int word) { return i32(b, r * ST_PER_RANK + word); }

typedef struct {
  SelCtx *c;
  Buf *hs, *cs, *st;
  Op *g;
  Op *reg0, *nreg;   /* the group's cand regions */
  bool compact;      /* one region (head_quantile): the select compacts it in place */
} Pick;

Op *select_cand_cap(SelCtx *c, Builder *b) {
  return ir_bin(b, OP_MIN, ir_bin(b, OP_MAX, c->p[SELECT_CAND_CAP], i32(b, 0)),
                i32(b, 1 << 30));
}

Op *select_cand_region(SelCtx *c, Builder *b, Op *bh) {
  return mul(b, bh, add(b, select_cand_cap(c, b), i32(b, SELECT_CAND_HEAD)));
}

static bool per_head(const SelCtx *c) { return c->spec->select == SEL_HEAD_QUANTILE; }

/* Valid scores of one (b, h) of example `batch`. */
static Op *head_count(SelCtx *c, Builder *b, Op *batch) {
  Op *len = ir_bin(b, OP_MIN, ir_load(b, c->lengths, batch), c->p[SELECT_N]);
  len = ir_bin(b, OP_MAX, len, i32(b, 0));
  if (!c->spec->causal)
    return mul(b, len, len);
  return ir_bin(b, OP_DIV, mul(b, len, add(b, len, i32(b, 1))), i32(b, 2));
}

Op *select_group_count(SelCtx *c, Builder *one, Op *g) {
  if (per_head(c))
    return head_count(c, one, ir_bin(one, OP_DIV, g, c->p[SELECT_H]));
  Builder loop;
  Op *m = ir_var(one, i32(one, 0), "valid");
  Op *bi = ir_for(one, i32(one, 0), c->p[SELECT_B], 1, "b", &loop)->index;
  ir_set(&loop, m, add(&loop, ir_get(&loop, m), mul(&loop, c->p[SELECT_H], head_count(c, &loop, bi))));
  return ir_get(one, m);
}

/* Block-level: dst = src, SELECT_BINS words (pfor, barrier). */
static void copy_bins(Builder *b, Buf *dst, Buf *src) {
  Builder cb;
  Op *bin = ir_pfor(b, AXIS_BLOCK, i32(b, SELECT_BINS), "bin", &cb)->index;
  ir_store(&cb, dst, bin, ir_load(&cb, src, bin));
  ir_barrier(b);
}

static const int shift[3] = {SELECT_SHIFT0, 10, 0}, dmask[3] = {0x7FF, 0x7FF, 0x3FF};
static const uint32_t himask[3] = {0, 0xFFE00000u, 0xFFFFFC00u};

/* One key sweep of stored_digits: e over the region's keys. mixed: keys that do not
 * match add to one of SELECT_SPARE_BINS bins past the histogram instead of branching
 * (the spare bins rotate so that no chain of increments hits one word). */
static void sweep(Pick *p, Builder *b, int d, Op *prefix, Op *keys, Op *n, bool mixed) {
  Builder lane, hit;
  /* i64 addresses: with i32 sums each key paid a sign extension (perf annotate) */
  Op *from = ir_cast(b, TY_I64, keys);
  Op *e64 = ir_pfor(b, AXIS_BLOCK, ir_cast(b, TY_I64, n), "e", &lane)->index;
  Op *key = ir_load(&lane, p->c->cand, add(&lane, from, e64));
  Op *e = ir_cast(&lane, TY_I32, e64);
  Op *digit = ir_bin(&lane, OP_AND, ir_bin(&lane, OP_SHR, key, i32(&lane, shift[d])),
                     i32(&lane, dmask[d]));
  Builder *into = &lane;
  if (d > 0) {
    Op *high = ir_bin(&lane, OP_AND, key, i32(&lane, (int32_t)himask[d]));
    Op *match = ir_cmp(&lane, CMP_EQ, high, prefix);
    if (mixed) {
      Op *spare = add(&lane, i32(&lane, SELECT_BINS),
                      ir_bin(&lane, OP_AND, e, i32(&lane, SELECT_SPARE_BINS - 1)));
      digit = ir_select(&lane, match, digit, spare);
    } else {
      ir_if(&lane, match, &hit, NULL);
      into = &hit;
    }
  }
  ir_atomic_add(into, p->hs, digit, i32(into, 1));
}

/* The keys of region r: *keys = the first one's index in cand, returns their count
 * (the header's, or the keys compaction left). */
static Op *region_keys(Pick *p, Builder *b, Op *r, Op **keys) {
  Op *at = select_cand_region(p->c, b, r);
  *keys = add(b, at, i32(b, SELECT_CAND_HEAD));
  return p->compact ? ir_load(b, p->st, i32(b, ST_LEFT)) : ir_load(b, p->c->cand, at);
}

/* Block-level: hs = the histogram of digit d of the stored keys whose higher digits
 * equal rank r's prefix (every key for d = 0). A barrier ends it. Where between 1/16
 * and 15/16 of the keys match (st[ST_MIXED] of the rank, from the digit before), the
 * sweep does not branch on the match: with the stored keys straddling two bins of the
 * digit before (a bracket across a binade, as at s = 0.6) the branch was a coin flip
 * per key (pick(BRACKET) 2.5 -> 10 ms at n = 512); where few match, a branch
 * predicted right costs less than the spare bins' increments (pick(SAMPLE) 7.4 ->
 * 10 ms when always branch-free). */
static void stored_digits(Pick *p, Builder *b, int d, int r) {
  Builder zb, regs, mixed, few;
  Op *bin = ir_pfor(b, AXIS_BLOCK, i32(b, SELECT_BINS + SELECT_SPARE_BINS), "bin", &zb)->index;
  ir_store(&zb, p->hs, bin, i32(&zb, 0));
  ir_barrier(b);
  Op *prefix = ir_load(b, p->st, st_at(b, r, ST_KEY));
  Op *mix = d > 0 ? ir_load(b, p->st, st_at(b, r, ST_MIXED)) : NULL;
  Op *reg = ir_for(b, p->reg0, add(b, p->reg0, p->nreg), 1, "reg", &regs)->index;
  Op *keys, *n = region_keys(p, &regs, reg, &keys);
  if (d == 0) {
    sweep(p, &regs, d, prefix, keys, n, false);
  } else {
    ir_if(&regs, ir_cmp(&regs, CMP_NE, mix, i32(&regs, 0)), &mixed, &few);
    sweep(p, &mixed, d, prefix, keys, n, true);
    sweep(p, &few, d, prefix, keys, n, false);
  }
  ir_barrier(b);
}

/* One thread: st[ST_MIXED] of rank r = whether its matching keys `match` are between
 * 1/16 and 15/16 of the `total` keys the next sweep goes over. */
static void set_mixed(Pick *p, Builder *one, int r, Op *match, Op *total) {
  Op *m16 = mul(one, match, i32(one, 16));
  Op *mixed = ir_bin(one, OP_AND, ir_cmp(one, CMP_GT, m16, total),
                     ir_cmp(one, CMP_LT, m16, mul(one, total, i32(one, 15))));
  ir_store(one, p->st, st_at(one, r, ST_MIXED), ir_select(one, mixed, i32(one, 1), i32(one, 0)));
}

/* Whether a key's digits above d lie in [plo, plo + span] (unsigned). */
static Op *in_span(Builder *b, Op *key, int d, Op *plo, Op *span) {
  Op *high = ir_bin(b, OP_AND, key, i32(b, (int32_t)himask[d]));
  return ir_cmp(b, CMP_UGE, span, ir_bin(b, OP_SUB, high, plo));
}

/* Block-level, after digit d - 1 of every rank (d = 1, 2): the group's one region
 * compacted in place to the keys whose digits above d lie between the ranks' prefixes,
 * and each rank's mixed share of them. The later sweeps then go over the ~5 % of keys
 * in tau's bin instead of all of them (two scalar passes that took ~2/3 of
 * pick(SAMPLE) at n = 128, where it selects among 16384 keys per head). Per MASK_KEYS
 * keys a vectorised bit mask of those kept, then a step per set bit (a scalar pass
 * per key cost as much as a sweep); the write index never passes the read index, and
 * a chunk's keys are read before any write reaches them. */
enum { MASK_KEYS = 32 };
static void compact(Pick *p, Builder *b, int d, int nr) {
  Builder warp, one, chunk, bits, any, step, loop, tail, tl;
  ir_pfor(b, AXIS_WARP, i32(b, 1), "w", &warp);
  Op *plo = ir_load(&warp, p->st, st_at(&warp, 0, ST_KEY)), *phi = plo;
  for (int r = 1; r < nr; r++) {
    Op *pr = ir_load(&warp, p->st, st_at(&warp, r, ST_KEY));
    plo = ir_select(&warp, ir_cmp(&warp, CMP_ULT, pr, plo), pr, plo);
    phi = ir_select(&warp, ir_cmp(&warp, CMP_ULT, phi, pr), pr, phi);
  }
  Op *span = ir_bin(&warp, OP_SUB, phi, plo);
  Op *keys, *n = region_keys(p, &warp, p->reg0, &keys);
  Op *whole = ir_bin(&warp, OP_AND, n, i32(&warp, ~(MASK_KEYS - 1)));
  ir_pfor(&warp, AXIS_LANE, i32(&warp, 1), "one", &one);
  ir_store(&one, p->st, i32(&one, ST_KEPT), i32(&one, 0));
  Op *j0 = ir_for(&warp, i32(&warp, 0), whole, MASK_KEYS, "j0", &chunk)->index;
  Op *at = add(&chunk, keys, j0);
  Op *mask = ir_reduce(&chunk, AXIS_LANE, RED_ADD, TY_I32, i32(&chunk, MASK_KEYS), "jj", &bits);
  Op *key = ir_load(&bits, p->c->cand, add(&bits, at, mask->index));
  ir_yield(&bits, ir_select(&bits, in_span(&bits, key, d, plo, span),
                            ir_bin(&bits, OP_SHL, i32(&bits, 1), mask->index), i32(&bits, 0)));
  ir_if(&chunk, ir_cmp(&chunk, CMP_NE, mask, i32(&chunk, 0)), &any, NULL);
  ir_pfor(&any, AXIS_LANE, i32(&any, 1), "one", &step);
  /* i64 addresses and count: the i32 sums cost two sign extensions per kept key */
  Op *to = ir_cast(&step, TY_I64, keys), *from = ir_cast(&step, TY_I64, at);
  Op *cnt = ir_var(&step, ir_cast(&step, TY_I64, ir_load(&step, p->st, i32(&step, ST_KEPT))),
                   "kept");
  Op *jj = tile_for_bits(&step, mask, "e", &loop);
  Op *k = ir_get(&loop, cnt);
  ir_store(&loop, p->c->cand, add(&loop, to, k),
           ir_load(&loop, p->c->cand, add(&loop, from, ir_cast(&loop, TY_I64, jj))));
  ir_set(&loop, cnt, add(&loop, k, ir_const_i64(&loop, 1)));
  ir_store(&step, p->st, i32(&step, ST_KEPT), ir_cast(&step, TY_I32, ir_get(&step, cnt)));
  /* the last n mod MASK_KEYS keys one by one (no read past the region) */
  ir_pfor(&warp, AXIS_LANE, i32(&warp, 1), "one", &tail);
  Op *kept = ir_var(&tail, ir_load(&tail, p->st, i32(&tail, ST_KEPT)), "kept");
  Op *e = ir_for(&tail, whole, n, 1, "e", &tl)->index;
  Op *kt = ir_load(&tl, p->c->cand, add(&tl, keys, e));
  Op *kk = ir_get(&tl, kept);
  ir_store(&tl, p->c->cand, add(&tl, keys, kk), kt);
  ir_set(&tl, kept, add(&tl, kk, ir_select(&tl, in_span(&tl, kt, d, plo, span), i32(&tl, 1),
                                           i32(&tl, 0))));
  Op *left = ir_get(&tail, kept);
  ir_store(&tail, p->st, i32(&tail, ST_LEFT), left);
  for (int r = 0; r < nr; r++)
    set_mixed(p, &tail, r, ir_load(&tail, p->st, st_at(&tail, r, ST_MATCH)), left);
  ir_barrier(b);
}

/* One thread, after the histogram of digit d for rank r: the digit where its rank
 * falls, appended to its key, the rank made relative to the digit's bin, and the
 * share of keys the next sweep matches. */
static void choose_digit(Pick *p, Builder *one, int d, int r) {
  Op *prefix = ir_load(one, p->st, st_at(one, r, ST_KEY));
  Op *rank = ir_load(one, p->st, st_at(one, r, ST_RANK)), *above;
  Op *dig = select_find_bin(one, p->hs, p->cs, rank, &above);
  ir_store(one, p->st, st_at(one, r, ST_KEY),
           ir_bin(one, OP_OR, prefix, ir_bin(one, OP_SHL, dig, i32(one, shift[d]))));
  ir_store(one, p->st, st_at(one, r, ST_RANK), ir_bin(one, OP_SUB, rank, above));
  if (d == 2)
    return;
  Op *match = ir_load(one, p->hs, dig);
  ir_store(one, p->st, st_at(one, r, ST_MATCH), match);
  if (p->compact)
    return;   /* compact() sets the share, of the keys it keeps */
  Builder tl;
  Op *total = ir_var(one, i32(one, 0), "total");
  Op *t = ir_for(one, i32(one, 0), i32(one, SELECT_NCHUNKS), 1, "c", &tl)->index;
  ir_set(&tl, total, add(&tl, ir_get(&tl, total), ir_load(&tl, p->cs, t)));
  set_mixed(p, one, r, match, ir_get(one, total));
}

/* Block-level: for each rank r < nr (1 or 2), st[ST_KEY of r] = the st[ST_RANK of
 * r]-th largest key stored in the group's regions (counting repeats; the caller wrote
 * each ST_KEY = 0, each rank in 1..stored and, when compacting, ST_LEFT = the keys
 * stored, then a barrier). A barrier ends it. The first digit's histogram (every key's
 * top digit) is the same for both ranks: binned once, kept in `top` for the second.
 * With p->compact the region's keys are rearranged (their header is not). */
static void kth_stored(Pick *p, Builder *b, Buf *top, int nr) {
  for (int d = 0; d < 3; d++) {
    for (int r = 0; r < nr; r++) {
      Builder one;
      if (d == 0 && r > 0) {
        copy_bins(b, p->hs, top);
      } else {
        stored_digits(p, b, d, r);
        if (d == 0 && nr > 1)
          copy_bins(b, top, p->hs);
      }
      select_chunk_sums(b, p->hs, p->cs, false);
      ir_pfor(b, AXIS_BLOCK, i32(b, 1), "one", &one);
      choose_digit(p, &one, d, r);
      ir_barrier(b);
    }
    if (d < 2 && p->compact)
      compact(p, b, d + 1, nr);
  }
}

static Op *hist_at(Pick *p, Builder *b, int slot) {
  return add(b, mul(b, p->g, i32(b, SELECT_BINS)), i32(b, slot));
}

/* One thread: the sum of the group's region headers' counts in *stored, and whether
 * one says its keys did not fit (bool); *part = regions not whole (SAMPLE). */
static Op *headers(Pick *p, Builder *one, Op **stored, Op **part) {
  SelCtx *c = p->c;
  Builder loop;
  Op *n = ir_var(one, i32(one, 0), "stored"), *bad = ir_var(one, i32(one, 0), "overflow");
  Op *np = ir_var(one, i32(one, 0), "part");
  Op *r = ir_for(one, p->reg0, add(one, p->reg0, p->nreg), 1, "reg", &loop)->index;
  Op *at = select_cand_region(c, &loop, r);
  Op *h0 = ir_load(&loop, c->cand, at), *h1 = ir_load(&loop, c->cand, add(&loop, at, i32(&loop, 1)));
  Op *zero = i32(&loop, 0), *one1 = i32(&loop, 1);
  ir_set(&loop, n, add(&loop, ir_get(&loop, n), ir_bin(&loop, OP_MAX, h0, zero)));
  ir_set(&loop, bad, ir_bin(&loop, OP_OR, ir_get(&loop, bad),
                            ir_select(&loop, ir_cmp(&loop, CMP_LT, h0, zero), one1, zero)));
  ir_set(&loop, np, add(&loop, ir_get(&loop, np),
                        ir_select(&loop, ir_cmp(&loop, CMP_EQ, h1, zero), one1, zero)));
  *stored = ir_get(one, n);
  *part = ir_get(one, np);
  return ir_cmp(one, CMP_NE, ir_get(one, bad), i32(one, 0));
}

/* One thread: the bracket's sample ranks for tau's estimated rank r = keep / M * m:
 * returns floor(r - delta) and sets rank 1's st[ST_RANK] = ceil(r + delta), both clamped to
 * 1..m, with st[ST_OPEN] marking the ends past the sample (no bound there). */
static Op *bracket_ranks(Pick *p, Builder *one, Op *keep, Op *M, Op *m) {
  Op *fk = ir_cast(one, TY_F64, keep), *fM = ir_cast(one, TY_F64, M);
  Op *fm = ir_cast(one, TY_F64, m), *f1 = ir_const_f64(one, 1);
  Op *frac = ir_bin(one, OP_DIV, fk, ir_bin(one, OP_MAX, fM, f1));
  Op *r = mul(one, frac, fm);
  Op *sd = ir_un(one, OP_SQRT, mul(one, r, ir_bin(one, OP_SUB, f1, frac)));
  Op *delta = ir_fma(one, sd, ir_const_f64(one, MARGIN_SD), ir_const_f64(one, MARGIN_KEYS));
  Op *xh = ir_bin(one, OP_SUB, r, delta), *xl = add(one, r, delta);
  Op *open_hi = ir_cmp(one, CMP_LT, xh, f1), *open_lo = ir_cmp(one, CMP_GE, xl, fm);
  Op *one_i = i32(one, 1), *zero = i32(one, 0);
  Op *rhi = ir_cast(one, TY_I32, ir_bin(one, OP_MAX, ir_bin(one, OP_MIN, xh, fm), f1));
  Op *rlo = add(one, ir_cast(one, TY_I32, ir_bin(one, OP_MIN, xl, fm)), one_i);
  ir_store(one, p->st, st_at(one, 1, ST_RANK), ir_select(one, open_lo, m, rlo));
  Op *open = ir_bin(one, OP_OR, ir_select(one, open_hi, one_i, zero),
                    ir_select(one, open_lo, i32(one, 2), zero));
  ir_store(one, p->st, i32(one, ST_OPEN), open);
  return ir_select(one, open_hi, one_i, rhi);
}

/* One thread: tau_group[g] = tau, and the group leaves the plan. */
static void settle(Pick *p, Builder *one, Op *tau) {
  ir_store(one, p->c->tau_group, p->g, tau);
  ir_store(one, p->c->rank, p->g, i32(one, SELECT_DONE));
}

/* One thread: an end of the bracket, rank r's st[ST_KEY] unless that end is open
 * (`bit` of st[ST_OPEN]; then open_key, which bounds nothing). */
static Op *bound(Pick *p, Builder *one, int r, int bit, int32_t open_key) {
  Op *open = ir_bin(one, OP_AND, ir_load(one, p->st, i32(one, ST_OPEN)), i32(one, bit));
  return ir_select(one, ir_cmp(one, CMP_NE, open, i32(one, 0)), i32(one, open_key),
                   ir_load(one, p->st, st_at(one, r, ST_KEY)));
}

static void pick_sample(Pick *p, Builder *b) {
  SelCtx *c = p->c;
  Builder one, settled, all, inf, one2, one3;
  ir_pfor(b, AXIS_BLOCK, i32(b, 1), "one", &one);
  Op *M = select_group_count(c, &one, p->g);
  Op *keep = attn_keep_count(&one, c->p[SELECT_SPARSITY], M, c->spec->keep_min);
  Op *m, *part;
  Op *failed = headers(p, &one, &m, &part);
  /* settled at once: no score kept (+inf), or every one (-inf, attention_select.h) */
  Op *every = ir_bin(&one, OP_AND, ir_cmp(&one, CMP_EQ, keep, M),
                     ir_cmp(&one, CMP_GT, keep, i32(&one, 0)));
  Op *done = ir_bin(&one, OP_OR, ir_cmp(&one, CMP_EQ, keep, i32(&one, 0)), every);
  Op *whole = ir_bin(&one, OP_AND, ir_cmp(&one, CMP_EQ, part, i32(&one, 0)),
                     ir_cmp(&one, CMP_EQ, m, M));
  Op *mode = ir_select(&one, ir_cmp(&one, CMP_GT, m, i32(&one, 0)), i32(&one, MODE_BRACKET),
                       i32(&one, MODE_NONE));
  mode = ir_select(&one, whole, i32(&one, MODE_WHOLE), mode);
  mode = ir_select(&one, ir_bin(&one, OP_OR, done, failed), i32(&one, MODE_NONE), mode);
  ir_if(&one, done, &settled, NULL);
  ir_if(&settled, every, &all, &inf);
  settle(p, &all, ir_const_f32(&all, -INFINITY));
  settle(p, &inf, ir_const_f32(&inf, INFINITY));
  Op *rhi = bracket_ranks(p, &one, keep, M, m);
  ir_store(&one, p->st, i32(&one, ST_MODE), mode);
  ir_store(&one, p->st, i32(&one, ST_LEFT), m);
  ir_store(&one, p->st, st_at(&one, 0, ST_KEY), i32(&one, 0));
  ir_store(&one, p->st, st_at(&one, 1, ST_KEY), i32(&one, 0));
  ir_store(&one, p->st, st_at(&one, 0, ST_RANK), ir_select(&one, whole, keep, rhi));
  ir_barrier(b);
  Op *md = ir_load(b, p->st, i32(b, ST_MODE));
  Builder whole_b, other, br;
  ir_if(b, ir_cmp(b, CMP_EQ, md, i32(b, MODE_WHOLE)), &whole_b, &other);
  /* the whole head: the keep-th key is tau's */
  kth_stored(p, &whole_b, NULL, 1);
  ir_pfor(&whole_b, AXIS_BLOCK, i32(&whole_b, 1), "one", &one2);
  settle(p, &one2, attn_from_order_key(&one2, ir_load(&one2, p->st, st_at(&one2, 0, ST_KEY))));
  /* a bracket: rank 0's key is hi, rank 1's lo */
  ir_if(&other, ir_cmp(&other, CMP_EQ, md, i32(&other, MODE_BRACKET)), &br, NULL);
  kth_stored(p, &br, ir_shared(c->k, "top", TY_I32, SELECT_BINS), 2);
  ir_pfor(&br, AXIS_BLOCK, i32(&br, 1), "one", &one3);
  ir_store(&one3, c->hist, hist_at(p, &one3, SELECT_HI), bound(p, &one3, 0, 1, -1));
  ir_store(&one3, c->hist, hist_at(p, &one3, SELECT_LO), bound(p, &one3, 1, 2, 0));
  ir_store(&one3, c->rank, p->g, i32(&one3, SELECT_BRACKETED));
}

static void pick_bracket(Pick *p, Builder *b) {
  SelCtx *c = p->c;
  Builder one, is, found, one2;
  ir_pfor(b, AXIS_BLOCK, i32(b, 1), "one", &one);
  Op *bracketed = ir_cmp(&one, CMP_EQ, ir_load(&one, c->rank, p->g), i32(&one, SELECT_BRACKETED));
  Op *ok = ir_var(&one, ir_const_bool(&one, false), "ok");
  Op *left = ir_var(&one, i32(&one, 0), "left");
  Op *nstored = ir_var(&one, i32(&one, 0), "stored");
  ir_if(&one, bracketed, &is, NULL);
  Op *M = select_group_count(c, &is, p->g);
  Op *keep = attn_keep_count(&is, c->p[SELECT_SPARSITY], M, c->spec->keep_min);
  Op *above = ir_load(&is, c->hist, hist_at(p, &is, SELECT_ABOVE));
  Op *stored, *part;
  Op *failed = headers(p, &is, &stored, &part);
  Op *in = ir_bin(&is, OP_AND, ir_cmp(&is, CMP_LT, above, keep),
                  ir_cmp(&is, CMP_LE, keep, add(&is, above, stored)));
  ir_set(&is, ok, ir_select(&is, failed, ir_const_bool(&is, false), in));
  ir_set(&is, left, ir_bin(&is, OP_SUB, keep, above));
  ir_set(&is, nstored, stored);
  for (int s = SELECT_LO; s <= SELECT_ABOVE; s++)
    ir_store(&is, c->hist, hist_at(p, &is, s), i32(&is, 0));
  /* not settled: the radix rounds take it (rank >= 0) */
  ir_store(&is, c->rank, p->g, ir_select(&is, ir_get(&is, ok), i32(&is, SELECT_BRACKETED),
                                          i32(&is, 0)));
  Op *go = ir_get(&one, ok);
  ir_store(&one, p->st, i32(&one, ST_MODE),
           ir_select(&one, go, i32(&one, MODE_BRACKET), i32(&one, MODE_NONE)));
  ir_store(&one, p->st, st_at(&one, 0, ST_RANK), ir_get(&one, left));
  ir_store(&one, p->st, st_at(&one, 0, ST_KEY), i32(&one, 0));
  ir_store(&one, p->st, i32(&one, ST_LEFT), ir_get(&one, nstored));
  ir_barrier(b);
  Op *md = ir_load(b, p->st, i32(b, ST_MODE));
  ir_if(b, ir_cmp(b, CMP_NE, md, i32(b, MODE_NONE)), &found, NULL);
  kth_stored(p, &found, NULL, 1);
  ir_pfor(&found, AXIS_BLOCK, i32(&found, 1), "one", &one2);
  settle(p, &one2, attn_from_order_key(&one2, ir_load(&one2, p->st, st_at(&one2, 0, ST_KEY))));
}

void select_pick_bracket(SelCtx *c, Builder *b, Buf *hs, Buf *cs, Op *g) {
  Pick p = {.c = c, .hs = hs, .cs = cs, .g = g};
  p.st = ir_shared(c->k, "state", TY_I32, ST_N);
  p.compact = per_head(c);
  p.reg0 = per_head(c) ? g : i32(b, 0);
  p.nreg = per_head(c) ? i32(b, 1) : mul(b, c->p[SELECT_B], c->p[SELECT_H]);
  Builder sample, bracket;
  ir_if(b, ir_cmp(b, CMP_EQ, c->p[SELECT_ROUND], i32(b, SELECT_ROUND_SAMPLE)), &sample,
        &bracket);
  pick_sample(&p, &sample);
  pick_bracket(&p, &bracket);
}
