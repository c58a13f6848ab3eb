/* The attention backward kernels (templates/attention_bwd.c) and their reference:
 *   a) the double reference backward against central finite differences of the
 *      masked double forward (L = sum O * G, mask held fixed), every selection mode,
 *      causal or not, dropout on and off, padding;
 *   b) the host-JIT'd kernels against the double reference on fresh random shapes
 *      (n = 1, odd, not a multiple of the tile, 128; lengths 1..n; s = 0 .. 0.999;
 *      dropout 0 and 0.1; fused and separate layouts), outputs poisoned with NaN;
 *   c) the GPU mapping of both kernels in the IR interpreter (races, uninitialised
 *      shared reads) against the reference, for three tile configurations;
 *   d) PTX of both kernels through ptxas -v for sm_90 and sm_80: assembles, no spills
 *      (on spills it also reports whether the PTX without .maxntid is spill-free);
 *   e) end to end on the host: the forward kernel (templates.h contract) writes o, lse
 *      and tau, the backward kernels read them, the gradients match the reference.
 * The kernels get lse from the reference forward (as f32) and a tau equal to their
 * own f32 score of the reference's weakest kept key; with q, k multiples of 1/4 the
 * f32 scores are exact up to the final scaling, so kept sets agree exactly.
 * Error measure per tensor: max |x - ref| / max |ref| < 1e-5, or, where a gradient
 * cancels to ~0 (s -> 1 leaves rows one key, and dS = P (dP - Delta) ~ 0), the error
 * relative to the magnitude of the summed terms (sum P (|dP| + |Delta|) |K| / sqrt(d)
 * and the like) < 1e-6. Set CRISP_SEED to repeat a run; CRISP_TEST_VERBOSE=1 prints
 * every case's errors and ptxas's output, CRISP_TEST_PTX=1 the PTX.
 *
 * This file holds the random draws, compiling the kernels, tile legality and main
 * (the order the suites run in, which fixes the random stream); the suites live in
 * backward_fd.c (a), backward_runs.c (b, c, e) and backward_ptx.c (d), the problem
 * set-up and error measure in backward_case.c (see backward_test.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK_SHARED
#define CHECK_OWNER
#include "attn_harness.h"
#include "backward_test.h"
#include "check.h"

uint64_t rng;
double worst_rel, worst_term, worst_fd;
long fd_nonzero;

void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p)
    abort();
  return p;
}

double uniform(void) {   /* splitmix64 -> [0, 1) */
  uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

float draw(bool quantized) {
  double u = uniform() * 2 - 1;
  return quantized ? (float)(round(u * 4) / 4) : (float)u;
}

Spec make_spec(int head_dim, int max_seq, SelectKind sel, bool causal, int keep_min) {
  Spec s = harness_spec("t", sel, head_dim, max_seq, causal, keep_min);
  s.backward = true;
  return s;
}

/* ---- compiling the backward kernels ---- */

int compile(Module *m, const Spec *s, const TileConfig *t, MapTarget target, char *err,
                   size_t cap) {
  if (attention_bwd_build(s, t, m, err, cap))
    return -1;
  for (int i = 0; i < m->n; i++)
    if (ir_run_passes(m->kernels[i], target, err, cap))
      return -1;
  return 0;
}

void run_host(CpuKernelFn fn, Kernel *k, BwdArgs *a) {
  int32_t grid[3];
  ir_grid(k, a->args, grid);
  fn(a->args, grid, 0, (int64_t)grid[0] * grid[1] * grid[2]);
}

/* ---- tile legality ---- */

static void tile_suite(void) {
  char err[256];
  Module m = {0};
  Spec s = make_spec(64, 8192, SEL_ROW_TOPK, false, 1);
  /* the warp schedule's staged layout does not grow with max_seq; rows * head_dim
   * sums do: dK and dV of 64 keys of 128 floats are 64 KiB */
  Spec wide_long = make_spec(128, 8192, SEL_ROW_TOPK, false, 1);
  CHECK(attention_bwd_build(&wide_long, &(TileConfig){64, 1, SCHED_WARP}, &m, err, sizeof err) ==
            -1 && strstr(err, "shared memory") && m.n == 0,
        "an oversized tile is refused (got \"%s\")", err);
  CHECK(attention_bwd_build(&wide_long, &(TileConfig){8, 4, SCHED_WARP}, &m, err, sizeof err) ==
            0 && m.n == 2 && attention_bwd_shared_bytes(&wide_long, &(TileConfig){8, 4, SCHED_WARP}) <= 49152,
        "max_seq 8192, head_dim 128: the default tile builds (got \"%s\")", err);
  ir_module_free(&m);
  m = (Module){0};
  /* staged rows: a key per lane, halved where the block's sums need the room */
  CHECK(attention_bwd_stage_rows(&s, &(TileConfig){8, 4, SCHED_WARP}, true) == 32 &&
            attention_bwd_stage_rows(&s, &(TileConfig){8, 4, SCHED_WARP}, false) == 32 &&
            attention_bwd_stage_rows(&s, &(TileConfig){64, 1, SCHED_WARP}, true) == 32 &&
            attention_bwd_stage_rows(&s, &(TileConfig){64, 1, SCHED_WARP}, false) == 16 &&
            attention_bwd_shared_bytes(&s, &(TileConfig){64, 1, SCHED_WARP}) <= 49152,
        "staged rows of the default tile and of rows 64 (d = 64)");
  /* the block's own rows: staged beside the tiles where they fit (8 x 4, 16 x 1), not
   * at rows 64, d = 64 (the interpreter suites run both) */
  CHECK(attention_bwd_stages_own(&s, &(TileConfig){8, 4, SCHED_WARP}, true) &&
            attention_bwd_stages_own(&s, &(TileConfig){16, 1, SCHED_WARP}, false) &&
            !attention_bwd_stages_own(&s, &(TileConfig){64, 1, SCHED_WARP}, true) &&
            !attention_bwd_stages_own(&s, &(TileConfig){64, 1, SCHED_WARP}, false),
        "own rows staged at 8 x 4 and 16 x 1, not at 64 x 1 (d = 64)");
  CHECK(attention_bwd_build(&s, &(TileConfig){6, 4, SCHED_WARP}, &m, err, sizeof err) == -1 &&
            strstr(err, "multiple of warps"), "rows not a multiple of warps is refused");
  /* the CPU tile schedule: groups of TILE_RT rows, one warp, no shared-memory limit */
  CHECK(attention_bwd_build(&s, &(TileConfig){6, 1, SCHED_TILE}, &m, err, sizeof err) == -1 &&
            strstr(err, "tile schedule") && m.n == 0, "tile schedule: rows 6 refused");
  CHECK(attention_bwd_build(&s, &(TileConfig){8, 2, SCHED_TILE}, &m, err, sizeof err) == -1 &&
            strstr(err, "warps 1") && m.n == 0, "tile schedule: 2 warps refused");
  CHECK(attention_bwd_build(&s, &(TileConfig){8, 1, SCHED_TILE}, &m, err, sizeof err) == -1 &&
            strstr(err, "stack") && m.n == 0, "tile schedule: 8192 keys need too big a frame");
  CHECK(tile_resolve(&s, TUNE_CPU).sched == SCHED_WARP_HOST, "tile = auto past the frame "
        "limit: the warp schedule, host sums");
  Spec small = make_spec(64, 512, SEL_ROW_TOPK, false, 1);
  CHECK(attention_bwd_build(&small, &(TileConfig){8, 1, SCHED_TILE}, &m, err, sizeof err) == 0 &&
            m.n == 1 && m.kernels[0]->warps == 1 && !strcmp(m.kernels[0]->name, "t_attn_bwd") &&
            m.kernels[0]->nparams == ATTN_BWD_NPARAMS,
        "tile schedule: one kernel, 1 warp, 512 keys");
  CHECK(tile_resolve(&small, TUNE_CPU).sched == SCHED_TILE, "tile = auto on the CPU: tiles");
  /* the K copy of the dense blocks is dropped where it alone would pass the limit */
  Spec wide = make_spec(96, 512, SEL_NONE, false, 1);
  CHECK(tile_frame_kc_bytes(&small) > 0 && tile_frame_kc_bytes(&wide) == 0 &&
            tile_resolve(&wide, TUNE_CPU).sched == SCHED_TILE,
        "d = 96 at 512 keys: the tile schedule, without the K copy");
  ir_module_free(&m);
  m = (Module){0};
  CHECK(attention_bwd_build(&s, &(TileConfig){16, 1, SCHED_WARP}, &m, err, sizeof err) == 0 && m.n == 2 &&
            strcmp(m.kernels[0]->name, "t_attn_bwd_dq") == 0 &&
            strcmp(m.kernels[1]->name, "t_attn_bwd_dkdv") == 0 &&
            m.kernels[0]->nparams == ATTN_BWD_NPARAMS &&
            m.kernels[1]->nparams == ATTN_BWD_NPARAMS,
        "two kernels with the documented parameter list");
  ir_module_free(&m);
}

int main(void) {
  const char *env = getenv("CRISP_SEED");
  rng = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock();
  printf("seed %llu (set CRISP_SEED to repeat)\n", (unsigned long long)rng);
  clock_t t0 = clock();
  fd_suite();
  CHECK(fd_nonzero > 1000, "finite differences: only %ld nonzero gradient entries", fd_nonzero);
  printf("a) finite differences: worst rel err %.3g over %ld nonzero entries (%.1f s)\n",
         worst_fd, fd_nonzero, (double)(clock() - t0) / CLOCKS_PER_SEC);
  t0 = clock();
  tile_suite();
  bits_suite();
  static const SelectKind sels[] = {SEL_NONE, SEL_ROW_TOPK, SEL_HEAD_QUANTILE,
                                    SEL_LAYER_QUANTILE};
  for (int si = 0; si < 4; si++) {
    Spec a = make_spec(64, 512, sels[si], false, 1);
    Spec b = make_spec(32, 128, sels[si], true, si == 1 ? 3 : 1);
    host_suite(&a, tile_resolve(&a, TUNE_CPU));
    host_suite(&b, tile_resolve(&b, TUNE_CPU));
  }
  Spec small = make_spec(8, 40, SEL_ROW_TOPK, true, 2);
  Spec wide = make_spec(96, 512, SEL_NONE, false, 1);   /* dense, K read in place */
  host_suite(&small, tile_resolve(&small, TUNE_CPU));
  host_suite(&wide, tile_resolve(&wide, TUNE_CPU));
  /* the warp schedule on the host (tile = auto past the frame limit, bench --warp),
   * and the GPU's form of its sums there */
  Spec topk = make_spec(64, 512, SEL_ROW_TOPK, false, 1);
  Spec hq = make_spec(32, 128, SEL_HEAD_QUANTILE, true, 1);
  host_suite(&topk, (TileConfig){16, 1, SCHED_WARP_HOST});
  host_suite(&hq, (TileConfig){8, 4, SCHED_WARP});
  Spec longest = make_spec(64, 8192, SEL_ROW_TOPK, false, 1);   /* auto: the warp schedule */
  host_suite(&longest, tile_resolve(&longest, TUNE_CPU));
  printf("b) host JIT vs reference: worst norm-wise rel err %.3g, worst err vs term magnitude "
         "%.3g (%.1f s)\n", worst_rel, worst_term, (double)(clock() - t0) / CLOCKS_PER_SEC);
  worst_rel = worst_term = 0;
  t0 = clock();
  /* the warp schedule's tiles (staged tiles of 32 rows: n = 40 takes two, and rows 5,
   * 6 and 16 do not divide them; a warp's rows in sets of up to 4: 6 x 1 leaves the
   * second set half past the block), then the CPU tile schedule (one group; two groups) */
  static const TileConfig tiles[] = {{1, 1, SCHED_WARP}, {4, 2, SCHED_WARP}, {6, 3, SCHED_WARP},
                                     {8, 4, SCHED_WARP}, {5, 5, SCHED_WARP}, {16, 1, SCHED_WARP},
                                     {6, 1, SCHED_WARP}, {4, 1, SCHED_TILE}, {8, 1, SCHED_TILE}};
  enum { NTILES = sizeof tiles / sizeof tiles[0] };
  for (int ti = 0; ti < NTILES; ti++)
    for (int si = 0; si < 4; si++)
      interp_suite((Spec[]){make_spec(si % 2 ? 16 : 8, 40, sels[si], (si + ti) % 2, 1)},
                   tiles[ti]);
  /* d = 64, 64 rows a block: the dkdv kernel stages 16 query rows at a time */
  interp_suite((Spec[]){make_spec(64, 40, SEL_ROW_TOPK, false, 1)},
               (TileConfig){64, 1, SCHED_WARP});
  interp_suite((Spec[]){make_spec(64, 40, SEL_HEAD_QUANTILE, true, 1)},
               (TileConfig){64, 2, SCHED_WARP});
  /* d = 40: each lane sums two slices of d, the second partly past D */
  interp_suite((Spec[]){make_spec(40, 40, SEL_LAYER_QUANTILE, false, 1)},
               (TileConfig){8, 4, SCHED_WARP});
  printf("c) interpreter, GPU mapping (%d tiles x 4 modes x 4 shapes, + 3): worst norm-wise rel "
         "err %.3g, vs terms %.3g (%.1f s)\n", NTILES, worst_rel, worst_term,
         (double)(clock() - t0) / CLOCKS_PER_SEC);
  t0 = clock();
  worst_rel = worst_term = 0;
  for (int si = 0; si < 4; si++)
    e2e_suite((Spec[]){make_spec(32, 64, sels[si], si % 2, 1)},
              tile_resolve((Spec[]){make_spec(32, 64, sels[si], si % 2, 1)}, TUNE_CPU));
  /* the warp schedule's forward into its staged backward kernels, on the host */
  for (int si = 0; si < 4; si++)
    e2e_suite((Spec[]){make_spec(32, 64, sels[si], si % 2 == 0, 1)},
              (TileConfig){8, 4, SCHED_WARP});
  printf("e) forward kernel -> backward kernels: worst norm-wise rel err %.3g, vs terms %.3g "
         "(%.1f s)\n", worst_rel, worst_term, (double)(clock() - t0) / CLOCKS_PER_SEC);
  t0 = clock();
  ptx_suite();
  printf("d) PTX: %.1f s\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
  nonfinite_suite();
  printf("f) a NaN in dO: done\n");
  return check_summary();
}
