/* The backend interface end to end on the CPU:
 *   - memory, copies, memset, events;
 *   - the forward kernel compiled by the JIT, loaded through the backend, launched
 *     from its manifest and checked against the reference on several shapes;
 *     1 thread and N threads give bit-identical outputs;
 *   - sgemm (transposes, padded leading dimensions, strided batched, split over a
 *     3-thread pool) against a double-precision loop, through BLAS and through the
 *     built-in fallback;
 *   - bad modules and bad manifests are reported, never crash. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/attn_task.h"
#include "../runtime/compile.h"
#include "check.h"

static char err[4096];
static uint64_t rng;

static void test_memory(Backend *b) {
  enum { N = 1000 };
  int32_t in[N], out[N];
  for (int i = 0; i < N; i++)
    in[i] = i * 7 - 3;
  DevPtr p = 0, q = 0;
  CHECK(!rt_alloc(b, sizeof in, &p) && !rt_alloc(b, sizeof in, &q), "alloc");
  CHECK(!rt_h2d(b, p, in, sizeof in) && !rt_d2d(b, q, p, sizeof in) &&
        !rt_d2h(b, out, q, sizeof out) && !memcmp(in, out, sizeof in), "copy round trip");
  CHECK(!rt_memset(b, q, 0xff, 8) && !rt_d2h(b, out, q, 12) && out[0] == -1 && out[1] == -1 &&
        out[2] == in[2], "memset");
  RtEvent *e0, *e1;
  float ms = -1;
  CHECK(!rt_event_create(b, &e0) && !rt_event_create(b, &e1) && !rt_event_record(b, e0) &&
        !rt_event_record(b, e1) && !rt_event_elapsed(b, e0, e1, &ms) && ms >= 0, "events");
  rt_event_destroy(b, e0);
  rt_event_destroy(b, e1);
  rt_free(b, p);
  rt_free(b, q);
  DevPtr z = 0;
  CHECK(!rt_alloc(b, 0, &z) && z, "zero-byte allocation");
  rt_free(b, z);
}

static Spec small_spec(SelectKind sel, bool causal) {
  Spec s;
  spec_defaults(&s);
  snprintf(s.name, sizeof s.name, "rt");
  s.head_dim = 32;
  s.max_seq = 64;
  s.select = sel;
  s.sparsity = sel == SEL_NONE ? 0 : 0.5;
  s.causal = causal;
  return s;
}

/* Runs the kernel on one shape with threads 1 and 2, checks against the reference
 * and that both thread counts agree bit for bit. */
static void check_shape(Backend *b1, Backend *bn, RtModule *m1, RtModule *mn, const Spec *s,
                        int B, int H, int N, double sp, AttnFill fill, bool pad) {
  AttnTask t1, tn;
  uint64_t seed = rng;
  if (attn_task_init(&t1, b1, s, B, H, N, sp, err, sizeof err) ||
      attn_task_init(&tn, bn, s, B, H, N, sp, err, sizeof err)) {
    CHECK(0, "task: %s", err);
    return;
  }
  attn_task_fill(&t1, &seed, fill, pad);
  seed = rng;
  attn_task_fill(&tn, &seed, fill, pad);
  rng = seed;
  char name[96];
  snprintf(name, sizeof name, "%s_attn_fwd", s->name);
  RtKernel *k1 = rt_kernel(b1, m1, name), *kn = rt_kernel(bn, mn, name);
  AttnCheck r1, rn;
  CHECK(k1 && kn, "kernel %s", name);
  if (k1 && kn && !attn_task_check(&t1, k1, &r1, err, sizeof err) &&
      !attn_task_check(&tn, kn, &rn, err, sizeof err)) {
    CHECK(attn_check_ok(&r1), "%s B=%d H=%d N=%d s=%g: %s", s->name, B, H, N, sp, r1.first_bad);
    CHECK(attn_check_ok(&rn), "threads: %s", rn.first_bad);
    /* bit-identical across thread counts */
    int io = rt_param_index(k1->info, "o");
    float *o1 = malloc((size_t)t1.n_t * 4), *on = malloc((size_t)t1.n_t * 4);
    rt_d2h(b1, o1, t1.dev[io], (size_t)t1.n_t * 4);
    rt_d2h(bn, on, tn.dev[io], (size_t)t1.n_t * 4);
    CHECK(!memcmp(o1, on, (size_t)t1.n_t * 4), "1 thread and %d threads differ", bn->threads);
    free(o1);
    free(on);
  } else {
    CHECK(0, "check: %s", err);
  }
  attn_task_free(&t1);
  attn_task_free(&tn);
}

static void test_kernels(void) {
  BackendOptions one = {.threads = 1}, many = {.threads = 3};
  Backend *b1 = backend_open("cpu", &one, err, sizeof err);
  Backend *bn = backend_open("cpu", &many, err, sizeof err);
  CHECK(b1 && bn && b1->threads == 1 && bn->threads == 3, "cpu backends: %s", err);
  if (!b1 || !bn)
    return;
  test_memory(b1);
  struct {
    SelectKind sel;
    bool causal;
    TileConfig tile;
  } cases[] = {
      {SEL_ROW_TOPK, false, {16, 1, SCHED_WARP}}, {SEL_NONE, false, {4, 2, SCHED_WARP}},
      {SEL_ROW_TOPK, true, {8, 8, SCHED_WARP}}, {SEL_ROW_TOPK, true, {8, 1, SCHED_TILE}}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    Spec s = small_spec(cases[c].sel, cases[c].causal);
    RtModule *m1 = NULL, *mn = NULL;
    if (rt_compile_load(b1, &s, &cases[c].tile, NULL, &m1, err, sizeof err) ||
        rt_compile_load(bn, &s, &cases[c].tile, NULL, &mn, err, sizeof err)) {
      CHECK(0, "compile: %s", err);
      continue;
    }
    CHECK(m1->manifest.tile_rows == cases[c].tile.rows && !strcmp(m1->manifest.target, "host"),
          "manifest tile/target");
    check_shape(b1, bn, m1, mn, &s, 2, 3, 1, s.sparsity, ATTN_FILL_QUANTIZED, false);
    check_shape(b1, bn, m1, mn, &s, 3, 2, 37, s.sparsity, ATTN_FILL_QUANTIZED, true);
    check_shape(b1, bn, m1, mn, &s, 2, 2, 64, 0.9, ATTN_FILL_QUANTIZED, true);
    check_shape(b1, bn, m1, mn, &s, 2, 2, 33, s.sparsity, ATTN_FILL_TIES, true);
    check_shape(b1, bn, m1, mn, &s, 1, 2, 50, 0.0, ATTN_FILL_RANDOM, true);
    rt_module_unload(b1, m1);
    rt_module_unload(bn, mn);
  }
  /* an empty grid (B = 0 heads of work) is a no-op, not a crash */
  Spec s = small_spec(SEL_NONE, false);
  TileConfig t = {4, 1, SCHED_WARP};
  RtModule *m = NULL;
  if (!rt_compile_load(b1, &s, &t, NULL, &m, err, sizeof err)) {
    RtKernel *k = rt_kernel(b1, m, "rt_attn_fwd");
    int32_t zero[3] = {0, 3, 2};
    CHECK(k && !rt_launch_grid(b1, k, NULL, zero), "empty grid");
    int32_t neg[3] = {-1, 1, 1};
    CHECK(k && rt_launch_grid(b1, k, NULL, neg) && strstr(b1->err, "negative"), "negative grid");
    rt_module_unload(b1, m);
  }
  backend_close(b1);
  backend_close(bn);
}

static void test_bad_modules(void) {
  Backend *b = backend_open("cpu", NULL, err, sizeof err);
  RtModule *m = NULL;
  RtModuleSource ptx = {.manifest_json = "{}", .manifest_len = 2, .ptx = "x", .ptx_len = 1};
  CHECK(rt_module_load(b, &ptx, &m) && strstr(b->err, "manifest"), "empty manifest: %s", b->err);
  const char *bad[] = {"", "not json", "[]", "{\"format\": 2}",
                       "{\"format\": 1, \"compiler\": 3}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    RtManifest man;
    CHECK(rt_manifest_parse(bad[i], strlen(bad[i]), &man, err, sizeof err) == -1 &&
              strstr(err, "manifest:"),
          "bad manifest %zu accepted (%s)", i, err);
  }
  /* a real manifest, then broken field by field */
  Spec s = small_spec(SEL_ROW_TOPK, false);
  TileConfig t = {8, 2, SCHED_WARP};
  RtArtifact a;
  if (rt_compile_artifact(&s, &t, TARGET_SM90, NULL, &a, err, sizeof err)) {
    CHECK(0, "compile sm_90: %s", err);
  } else {
    RtManifest man;
    CHECK(!rt_manifest_parse(a.manifest, a.manifest_len, &man, err, sizeof err), "parse: %s", err);
    CHECK(man.nkernels == 1 && man.kernels[0].threads == 64 && man.tile_rows == 8 &&
          man.spec.head_dim == 32 && man.spec.select == SEL_ROW_TOPK &&
          !strcmp(man.target, "sm_90"), "manifest fields");
    const RtKernelInfo *k = &man.kernels[0];
    int iN = rt_param_index(k, "N"), iq = rt_param_index(k, "q");
    CHECK(iN >= 0 && iq >= 0 && k->params[iq].is_buf && k->params[iq].role == RT_ROLE_IN &&
          k->grid_params[0][0] == iN && k->grid_div[0] == 8, "params and grid rule");
    /* PTX on the cpu backend: refused by name */
    RtModuleSource src = {.manifest = &man, .ptx = a.code, .ptx_len = a.code_len};
    CHECK(rt_module_load(b, &src, &m) == -1 && strstr(b->err, "PTX runs on the cuda backend"),
          "ptx on cpu: %s", b->err);
    /* each with the words that must name the fault; the spec's fields together must
     * make a spec crispc accepts (keep_min <= max_seq, dropout < 1, a name) */
    const char *breaks[][3] = {{"\"threads\":\t64", "\"threads\":\t65", "threads"},
                               {"\"div\":\t8", "\"div\":\t0", "div"},
                               {"\"f32*\"", "\"f16*\"", "unknown type"},
                               {"\"row_topk\"", "\"top_p\"", "select"},
                               {"\"keep_min\":\t1,", "\"keep_min\":\t1000,",
                                "spec: keep_min (1000) must not exceed max_seq"},
                               {"\"dropout\":\t0,", "\"dropout\":\t1,", "spec: dropout must be"},
                               {"\"name\":\t\"rt\"", "\"name\":\t\"r t\"", "spec:"},
                               {"\n}", "\n} {}", "unexpected text after the JSON value"}};
    for (size_t i = 0; i < sizeof breaks / sizeof breaks[0]; i++) {
      char *text = strdup(a.manifest), *at = strstr(text, breaks[i][0]);
      if (i == sizeof breaks / sizeof breaks[0] - 1)
        at = strrchr(text, '\n');   /* the closing brace */
      CHECK(at != NULL, "manifest has %s", breaks[i][0]);
      if (at) {
        char *fixed = malloc(strlen(text) + 16);
        sprintf(fixed, "%.*s%s%s", (int)(at - text), text, breaks[i][1], at + strlen(breaks[i][0]));
        CHECK(rt_manifest_parse(fixed, strlen(fixed), &man, err, sizeof err) == -1 &&
                  strstr(err, breaks[i][2]),
              "broken manifest (%s) accepted or not named: %s", breaks[i][1], err);
        free(fixed);
      }
      free(text);
    }
    /* the PTX must hold the manifest's kernels with its parameter lists (a launch
     * with another list reads garbage pointers on the GPU) */
    CHECK(!rt_manifest_parse(a.manifest, a.manifest_len, &man, err, sizeof err) &&
              !rt_manifest_check_ptx(&man, a.code, a.code_len, err, sizeof err), "ptx: %s", err);
    RtManifest edited = man;
    snprintf(edited.kernels[0].name, sizeof edited.kernels[0].name, "rt_attn_other");
    CHECK(rt_manifest_check_ptx(&edited, a.code, a.code_len, err, sizeof err) == -1 &&
              strstr(err, "kernel rt_attn_other: named in the manifest, not in the PTX"),
          "a kernel missing from the PTX: %s", err);
    edited = man;
    edited.kernels[0].params[edited.kernels[0].nparams++] = edited.kernels[0].params[0];
    CHECK(rt_manifest_check_ptx(&edited, a.code, a.code_len, err, sizeof err) == -1 &&
              strstr(err, "parameters, the PTX "),
          "an extra parameter: %s", err);
    edited = man;
    edited.kernels[0].params[iN].type = RT_T_I64;
    CHECK(rt_manifest_check_ptx(&edited, a.code, a.code_len, err, sizeof err) == -1 &&
              strstr(err, "(N): 8 bytes in the manifest, .u32 in the PTX"), "a wider parameter: %s", err);
    /* truncated at every length: an error, never a crash */
    int crashes = 0;
    for (size_t n = 0; n < a.manifest_len; n += 7)
      crashes += rt_manifest_parse(a.manifest, n, &man, err, sizeof err) == 0;
    CHECK(crashes == 0, "%d truncated manifests accepted", crashes);
    rt_artifact_free(&a);
  }
  backend_close(b);
}

static void gemm_once(Backend *b, RtTrans ta, RtTrans tb, int m, int n, int k, int batch) {
  int ca = ta ? m : k, ra = ta ? k : m, cb = tb ? k : n, rb = tb ? n : k;
  int lda = ca + 1, ldb = cb + 2, ldc = n + 3, nb = batch > 1 ? batch : 1;
  int64_t sa = (int64_t)ra * lda, sb = (int64_t)rb * ldb, sc = (int64_t)m * ldc;
  float *A = malloc((size_t)(sa * nb) * 4), *Bm = malloc((size_t)(sb * nb) * 4);
  float *C = malloc((size_t)(sc * nb) * 4), *C0 = malloc((size_t)(sc * nb) * 4);
  for (int64_t i = 0; i < sa * nb; i++) A[i] = (float)(rt_rng_uniform(&rng) - 0.5);
  for (int64_t i = 0; i < sb * nb; i++) Bm[i] = (float)(rt_rng_uniform(&rng) - 0.5);
  for (int64_t i = 0; i < sc * nb; i++) C0[i] = (float)(rt_rng_uniform(&rng) - 0.5);
  DevPtr dA, dB, dC;
  rt_alloc(b, (size_t)(sa * nb) * 4, &dA);
  rt_alloc(b, (size_t)(sb * nb) * 4, &dB);
  rt_alloc(b, (size_t)(sc * nb) * 4, &dC);
  rt_h2d(b, dA, A, (size_t)(sa * nb) * 4);
  rt_h2d(b, dB, Bm, (size_t)(sb * nb) * 4);
  rt_h2d(b, dC, C0, (size_t)(sc * nb) * 4);
  RtGemm g = {ta, tb, m, n, k, 1.5f, -0.5f, dA, dB, dC, lda, ldb, ldc, batch, sa, sb, sc};
  CHECK(!rt_gemm(b, &g), "gemm: %s", b->err);
  rt_d2h(b, C, dC, (size_t)(sc * nb) * 4);
  double worst = 0;
  for (int p = 0; p < nb; p++)
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) {
        double acc = 0, mag = 0;
        for (int q = 0; q < k; q++) {
          double a = ta ? A[p * sa + (int64_t)q * lda + i] : A[p * sa + (int64_t)i * lda + q];
          double bb = tb ? Bm[p * sb + (int64_t)j * ldb + q] : Bm[p * sb + (int64_t)q * ldb + j];
          acc += a * bb, mag += fabs(a * bb);
        }
        double ref = 1.5 * acc - 0.5 * C0[p * sc + (int64_t)i * ldc + j];
        worst = fmax(worst, fabs(C[p * sc + (int64_t)i * ldc + j] - ref) / (1.5 * mag + 0.5));
        /* padding columns of C untouched */
      }
  int pad_ok = 1;
  for (int p = 0; p < nb; p++)
    for (int i = 0; i < m; i++)
      for (int j = n; j < ldc; j++)
        pad_ok &= C[p * sc + (int64_t)i * ldc + j] == C0[p * sc + (int64_t)i * ldc + j];
  CHECK(worst < 1e-5, "gemm %c%c %dx%dx%d batch %d (%s): error %.3g", ta ? 'T' : 'N',
        tb ? 'T' : 'N', m, n, k, batch, b->gemm_lib, worst);
  CHECK(pad_ok, "gemm wrote outside C's rows");
  rt_free(b, dA), rt_free(b, dB), rt_free(b, dC);
  free(A), free(Bm), free(C), free(C0);
}

static void test_gemm(void) {
  for (int pass = 0; pass < 2; pass++) {
    if (pass)
      setenv("CRISP_BLAS", "none", 1);
    Backend *b = backend_open("cpu", NULL, err, sizeof err);
    if (!b) {
      CHECK(0, "cpu: %s", err);
      continue;
    }
    printf("gemm through %s\n", b->gemm_lib);
    if (!pass && strstr(b->gemm_lib, "built-in"))
      printf("note: no BLAS library found (install libopenblas0); the built-in loops are used\n");
    CHECK(!pass || strstr(b->gemm_lib, "built-in"), "CRISP_BLAS=none ignored");
    gemm_once(b, RT_NOTRANS, RT_NOTRANS, 17, 23, 31, 1);
    gemm_once(b, RT_TRANS, RT_NOTRANS, 8, 5, 64, 1);
    gemm_once(b, RT_NOTRANS, RT_TRANS, 40, 33, 9, 1);
    gemm_once(b, RT_TRANS, RT_TRANS, 3, 70, 12, 1);
    gemm_once(b, RT_NOTRANS, RT_TRANS, 12, 16, 20, 4);
    RtGemm bad = {.m = 4, .n = 4, .k = 4, .lda = 2, .ldb = 4, .ldc = 4};
    CHECK(rt_gemm(b, &bad) == -1 && strstr(b->err, "leading dimension"), "lda check: %s", b->err);
    backend_close(b);
    /* three threads: OpenBLAS runs single-threaded, each GEMM cut into blocks of rows
     * or columns over the pool (cpu.c gemm_split; 64 here): shapes with several
     * blocks and a short last one along either dimension, every transpose, a batch */
    if (!(b = backend_open("cpu", &(BackendOptions){.threads = 3}, err, sizeof err))) {
      CHECK(0, "cpu: %s", err);
      continue;
    }
    for (int t = 0; t < 4; t++) {   /* split by rows, then by columns */
      gemm_once(b, (RtTrans)(t & 1), (RtTrans)(t >> 1), 300, 37, 50, 1);
      gemm_once(b, (RtTrans)(t & 1), (RtTrans)(t >> 1), 37, 290, 17, 1);
    }
    gemm_once(b, RT_NOTRANS, RT_TRANS, 150, 20, 10, 2);
    backend_close(b);
  }
  unsetenv("CRISP_BLAS");
}

int main(void) {
  rng = (uint64_t)time(NULL);
  const char *env = getenv("CRISP_SEED");
  if (env)
    rng = strtoull(env, NULL, 0);
  printf("seed %llu (set CRISP_SEED to repeat)\n", (unsigned long long)rng);
  test_kernels();
  test_bad_modules();
  test_gemm();
  return check_summary();
}
