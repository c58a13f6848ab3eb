/* test_nonfinite.c: what the forward kernel does with a NaN or an overflow in its
 * inputs. A NaN must never be dropped silently: a kernel whose max or threshold
 * skipped NaN scores would give the row a finite, meaningless output, and nothing
 * downstream (the model checks its logits, the trainer its loss and gradients) could
 * notice. The contract, as PyTorch's softmax-and-matmul has it:
 *   - a NaN in q_i: row i's o, lse and entropies are NaN; every other row is
 *     bit-for-bit what it is without the NaN;
 *   - a NaN in k_j: every row that sees key j is NaN (its score enters the row's max);
 *   - a q_i so large that its scores overflow to +-inf: row i is NaN (exp(inf - inf));
 *   - a NaN in v_j[d]: o[d] is NaN in every row under `none` (each weighs v_j), in
 *     some under row_topk; every other output keeps its bits; other heads are
 *     untouched;
 * and no kernel hangs or crashes on them (row_topk's k-th search meets NaN keys).
 * For none and row_topk (the quantile modes take their thresholds from the select
 * kernels), on the host tile schedule, the host warp schedule and the GPU mapping in
 * the IR interpreter. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/interp.h"
#include "attn_harness.h"
#include "check.h"

enum { B = 2, H = 2, N = 19, D = 16, MAX_SEQ = 64 };

typedef enum { FORM_HOST, FORM_INTERP } Form;

typedef struct {
  Module m;
  Jit *jit;
  CpuKernelFn fn;
  Form form;
  const char *name;
} Kern;

static int kern_build(Kern *k, const Spec *s, TileConfig t, Form form, const char *name) {
  char err[1024];
  *k = (Kern){.form = form, .name = name};
  int rc = harness_compile(&k->m, s, &t, form == FORM_HOST ? MAP_CPU : MAP_NONE, err, sizeof err);
  if (!rc && form == FORM_HOST) {
    k->jit = jit_compile(&k->m, err, sizeof err);
    k->fn = k->jit ? jit_lookup(k->jit, k->m.kernels[0]->name) : NULL;
    rc = k->fn ? 0 : -1;
  }
  CHECK(rc == 0, "%s: compile: %s", name, err);
  return rc;
}

static void kern_free(Kern *k) {
  jit_free(k->jit);
  ir_module_free(&k->m);
}

static void kern_run(Kern *k, AttnCase *c, const AttnRun *r) {
  AttnArgs a;
  attn_case_poison(c);
  attn_args_run(&a, c, r);
  if (k->form == FORM_HOST) {
    harness_run_jit(k->fn, k->m.kernels[0], &a);
    return;
  }
  char err[1024];
  int32_t grid[3];
  ir_grid(k->m.kernels[0], a.args, grid);
  int rc = interp_run(k->m.kernels[0], a.args, a.counts, grid, &(InterpOptions){true, true},
                      err, sizeof err);
  CHECK(rc == 0, "%s: interpreter: %s", k->name, err);
}

typedef enum { NAN_Q, NAN_K, HUGE_Q, NAN_V } Poison;
static const char *const poison_name[] = {"NaN in q", "NaN in k", "q overflowing", "NaN in v"};

/* One row's outputs, copied out of a case. */
typedef struct {
  float o[D], lse, tau, ent, dent;
  int32_t kept;
} Row;

static Row row_of(const AttnCase *c, int b, int h, int i) {
  Row r;
  memset(&r, 0, sizeof r);   /* padding bytes too: rows are compared with memcmp */
  const float *o = c->o + b * c->l.o_sb + (int64_t)i * c->l.o_sn + h * c->l.o_sh;
  memcpy(r.o, o, sizeof r.o);
  int64_t at = ((int64_t)b * H + h) * N + i;
  r.lse = c->lse[at], r.tau = c->tau[at], r.ent = c->entropy[at];
  r.dent = c->dense_entropy[at], r.kept = c->kept[at];
  return r;
}

static bool o_nan(const Row *r) {
  bool all = true;
  for (int d = 0; d < D; d++)
    all &= isnan(r->o[d]);
  return all;
}

/* NaN where the poison reaches. A poisoned score: all of o, lse and the entropies. A
 * poisoned v_j[D - 1]: o[D - 1] only, every other output keeps its bits. */
static bool row_nan(Poison p, const Row *clean, const Row *r) {
  if (p != NAN_V)
    return o_nan(r) && isnan(r->lse) && isnan(r->ent) && isnan(r->dent);
  Row x = *r;
  x.o[D - 1] = clean->o[D - 1];
  return isnan(r->o[D - 1]) && !memcmp(clean, &x, sizeof x);
}


/* The poisoned (b, h) and row or key; which rows must then be NaN. */
enum { PB = 1, PH = 0, PI = 5 };

static bool must_be_nan(Poison p, const Spec *s, int b, int h, int i) {
  if (b != PB || h != PH)
    return false;
  switch (p) {
  case NAN_Q:
  case HUGE_Q: return i == PI;
  case NAN_K: return true;   /* every row sees key PI: not causal, full lengths */
  default: return s->select == SEL_NONE;
  }
}

static void poison(AttnCase *c, Poison p) {
  int64_t row = PB * c->l.qkv_sb + (int64_t)PI * c->l.qkv_sn + PH * c->l.qkv_sh;
  float *q = c->q + row, *k = c->k + row, *v = c->v + row;
  if (p == NAN_Q)
    q[3] = NAN;
  else if (p == NAN_K)
    k[0] = -NAN;   /* the sign x86 gives inf - inf: ordered below -inf by signed keys */
  else if (p == NAN_V)
    v[D - 1] = NAN;
  else
    for (int d = 0; d < D; d++)
      q[d] = 3e38f;
}

static void case_make(AttnCase *c, const Spec *s, uint64_t seed) {
  uint64_t rng = seed;
  attn_case_init(c, s, B, H, N, true);
  attn_case_fill(c, &rng, true);
}

static void check_poison(Kern *k, const Spec *s, Poison p, uint64_t seed) {
  AttnRun r = {.sparsity = s->select == SEL_NONE ? 0 : 0.5,
               .stats = ATTN_STATS_ENTROPY | ATTN_STATS_DENSE_ENTROPY};
  AttnCase clean, bad;
  case_make(&clean, s, seed);
  case_make(&bad, s, seed);
  poison(&bad, p);
  kern_run(k, &clean, &r);
  kern_run(k, &bad, &r);
  int wrong = 0, first = -1;
  bool any_nan = false;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < N; i++) {
        Row x = row_of(&clean, b, h, i), y = row_of(&bad, b, h, i);
        bool in_head = b == PB && h == PH, nan = row_nan(p, &x, &y);
        any_nan |= in_head && nan;
        bool ok = must_be_nan(p, s, b, h, i) ? nan
                  : in_head && p == NAN_V     ? true   /* row_topk: NaN iff it keeps key PI */
                                              : memcmp(&x, &y, sizeof x) == 0;
        if (!ok && wrong++ == 0)
          first = (b * H + h) * N + i;
      }
  CHECK(wrong == 0, "%s, %s, %s: %d rows wrong (first: b %d h %d row %d; %s)", k->name,
        select_name(s->select), poison_name[p], wrong, first / (H * N), first / N % H,
        first % N, "expected NaN where the row depends on the poisoned value, else the "
        "clean run's bits");
  CHECK(any_nan, "%s, %s, %s: no row of the poisoned head is NaN", k->name,
        select_name(s->select), poison_name[p]);
  attn_case_free(&clean);
  attn_case_free(&bad);
}

int main(void) {
  uint64_t seed = harness_seed();
  static const SelectKind sels[] = {SEL_NONE, SEL_ROW_TOPK};
  for (int si = 0; si < 2; si++) {
    Spec s = harness_spec("nf", sels[si], D, MAX_SEQ, false, 1);
    struct {
      TileConfig t;
      Form form;
      const char *name;
    } forms[] = {{tile_resolve(&s, TUNE_CPU), FORM_HOST, "host tile schedule"},
                 {{16, 1, SCHED_WARP_HOST}, FORM_HOST, "host warp schedule"},
                 {{8, 4, SCHED_WARP}, FORM_INTERP, "GPU mapping 8x4 (interpreter)"}};
    for (int f = 0; f < 3; f++) {
      Kern k;
      if (kern_build(&k, &s, forms[f].t, forms[f].form, forms[f].name))
        continue;
      for (int p = NAN_Q; p <= NAN_V; p++)
        check_poison(&k, &s, (Poison)p, seed + (uint64_t)p);
      kern_free(&k);
    }
  }
  return check_summary();
}
