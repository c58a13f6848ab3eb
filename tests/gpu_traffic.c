/* gpu_traffic: the memory traffic of the attention kernels' GPU schedule, from the
 * interpreter's traffic model (ir/interp_traffic.c), for machines with no GPU.
 *
 *   gpu_traffic [--n N] [--heads H] [--select none|row_topk|head_quantile]
 *               [--s S] [--tile ROWSxWARPS]... [--max-seq M] [--check]
 *
 * head_quantile adds a row for its select kernels (the launches of the plan a caller
 * gets: the three radix rounds, or one launch for max_seq <= 64; their counts summed,
 * 'unique' per launch).
 * Runs the forward and then the backward kernels (SCHED_WARP, the GPU's, on the tiles
 * given; default 8x4, the GPU default, and 16x1 and 64x1, the H100 tuner's best of
 * the last run) on B = 1, H heads of length N with d = 64, fused QKV, random inputs,
 * and prints per kernel and head: global loads in MiB moved at sector granularity,
 * sectors per request (4 = coalesced f32), the reuse factor (sectors asked for /
 * distinct sectors: what caches or shared memory must absorb), global stores, and
 * shared-memory wavefronts per request (1 = no bank conflicts). Baseline in the same
 * run: the compulsory loads, each distinct sector once. --check (the ctest) also
 * fails unless every kernel ran and the model's counts are consistent. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/interp.h"
#include "../templates/attention_bwd.h"
#include "../templates/attention_select.h"
#include "attn_harness.h"
#include "select_harness.h"

enum { MAX_TILES = 8, D = 64 };

typedef struct {
  int n, H, max_seq, ntiles;
  SelectKind sel;
  double s;
  TileConfig tiles[MAX_TILES];
  bool check;
} Opts;

static int fails;

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p) {
    fprintf(stderr, "gpu_traffic: out of memory\n");
    exit(1);
  }
  return p;
}

static void usage(const char *why) {
  fprintf(stderr, "gpu_traffic: %s\nusage: gpu_traffic [--n N] [--heads H] [--select "
          "none|row_topk|head_quantile] [--s S] [--tile ROWSxWARPS]... [--max-seq M] "
          "[--check]\n", why);
  exit(2);
}

static SelectKind parse_select(const char *v) {
  static const char *const names[] = {"none", "row_topk", "head_quantile"};
  static const SelectKind kinds[] = {SEL_NONE, SEL_ROW_TOPK, SEL_HEAD_QUANTILE};
  for (int i = 0; i < 3; i++)
    if (!strcmp(v, names[i]))
      return kinds[i];
  usage("--select: expected none, row_topk or head_quantile");
  return SEL_NONE;
}

static int parse_int(const char *flag, const char *v, int lo, int hi) {
  char *end;
  long x = strtol(v, &end, 10);
  if (*end || x < lo || x > hi) {
    char why[96];
    snprintf(why, sizeof why, "%s: expected an integer in %d..%d, got \"%s\"", flag, lo, hi, v);
    usage(why);
  }
  return (int)x;
}

static Opts parse(int argc, char **argv) {
  Opts o = {.n = 128, .H = 1, .max_seq = 512, .sel = SEL_ROW_TOPK, .s = 0.8};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--check")) {
      o.check = true;
      continue;
    }
    if (!v)
      usage("a flag without its value, or an unknown flag");
    i++;
    if (!strcmp(a, "--n"))
      o.n = parse_int(a, v, 1, 8192);
    else if (!strcmp(a, "--heads"))
      o.H = parse_int(a, v, 1, 64);
    else if (!strcmp(a, "--max-seq"))
      o.max_seq = parse_int(a, v, 1, 8192);
    else if (!strcmp(a, "--select"))
      o.sel = parse_select(v);
    else if (!strcmp(a, "--s")) {
      char *end;
      o.s = strtod(v, &end);
      if (*end || !(o.s >= 0 && o.s < 1))
        usage("--s: expected a sparsity in [0, 1)");
    } else if (!strcmp(a, "--tile")) {
      int r, w;
      char tail;
      if (o.ntiles == MAX_TILES || sscanf(v, "%dx%d%c", &r, &w, &tail) != 2)
        usage("--tile: expected ROWSxWARPS, e.g. 8x4 (at most 8 tiles)");
      o.tiles[o.ntiles++] = (TileConfig){r, w, SCHED_WARP};
    } else
      usage("unknown flag");
  }
  if (o.n > o.max_seq)
    usage("--n must be at most --max-seq");
  if (!o.ntiles) {
    o.tiles[0] = (TileConfig){8, 4, SCHED_WARP};
    o.tiles[1] = (TileConfig){16, 1, SCHED_WARP};
    o.tiles[2] = (TileConfig){64, 1, SCHED_WARP};
    o.ntiles = 3;
  }
  return o;
}

static void print_row(const char *kernel, const char *tile, const InterpTraffic *t, int H) {
  double mib = 1.0 / (1 << 20) / H;
  double sec_req = t->load_requests ? (double)t->load_sectors / t->load_requests : 0;
  double reuse = t->load_unique_sectors ? (double)t->load_sectors / t->load_unique_sectors : 0;
  double wf = t->shared_requests ? (double)t->shared_wavefronts / t->shared_requests : 0;
  printf("%-6s %-6s %10.3f %8.3f %7.1f %9.1f %10.3f %9.1f %12.0f\n", kernel, tile,
         32.0 * t->load_sectors * mib, 32.0 * t->load_unique_sectors * mib, sec_req, reuse,
         32.0 * t->store_sectors * mib, wf, (double)t->shared_requests / H);
  bool ok = t->load_sectors >= t->load_requests && t->load_unique_sectors > 0 &&
            t->load_sectors >= t->load_unique_sectors && t->store_requests > 0 &&
            (t->shared_requests == 0 || t->shared_wavefronts >= t->shared_requests);
  if (!ok) {
    fprintf(stderr, "gpu_traffic: %s %s: inconsistent counts\n", kernel, tile);
    fails++;
  }
}

static int run_counted(Kernel *k, void *const *args, const int64_t *counts, InterpTraffic *t) {
  char err[1024];
  int32_t grid[3];
  ir_grid(k, args, grid);
  memset(t, 0, sizeof *t);
  if (interp_run_traffic(k, args, counts, grid, NULL, t, err, sizeof err)) {
    fprintf(stderr, "gpu_traffic: %s: %s\n", k->name, err);
    fails++;
    return -1;
  }
  return 0;
}

/* The backward's kernelParams from the forward's case and outputs. */
typedef struct {
  float *dout, *delta, *dq;
  int32_t ints[12];
  float p;
  int32_t seed, step, layer;
  void *ptrs[ATTN_BWD_B];
  void *args[ATTN_BWD_NPARAMS];
  int64_t counts[ATTN_BWD_NPARAMS];
} Bwd;

static void bwd_init(Bwd *w, AttnCase *c, uint64_t *rng) {
  const AttnLayout *l = &c->l;
  int64_t rows = (int64_t)l->B * l->H * l->N;
  w->dout = xcalloc((size_t)c->o_count, sizeof(float));
  w->delta = xcalloc((size_t)rows, sizeof(float));
  w->dq = xcalloc((size_t)c->qkv_count, sizeof(float));   /* dq, dk, dv fused like qkv */
  for (int64_t i = 0; i < c->o_count; i++)
    w->dout[i] = (float)(2 * harness_uniform(rng) - 1);
  int64_t ko = c->k - c->q, vo = c->v - c->q;   /* the views' offsets in [B, N, 3, H, D] */
  void *p[ATTN_BWD_B] = {c->q, c->k, c->v, c->o, w->dout, c->lse, c->tau, c->lengths,
                         w->delta, w->dq, w->dq + ko, w->dq + vo};
  int64_t n[ATTN_BWD_B] = {c->qkv_count, c->qkv_count - ko, c->qkv_count - vo, c->o_count,
                           c->o_count, rows, rows, l->B, rows, c->qkv_count,
                           c->qkv_count - ko, c->qkv_count - vo};
  int64_t ints[12] = {l->B, l->H, l->N, l->qkv_sb, l->qkv_sn, l->qkv_sh,
                      l->o_sb, l->o_sn, l->o_sh, l->qkv_sb, l->qkv_sn, l->qkv_sh};
  for (int i = 0; i < ATTN_BWD_B; i++) {
    w->ptrs[i] = p[i];
    w->args[i] = &w->ptrs[i];
    w->counts[i] = n[i];
  }
  for (int i = 0; i < 12; i++) {
    w->ints[i] = (int32_t)ints[i];
    w->args[ATTN_BWD_B + i] = &w->ints[i];
  }
  w->p = 0, w->seed = 1, w->step = 0, w->layer = 0;
  w->args[ATTN_BWD_DROPOUT] = &w->p;
  w->args[ATTN_BWD_SEED] = &w->seed;
  w->args[ATTN_BWD_STEP] = &w->step;
  w->args[ATTN_BWD_LAYER] = &w->layer;
}

static void bwd_free(Bwd *w) {
  free(w->dout);
  free(w->delta);
  free(w->dq);
}

/* Adds every counter of x to *sum. */
static void traffic_add(InterpTraffic *sum, const InterpTraffic *x) {
  sum->load_requests += x->load_requests, sum->load_sectors += x->load_sectors;
  sum->load_bytes += x->load_bytes, sum->load_unique_sectors += x->load_unique_sectors;
  sum->store_requests += x->store_requests, sum->store_sectors += x->store_sectors;
  sum->store_bytes += x->store_bytes;
  sum->shared_requests += x->shared_requests, sum->shared_wavefronts += x->shared_wavefronts;
}

/* head/layer_quantile: the select kernels' launches in the plan a caller gets for this
 * call (attention_select_plan_kind on the warp schedule), their traffic summed into
 * one row. */
static void select_traffic(const Spec *s, const TileConfig *t, AttnCase *c, double sp,
                           const char *name, int H) {
  char err[1024];
  Module sm = {0};
  if (sel_compile(&sm, s, t, MAP_NONE, err, sizeof err)) {
    printf("%-6s %-6s not built: %s\n", "select", name, err);
    ir_module_free(&sm);
    return;
  }
  SelArgs a;
  sel_args(&a, c, sp);
  const AttnLayout *l = &c->l;
  SelectLaunch plan[SELECT_PLAN_MAX];
  int n = attention_select_plan(attention_select_plan_kind(s, false, l->B, l->H, l->N, sp),
                                plan);
  InterpTraffic sum = {0}, one;
  for (int i = 0; i < n; i++) {
    a.round = plan[i].round;
    if (run_counted(sm.kernels[plan[i].kernel], a.args, a.counts, &one))
      break;
    traffic_add(&sum, &one);
  }
  print_row("select", name, &sum, H);
  sel_args_free(&a);
  ir_module_free(&sm);
}

static void one_tile(const Opts *o, const Spec *s, TileConfig t, uint64_t seed) {
  char err[1024], name[16];
  snprintf(name, sizeof name, "%dx%d", t.rows, t.warps);
  Module fm = {0}, bm = {0};
  if (harness_compile(&fm, s, &t, MAP_NONE, err, sizeof err) ||
      attention_bwd_build(s, &t, &bm, err, sizeof err)) {
    printf("%-6s %-6s not built: %s\n", "-", name, err);
    ir_module_free(&fm);
    ir_module_free(&bm);
    return;
  }
  for (int i = 0; i < bm.n; i++)
    if (ir_run_passes(bm.kernels[i], MAP_NONE, err, sizeof err)) {
      fprintf(stderr, "gpu_traffic: %s: %s\n", bm.kernels[i]->name, err);
      fails++;
    }
  uint64_t rng = seed;
  AttnCase c;
  attn_case_init(&c, s, 1, o->H, o->n, true);
  attn_case_fill(&c, &rng, false);
  AttnArgs fa;
  attn_args(&fa, &c, o->s);
  if (s->select == SEL_HEAD_QUANTILE)
    select_traffic(s, &t, &c, o->s, name, o->H);
  InterpTraffic tr;
  if (!run_counted(fm.kernels[0], fa.args, fa.counts, &tr)) {
    print_row("fwd", name, &tr, o->H);
    Bwd w;
    bwd_init(&w, &c, &rng);
    static const char *const short_name[] = {"dq", "dkdv"};
    for (int i = 0; i < bm.n && i < 2; i++)
      if (!run_counted(bm.kernels[i], w.args, w.counts, &tr))
        print_row(bm.n == 2 ? short_name[i] : "bwd", name, &tr, o->H);
    bwd_free(&w);
  }
  attn_case_free(&c);
  ir_module_free(&fm);
  ir_module_free(&bm);
}

int main(int argc, char **argv) {
  Opts o = parse(argc, argv);
  Spec s = harness_spec("traffic", o.sel, D, o.max_seq, false, 1);
  uint64_t seed = harness_seed();
  static const char *const sel_names[] = {"none", "row_topk", "head_quantile"};
  int si = o.sel == SEL_NONE ? 0 : o.sel == SEL_ROW_TOPK ? 1 : 2;
  printf("GPU schedule traffic (interpreter model): %s, s = %.2f, n = %d, d = %d, max_seq %d, "
         "per head (%d heads)\n", sel_names[si], o.s, o.n, D, o.max_seq, o.H);
  printf("global: MiB moved as 32-byte sectors; 'unique': each sector once (the compulsory "
         "traffic); sec/req: 4 = coalesced f32;\nreuse: moved / unique; shared wf/req: bank "
         "wavefronts per request (1 = conflict-free)\n");
  printf("%-6s %-6s %10s %8s %7s %9s %10s %9s %12s\n", "kernel", "tile", "load MiB",
         "unique", "sec/req", "reuse", "store MiB", "sh wf/req", "sh requests");
  for (int i = 0; i < o.ntiles; i++)
    one_tile(&o, &s, o.tiles[i], seed);
  if (o.check && fails)
    fprintf(stderr, "gpu_traffic: %d failures\n", fails);
  return fails ? 1 : 0;
}
