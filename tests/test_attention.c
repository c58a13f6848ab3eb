/* The attention forward kernel against the double-precision reference:
 *   - host JIT over many shapes (n = 1, odd n, n not a multiple of the tile,
 *     n = max_seq, all-equal scores, every valid length 1..n, s = 0 .. 0.99,
 *     fused and separate layouts, causal, keep_min), outputs poisoned first;
 *   - dynamic padding and pad-to-max_seq give identical numbers;
 *   - the GPU-mapped kernel in the IR interpreter (threads, warps, shared memory,
 *     races) for several block configurations.
 * Inputs with sparsity > 0 are quantized so the kernel's f32 scores are exact and
 * its kept sets can be compared with the reference's exactly (see harness). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/interp.h"
#include "attn_harness.h"
#include "check.h"

static uint64_t rng;
static const double TOL = 1e-5;

static Spec make_spec(int head_dim, int max_seq, SelectKind sel, bool causal, int keep_min) {
  Spec s;
  spec_defaults(&s);
  snprintf(s.name, sizeof s.name, "t");
  s.head_dim = head_dim;
  s.max_seq = max_seq;
  s.select = sel;
  s.causal = causal;
  s.keep_min = keep_min;
  return s;
}

/* One compiled host kernel per spec variant. */
typedef struct {
  Module m;
  Jit *jit;
  CpuKernelFn fn;
} HostKernel;

static int host_compile(HostKernel *hk, const Spec *s) {
  char err[1024];
  memset(hk, 0, sizeof *hk);
  TileConfig t = tile_resolve(s, TUNE_CPU);
  if (harness_compile(&hk->m, s, &t, MAP_CPU, err, sizeof err) ||
      !(hk->jit = jit_compile(&hk->m, err, sizeof err))) {
    CHECK(0, "compile: %s", err);
    ir_module_free(&hk->m);
    return -1;
  }
  hk->fn = jit_lookup(hk->jit, hk->m.kernels[0]->name);
  CHECK(hk->fn != NULL, "lookup %s", hk->m.kernels[0]->name);
  return hk->fn ? 0 : -1;
}

static void host_free(HostKernel *hk) {
  jit_free(hk->jit);
  ir_module_free(&hk->m);
}

static void check_case(HostKernel *hk, AttnCase *c, double s, const char *what) {
  AttnArgs a;
  attn_case_poison(c);
  attn_args(&a, c, s);
  harness_run_jit(hk->fn, hk->m.kernels[0], &a);
  bool kept_ok, unwritten;
  double err = attn_case_error(c, s, &kept_ok, &unwritten);
  CHECK(err < TOL && kept_ok && !unwritten,
        "%s: B=%d H=%d N=%d D=%d s=%g select=%s causal=%d: rel err %.3g, kept %s, %s", what,
        c->l.B, c->l.H, c->l.N, c->spec.head_dim, s, select_name(c->spec.select),
        c->spec.causal, err, kept_ok ? "ok" : "WRONG", unwritten ? "UNWRITTEN outputs" : "");
}

static void random_lengths(AttnCase *c) {
  for (int b = 0; b < c->l.B; b++)
    c->lengths[b] = 1 + (int)(harness_uniform(&rng) * c->l.N);
}

static void shapes(HostKernel *hk, const Spec *s) {
  static const double sparsities[] = {0.0, 0.5, 0.8, 0.99};
  int ns[] = {1, 7, 33, 64, s->max_seq};
  for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
    for (size_t si = 0; si < 4; si++) {
      double sp = sparsities[si];
      AttnCase c;
      int B = ns[ni] > 128 ? 1 : 2, H = ns[ni] > 128 ? 2 : 3;
      attn_case_init(&c, s, B, H, ns[ni], (ni + si) % 2 == 0);
      attn_case_fill(&c, &rng, sp > 0 || s->select == SEL_ROW_TOPK);
      if (ni % 2)
        random_lengths(&c);
      check_case(hk, &c, sp, "shape");
      attn_case_free(&c);
    }
}

/* every valid length 1..n, one example each */
static void every_length(HostKernel *hk, const Spec *s, int n) {
  AttnCase c;
  attn_case_init(&c, s, n, 2, n, true);
  attn_case_fill(&c, &rng, true);
  for (int b = 0; b < n; b++)
    c.lengths[b] = b + 1;
  check_case(hk, &c, 0.8, "every length");
  check_case(hk, &c, 0.0, "every length");
  attn_case_free(&c);
}

/* all scores equal (q = 0): every key ties at tau and is kept */
static void all_equal(HostKernel *hk, const Spec *s) {
  AttnCase c;
  attn_case_init(&c, s, 2, 2, 37, false);
  attn_case_fill(&c, &rng, true);
  for (int64_t i = 0; i < c.qkv_count; i++)
    c.q[i] = 0;
  check_case(hk, &c, 0.8, "all equal");
  for (int64_t i = 0; i < c.kept_count; i++) {
    int valid = s->causal ? (int)(i % 37) + 1 : 37;
    CHECK(c.kept[i] == valid, "all equal: row %lld kept %d of %d", (long long)i, c.kept[i], valid);
  }
  attn_case_free(&c);
}

/* dynamic padding (N = longest) and pad-to-max_seq give the same numbers */
static void padding_independent(HostKernel *hk, const Spec *s) {
  int n = 21, B = 3, H = 2, D = s->head_dim;
  AttnCase dyn, pad;
  attn_case_init(&dyn, s, B, H, n, false);
  attn_case_init(&pad, s, B, H, s->max_seq, false);
  attn_case_fill(&dyn, &rng, true);
  attn_case_fill(&pad, &rng, true);   /* padding holds garbage */
  for (int b = 0; b < B; b++) {
    dyn.lengths[b] = pad.lengths[b] = n - 5 * b;
    for (int i = 0; i < n; i++)
      for (int h = 0; h < H; h++)
        for (int d = 0; d < D; d++) {
          int64_t x = b * dyn.l.qkv_sb + i * dyn.l.qkv_sn + h * dyn.l.qkv_sh + d;
          int64_t y = b * pad.l.qkv_sb + i * pad.l.qkv_sn + h * pad.l.qkv_sh + d;
          pad.q[y] = dyn.q[x], pad.k[y] = dyn.k[x], pad.v[y] = dyn.v[x];
        }
  }
  check_case(hk, &dyn, 0.8, "dynamic padding");
  check_case(hk, &pad, 0.8, "pad to max_seq");
  bool same = true;
  for (int b = 0; b < B; b++)
    for (int i = 0; i < n; i++)
      for (int h = 0; h < H; h++)
        same &= !memcmp(dyn.o + b * dyn.l.o_sb + i * dyn.l.o_sn + h * dyn.l.o_sh,
                        pad.o + b * pad.l.o_sb + i * pad.l.o_sn + h * pad.l.o_sh,
                        (size_t)D * sizeof(float));
  CHECK(same, "padding changed the outputs of valid rows");
  attn_case_free(&dyn);
  attn_case_free(&pad);
}

static void host_suite(const Spec *s) {
  HostKernel hk;
  if (host_compile(&hk, s))
    return;
  shapes(&hk, s);
  every_length(&hk, s, 11);
  all_equal(&hk, s);
  padding_independent(&hk, s);
  host_free(&hk);
}

/* The GPU mapping in the interpreter: small shapes, several block configurations. */
static void interp_suite(const Spec *s, TileConfig t) {
  char err[1024];
  Module m = {0};
  if (harness_compile(&m, s, &t, MAP_NONE, err, sizeof err)) {
    CHECK(0, "compile for interpreter: %s", err);
    return;
  }
  static const int ns[] = {1, 5, 19, 40};
  for (int ni = 0; ni < 4; ni++)
    for (int si = 0; si < 3; si++) {
      double sp = (double[]){0.0, 0.6, 0.95}[si];
      AttnCase c;
      attn_case_init(&c, s, 2, 2, ns[ni], si == 1);
      attn_case_fill(&c, &rng, true);
      random_lengths(&c);
      attn_case_poison(&c);
      AttnArgs a;
      attn_args(&a, &c, sp);
      int32_t grid[3];
      ir_grid(m.kernels[0], a.args, grid);
      InterpOptions opt = {true, true};
      int rc = interp_run(m.kernels[0], a.args, a.counts, grid, &opt, err, sizeof err);
      CHECK(rc == 0, "interpreter (rows %d warps %d): %s", t.rows, t.warps, err);
      bool kept_ok, unwritten;
      double e = attn_case_error(&c, sp, &kept_ok, &unwritten);
      CHECK(rc || (e < TOL && kept_ok && !unwritten),
            "interpreter rows=%d warps=%d N=%d s=%g causal=%d: err %.3g kept %d unwritten %d",
            t.rows, t.warps, ns[ni], sp, s->causal, e, kept_ok, unwritten);
      attn_case_free(&c);
    }
  ir_module_free(&m);
}

int main(void) {
  rng = harness_seed();
  host_suite((Spec[]){make_spec(64, 512, SEL_ROW_TOPK, false, 1)});
  host_suite((Spec[]){make_spec(64, 512, SEL_NONE, false, 1)});
  host_suite((Spec[]){make_spec(32, 128, SEL_ROW_TOPK, true, 3)});
  host_suite((Spec[]){make_spec(128, 96, SEL_ROW_TOPK, false, 1)});
  host_suite((Spec[]){make_spec(8, 40, SEL_ROW_TOPK, true, 1)});
  static const TileConfig tiles[] = {{1, 1}, {4, 2}, {8, 4}, {6, 3}};
  for (int i = 0; i < 4; i++) {
    interp_suite((Spec[]){make_spec(16, 48, SEL_ROW_TOPK, false, 1)}, tiles[i]);
    interp_suite((Spec[]){make_spec(8, 40, SEL_ROW_TOPK, true, 2)}, tiles[i]);
  }
  interp_suite((Spec[]){make_spec(40, 40, SEL_NONE, false, 1)}, tiles[2]);
  return check_summary();
}
