/* The select kernels: group thresholds for select = head_quantile | layer_quantile
 * (DESIGN §4), which the forward kernel reads as its `tau_group` input.
 *
 * For group g (one (b, h) for head_quantile, G = B*H; the whole batch for
 * layer_quantile, G = 1) with M_g valid scores (j < L, and j <= i when causal):
 *   keep_g = min(max(keep_min, ceil((1 - s) * M_g - 1e-6)), M_g)   (f64)
 *   tau_group[g] = the keep_g-th largest valid score (counting repeats), as the f32
 *                  score the forward computes; +inf when M_g = 0; -inf when
 *                  keep_g = M_g > 0 (every score kept: any tau <= the minimum keeps
 *                  the same set, and -inf needs no select).
 * No n x n matrix is stored: the scores are recomputed in every round and reduced to
 * a histogram of their order-preserving u32 keys (attn_order_key), a radix select
 * over 3 rounds of 11, 11 and 10 bits, most significant first. The tile schedule (the
 * CPU's), from N = SELECT_BRACKET_MIN_N on, first tries to settle each group with one
 * scoring pass: a sample of its rows brackets tau, one pass stores the keys inside
 * the bracket and counts those above, and tau is an exact select among the stored
 * keys (attention_select_bracket.c); only the groups where that fails go through the
 * radix rounds (round 1 keeping its few matching keys for round 2).
 *
 * Kernels, all with the same parameters (names, types, roles) in this order:
 *   q, k:      f32 in, strided as in templates.h (qkv_sb, qkv_sn, qkv_sh)
 *   lengths:   i32 in [B]
 *   hist:      i32 inout [G * SELECT_BINS]   global histograms, one row per group
 *   prefix:    i32 inout [G]                 decided high bits of tau's key
 *   rank:      i32 inout [G]                 tau's rank from the top among the
 *                                            scores that share the prefix (0: empty)
 *   tau_group: f32 out [G]
 *   B, H, N, qkv_sb, qkv_sn, qkv_sh: i32; sparsity: f64; round: i32 (0, 1, 2; the
 *              tile schedule also SELECT_ROUND_SAMPLE, SELECT_ROUND_BRACKET)
 *
 *   NAME_select_init  grid (H, B) | (1)   hist[g, :] = 0, prefix[g] = rank[g] = 0
 *   NAME_select_hist  grid (ceil(N / rows), H, B)   warps = tile warps
 *       per block `rows` query rows of one (b, h), a warp per row, lanes over the
 *       keys of K tiles staged in shared memory once per block (attention_select_warp.c):
 *       S_ij as the forward computes it, key = order key; keys whose decided bits
 *       equal prefix[g] add 1 to bin (key >> shift) & mask of a shared histogram
 *       (shared atomics), which is then added to hist[g, :] (global atomics, zero
 *       bins skipped). Round 0 ignores prefix; shift = 21, 10, 0. The tile
 *       schedule (the CPU's) scores in rounds 0 and 1 only: round 1 also stores
 *       its matching keys in `cand`, which round 2 bins (attention_select_tile.c;
 *       rows that found no room there are recomputed).
 *   NAME_select_pick  grid (H, B) | (1)
 *       per group: copies hist[g, :] and zeroes it (ready for the next round), finds
 *       the bin where the count from the top reaches rank (round 0: rank = keep_g,
 *       with M_g the total of the histogram), appends it to prefix[g] and subtracts
 *       the count above it from rank[g]; round 2 writes tau_group[g]. Round 0 settles
 *       a group with keep_g = M_g > 0 at once (-inf; rank[g] = -1, later rounds skip
 *       it). Round SELECT_ROUND_ALL_KEPT, the whole plan when the host knows every
 *       group keeps every score: -inf (+inf for M_g = 0) from the lengths alone.
 *
 * The launch plan (attention_select_plan), in order on one stream, the same
 * arguments each time except `round`:
 *   init, hist(0), pick(0), hist(1), pick(1), hist(2), pick(2)
 * and for the tile schedule at N >= SELECT_BRACKET_MIN_N hist(SAMPLE), pick(SAMPLE),
 * hist(BRACKET), pick(BRACKET) after init. Afterwards hist is all zero again; for a group the radix decided, prefix
 * and rank hold tau's key and its rank within the ties at tau (rank < 0: settled
 * before, by round 0's all-kept check, the sample or the bracket). init makes the plan
 * independent of the buffers' earlier contents. When the host can tell from s, N,
 * B, H and the spec that every group keeps every score (attention_select_keeps_all;
 * s <= 0 always), the plan is pick(ALL_KEPT) alone: no scoring; it writes only
 * tau_group and rank (hist, prefix, cand untouched). head_quantile on the tile
 * schedule up to N = 128, and on the warp schedule for specs with max_seq <= 64
 * (attention_select_whole), is hist(WHOLE) alone: a block per head scores it once and
 * finds tau itself (attention_select_whole.c); it too writes only tau_group and rank.
 * Counts are i32: M_g must stay below 2^31 (B*H*N*N for layer_quantile). */
#ifndef CRISP_ATTENTION_SELECT_H
#define CRISP_ATTENTION_SELECT_H

#include "templates.h"

enum { SELECT_BINS = 2048, SELECT_ROUNDS = 3 };

/* parameter indices, the same in every select kernel */
enum {
  SELECT_Q, SELECT_K, SELECT_LENGTHS, SELECT_HISTOGRAM, SELECT_PREFIX, SELECT_RANK,
  SELECT_TAU_GROUP, SELECT_B, SELECT_H, SELECT_N, SELECT_QKV_SB, SELECT_QKV_SN,
  SELECT_QKV_SH, SELECT_SPARSITY, SELECT_ROUND,
  SELECT_CAND, SELECT_CAND_CAP,   /* the tile schedule's kernels only (below) */
  SELECT_NPARAMS
};

typedef enum {
  SELECT_KERNEL_INIT, SELECT_KERNEL_HIST, SELECT_KERNEL_PICK, SELECT_NKERNELS
} SelectKernel;

/* Kernel name suffixes: "select_init", "select_hist", "select_pick" (NAME_ + suffix). */
const char *attention_select_kernel_name(SelectKernel which);

/* G: B*H for head_quantile, 1 for layer_quantile, 0 for the other modes. */
int attention_select_groups(const Spec *s, int B, int H);

/* The tile schedule's candidate buffer (SCHED_TILE; attention_select_tile.c). Its
 * kernels take two more parameters after `round`:
 *   cand:     i32 inout [B * H * (cand_cap + SELECT_CAND_HEAD)]   scratch kept from
 *             a hist to the next pick (the sample, the bracket's keys) or hist
 *             (round 1's keys for round 2): per (b, h) a header and up to cand_cap keys
 *   cand_cap: i32   keys per (b, h); any value >= 0 gives the same tau (0: no sample,
 *             and round 2 recomputes every score, as the warp schedule does). Indices
 *             are i32: B * H * (cand_cap + SELECT_CAND_HEAD) must stay below 2^31.
 * The warp schedule's kernels have neither (SELECT_CAND is one past their last). */
enum { SELECT_CAND_HEAD = 2 };
bool attention_select_has_cand(const TileConfig *t);
/* The default cand_cap for calls with N <= max_len: an eighth of a head's max_len^2
 * scores (a buffer of about B * H * max_len^2 / 2 bytes), or where more, the head's
 * row groups up to SELECT_SAMPLE_KEYS keys (16384: all of them up to max_len 128, so
 * that the sample is the whole head), plus 4 max_len (the room a row group must find
 * free). */
int attention_select_cand_cap(int max_len);
/* Elements of the cand buffer for B x H heads (cap: cand_cap). */
int64_t attention_select_cand_len(int B, int H, int cap);

/* The warp schedule's (SCHED_WARP) hist kernel: shared memory in bytes (the 8 KiB of
 * bins, a staged tile of K, the warps' score slots, the block's Q rows where they
 * fit; attention_select_warp.c), and 0 if the tile fits the 48 KiB of static shared
 * memory, else -1 with err (the tile schedule: always 0, tile_check decides). */
int64_t attention_select_hist_shared_bytes(const Spec *s, const TileConfig *t);
int attention_select_check(const Spec *s, const TileConfig *t, char *err, size_t cap);

/* Builds one kernel (NULL if the spec's select mode needs none). */
Kernel *attention_select_build_kernel(const Spec *s, const TileConfig *t, SelectKernel which);

/* Appends init, hist, pick (SelectKernel order) to m; nothing for modes without
 * group thresholds. Returns 0, or -1 with err (module full). */
int attention_select_build(const Spec *s, const TileConfig *t, Module *m, char *err, size_t cap);

typedef struct SelectLaunch {
  SelectKernel kernel;
  int round;            /* the `round` argument (0 for init) */
} SelectLaunch;

/* The tile schedule's two rounds before the radix (attention_select_bracket.c):
 * SAMPLE stores every stride-th row group's keys of each (b, h) in cand, and its pick
 * brackets tau between two of the sample's keys (or finds tau, when the sample is the
 * whole head); BRACKET scores every row once, stores the keys inside the bracket and
 * counts those above it, and its pick finds tau among the stored keys. Groups it
 * cannot settle (the bracket missed tau, cand overflowed, no sample fit) go through
 * rounds 0, 1, 2 as before; the others skip them. */
enum { SELECT_ROUND_SAMPLE = SELECT_ROUNDS, SELECT_ROUND_BRACKET = SELECT_ROUNDS + 1 };

/* The round of pick's all-kept plan (both schedules' pick kernels take it). */
enum { SELECT_ROUND_ALL_KEPT = SELECT_ROUNDS + 2 };

/* The tile schedule's one-launch plan for head_quantile heads small enough that the
 * hist block holds every score (attention_select_whole.c): hist(WHOLE) scores the head
 * once into a shared buffer of attention_select_whole_keys(spec) floats, finds the
 * keep_g-th largest there by counting passes (attn_row_kth_count, the forward's exact
 * k-th search) and writes tau_group[g] and rank[g] = -1 itself: no init, no pick, and
 * hist, prefix and cand untouched. */
enum { SELECT_ROUND_WHOLE = SELECT_ROUNDS + 3 };
/* The most scores a head may have for that plan (128 x 128: the whole-head sample of
 * the bracket plan ended there too); the kernel's buffer is min(this, max_seq^2). */
enum { SELECT_WHOLE_KEYS = 16384 };
int attention_select_whole_keys(const Spec *s);

enum { SELECT_PLAN_MAX = 1 + 2 * (SELECT_ROUNDS + 2) };

/* Where the tile schedule's sample and bracket start to pay: from this length N (the
 * call's, args[SELECT_N]) its plan samples and brackets; below it, the plain radix
 * rounds (round 1 keeping its candidates for round 2). It was 128 while the picks
 * swept every stored key three times; with their compaction the sample + bracket
 * plan measured 0.92-0.97x the radix's select + forward at n = 64 (d = 32 and 64) and
 * n = 96 (d = 32) (docs/kernels-select.md, "Small heads"); shorter calls were not
 * measured. Both plans give the same tau (the exact keep_g-th score), so this is a
 * speed choice only. head_quantile takes neither up to N = 128 (the WHOLE plan). */
enum { SELECT_BRACKET_MIN_N = 64 };
/* Whether a call of N rows takes the sample + bracket plan: the tile schedule (tile:
 * the hist kernel has `cand`, attention_select_has_cand) and N >= SELECT_BRACKET_MIN_N. */
bool attention_select_brackets(bool tile, int N);
/* The warp schedule's WHOLE plan (attention_select_warp.c): for head_quantile specs
 * with max_seq <= SELECT_WARP_WHOLE_SEQ and head_dim <= 128 the hist kernel keeps a
 * buffer of max_seq^2 scores in shared memory (16 KiB at most; 0 keys otherwise:
 * beside the staged tiles and the bins a head fits 48 KiB up to ~70 rows, and the
 * buffer would cost every larger spec's hist blocks per SM though their calls could
 * never use it), so that every call of such a spec is one launch. */
enum { SELECT_WARP_WHOLE_SEQ = 64 };
int attention_select_warp_whole_keys(const Spec *s);
/* Whether a call of N rows takes the one-launch WHOLE plan: head_quantile, N <= max_seq
 * and N^2 <= the hist block's buffer (every head's scores fit, causal or not):
 * attention_select_whole_keys(s) on the tile schedule, attention_select_warp_whole_keys(s)
 * on the warp schedule. */
bool attention_select_whole(const Spec *s, bool tile, int N);

/* The launch plans. */
typedef enum {
  SELECT_PLAN_RADIX,     /* init, hist(0), pick(0), hist(1), pick(1), hist(2), pick(2) */
  SELECT_PLAN_BRACKET,   /* init, hist(S), pick(S), hist(B), pick(B), then the same six
                          * (S, B: SELECT_ROUND_SAMPLE, _BRACKET; tile schedule only) */
  SELECT_PLAN_ALL_KEPT,  /* pick(SELECT_ROUND_ALL_KEPT): no scoring at all */
  SELECT_PLAN_WHOLE      /* hist(SELECT_ROUND_WHOLE): one launch (tile, head_quantile) */
} SelectPlanKind;

/* Whether every group of a call keeps every one of its scores whatever the lengths
 * (keep(M) = M for every M up to M_max = N^2, or N (N + 1) / 2 causal, times B*H for
 * layer_quantile): s <= 0, keep_min >= M_max, or s M_max <= 1 - 2^-10 (sufficient; a
 * group found so at run time gets the same -inf from the full plan's picks). */
bool attention_select_keeps_all(const Spec *s, int B, int H, int N, double sparsity);

/* The plan of a call, chosen on the host (every caller goes through this): ALL_KEPT
 * when attention_select_keeps_all, else WHOLE when attention_select_whole(s, tile, N),
 * else BRACKET when attention_select_brackets(tile, N), else RADIX. tile: the hist
 * kernel has `cand` (attention_select_has_cand). */
SelectPlanKind attention_select_plan_kind(const Spec *s, bool tile, int B, int H, int N,
                                          double sparsity);

/* Fills plan[] with the launch sequence of `kind`; returns its length. */
int attention_select_plan(SelectPlanKind kind, SelectLaunch plan[SELECT_PLAN_MAX]);

/* Runs the plan attention_select_plan_kind picks for the spec the kernels were built
 * from, the kernels' schedule (the tile one when the hist kernel has a `cand`
 * parameter) and the call (*args[SELECT_B], [SELECT_H], [SELECT_N],
 * [SELECT_SPARSITY]): for each launch, args with `round` set (args[SELECT_ROUND] is
 * replaced by the runner's own) and the grid from ir_grid, through `launch`, which
 * returns 0 or nonzero to stop. kernels[] in SelectKernel order. Any target: the
 * caller's launch JIT-calls, interprets or enqueues on a GPU stream. */
typedef int (*SelectLaunchFn)(void *ctx, SelectKernel which, Kernel *k, void **args,
                              const int32_t grid[3]);
int attention_select_run(Kernel *const kernels[SELECT_NKERNELS], const Spec *s,
                         void *const *args, SelectLaunchFn launch, void *ctx);
/* The same with the plan given (tests use it to run the sample and bracket at any
 * length, or the radix plan where every group keeps every score). */
int attention_select_run_plan(Kernel *const kernels[SELECT_NKERNELS], void *const *args,
                              SelectPlanKind kind, SelectLaunchFn launch, void *ctx);

#endif
