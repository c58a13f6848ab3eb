/* test_select's checks of the launch plans and the select API, with no kernel run:
 * the plans' launch sequences, the plan each kind of call gets
 * (attention_select_plan_kind: by N, by s, all kept), the soundness of
 * attention_select_keeps_all against the reference's keep count, and the kernels
 * the modes build. */
#define CHECK_SHARED

#include <string.h>

#include "../templates/reference.h"
#include "check.h"
#include "select_harness.h"

static Spec make_spec(SelectKind sel, int head_dim, bool causal, int keep_min) {
  return harness_spec("t", sel, head_dim, 128, causal, keep_min);
}

/* attention_select_keeps_all never says "all" where a group of some length would
 * not keep all: every M up to M_max checked with the reference's keep count, over N,
 * s near and at the bounds, keep_min, head and layer, causal or not. */
static void test_keeps_all_sound(void) {
  static const double sps[] = {-0.5, 0.0, 1e-9, 1e-4, 0.001, 0.01, 0.0624, 0.0625, 0.07,
                               0.1, 0.2499, 0.25, 0.3, 0.5, 0.9};
  int claims = 0, wrong = 0;
  for (int mode = 0; mode < 2; mode++)
    for (int causal = 0; causal < 2; causal++)
      for (int km = 1; km <= 20; km += 3)
        for (int N = 0; N <= 40; N++)
          for (size_t si = 0; si < sizeof sps / sizeof sps[0]; si++) {
            Spec s = make_spec(mode ? SEL_LAYER_QUANTILE : SEL_HEAD_QUANTILE, 16, causal, km);
            int B = 2, H = 3;
            if (!attention_select_keeps_all(&s, B, H, N, sps[si]))
              continue;
            claims++;
            int64_t per = causal ? (int64_t)N * (N + 1) / 2 : (int64_t)N * N;
            int64_t m_max = mode ? B * H * per : per;
            for (int64_t M = 1; M <= m_max; M++)
              if (attention_keep_count(sps[si], km, M) != M && wrong++ == 0)
                CHECK(0, "keeps_all(N=%d, s=%g, keep_min %d, %s, causal %d) but keep(%lld) = %lld",
                      N, sps[si], km, select_name(s.select), causal, (long long)M,
                      (long long)attention_keep_count(sps[si], km, M));
          }
  CHECK(claims > 1000 && wrong == 0, "keeps_all: %d claims, %d wrong", claims, wrong);
}

void sel_test_plan(void) {
  static const char *const want[4] = {
      "init0 hist0 pick0 hist1 pick1 hist2 pick2 ",
      "init0 hist3 pick3 hist4 pick4 hist0 pick0 hist1 pick1 hist2 pick2 ", "pick5 ", "hist6 "};
  for (int kind = SELECT_PLAN_RADIX; kind <= SELECT_PLAN_WHOLE; kind++) {
    SelectLaunch plan[SELECT_PLAN_MAX];
    int n = attention_select_plan((SelectPlanKind)kind, plan);
    char got[128] = "";
    for (int i = 0; i < n; i++) {
      size_t at = strlen(got);
      snprintf(got + at, sizeof got - at, "%s%d ",
               attention_select_kernel_name(plan[i].kernel) + 7, plan[i].round);
    }
    CHECK(n <= SELECT_PLAN_MAX && !strcmp(got, want[kind]), "plan (kind %d): %s", kind, got);
  }
  CHECK(SELECT_ROUND_ALL_KEPT == 5 && SELECT_ROUND_WHOLE == 6,
        "the all-kept round is 5, the whole-head round 6 (the plan strings above)");
  /* the whole-head plan: head_quantile, tile schedule, N <= max_seq, N^2 <= the buffer */
  Spec hq = harness_spec("t", SEL_HEAD_QUANTILE, 64, 512, false, 1);
  Spec h64 = harness_spec("t", SEL_HEAD_QUANTILE, 32, 64, true, 1);
  Spec lq = harness_spec("t", SEL_LAYER_QUANTILE, 64, 512, false, 1);
  CHECK(attention_select_whole_keys(&hq) == SELECT_WHOLE_KEYS &&
            attention_select_whole_keys(&h64) == 64 * 64 && attention_select_whole(&hq, true, 1) &&
            attention_select_whole(&hq, true, 128) && !attention_select_whole(&hq, true, 129) &&
            !attention_select_whole(&hq, false, 64) && !attention_select_whole(&lq, true, 64) &&
            attention_select_whole(&h64, true, 64) && !attention_select_whole(&h64, true, 65),
        "the whole-head plan: head_quantile on the tile schedule up to N = 128 (and max_seq)");
  /* the sample and bracket from SELECT_BRACKET_MIN_N on, on the tile schedule only */
  CHECK(!attention_select_brackets(true, SELECT_BRACKET_MIN_N - 1) &&
            attention_select_brackets(true, SELECT_BRACKET_MIN_N) &&
            attention_select_brackets(true, 4096) && !attention_select_brackets(false, 4096) &&
            attention_select_brackets(true, 64) && !attention_select_brackets(true, 32),
        "the plan by length: radix below %d rows, the bracket from there (tile schedule)",
        SELECT_BRACKET_MIN_N);
  /* s <= 0: no scoring at all, whatever the shape; s > 0 where a group of N rows drops
   * a score: by length; tiny groups or tiny s: all kept */
  for (int mode = 0; mode < 2; mode++)
    for (int causal = 0; causal < 2; causal++) {
      Spec s = make_spec(mode ? SEL_LAYER_QUANTILE : SEL_HEAD_QUANTILE, 64, causal, 1);
      SelectPlanKind k0 = attention_select_plan_kind(&s, true, 16, 12, 512, 0.0);
      SelectPlanKind kw = attention_select_plan_kind(&s, false, 16, 12, 64, 0.0);
      SelectPlanKind k8 = attention_select_plan_kind(&s, true, 16, 12, 512, 0.8);
      SelectPlanKind k32 = attention_select_plan_kind(&s, true, 16, 12, 32, 0.8);
      SelectPlanKind kwa = attention_select_plan_kind(&s, false, 16, 12, 512, 0.8);
      /* one example of 2 rows, one head: M_max = 4 (3 causal); s = 0.1 keeps all */
      SelectPlanKind k2 = attention_select_plan_kind(&s, true, 1, 1, 2, 0.1);
      SelectPlanKind kt = attention_select_plan_kind(&s, true, 16, 12, 512, 1e-9);
      SelectPlanKind k32w = mode ? SELECT_PLAN_RADIX : SELECT_PLAN_WHOLE;
      CHECK(k0 == SELECT_PLAN_ALL_KEPT && kw == SELECT_PLAN_ALL_KEPT &&
                k8 == SELECT_PLAN_BRACKET && k32 == k32w &&
                kwa == SELECT_PLAN_RADIX && k2 == SELECT_PLAN_ALL_KEPT &&
                kt == SELECT_PLAN_ALL_KEPT,
            "plan kinds %s causal %d: s=0 %d %d, s=0.8 %d %d %d, N=2 s=0.1 %d, s=1e-9 %d",
            select_name(s.select), causal, k0, kw, k8, k32, kwa, k2, kt);
    }
  test_keeps_all_sound();
  Spec s = make_spec(SEL_ROW_TOPK, 64, false, 1);
  Module m = {0};
  char err[64];
  TileConfig t = {8, 4, SCHED_WARP};
  CHECK(attention_select_build(&s, &t, &m, err, sizeof err) == 0 && m.n == 0 &&
            attention_select_groups(&s, 4, 8) == 0,
        "row_topk needs no select kernels");
  s.select = SEL_HEAD_QUANTILE;
  CHECK(attention_select_groups(&s, 4, 8) == 32, "head_quantile: G = B*H");
  s.select = SEL_LAYER_QUANTILE;
  CHECK(attention_select_groups(&s, 4, 8) == 1, "layer_quantile: G = 1");
  CHECK(attention_select_build(&s, &t, &m, err, sizeof err) == 0 && m.n == 3 &&
            !strcmp(m.kernels[SELECT_KERNEL_PICK]->name, "t_select_pick"),
        "select kernels built");
  ir_module_free(&m);
}
