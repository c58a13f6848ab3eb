/* test_parity.c: the whole model against an independent implementation (DESIGN §8).
 *
 *     test_parity DIR        (DIR = tests/fixtures/parity)
 *
 * DIR/{distilbert,bert}/ hold a tiny random model written by Hugging Face
 * transformers (config.json, model.safetensors), one padded batch (inputs.safetensors)
 * and, per attention variant, PyTorch's logits, loss and every parameter's gradient
 * (VARIANT.safetensors: "dense" is transformers' own attention; the sparse variants
 * mask the scores per DESIGN §4 with torch.topk; see tests/parity/make_model_fixture.py).
 *
 * For each variant the model is loaded through hf_load_params, run forward and
 * backward on the CPU backend with the variant's select / sparsity / keep_min,
 * dropout off, and compared tensor by tensor within 1e-4 relative:
 *   err = max|x - ref| / max|ref|   (per tensor; the loss: |x - ref| / |ref|).
 * Norm-wise rather than element-wise because float32 sums taken in another order
 * differ by an amount proportional to the tensor's scale, not to each element: an
 * element that nearly cancels (a gradient entry close to 0) has a large relative
 * error that means nothing. The one gradient that is exactly zero in exact arithmetic
 * (the key projection's bias, see zero_gradient) is measured against the scale of
 * its weight's gradient instead. The same batch is run again padded to N + 5 (dynamic
 * padding must not change any number beyond rounding) and compared the same way, and
 * once more with attention through the JIT-compiled crisp kernels (host target; the
 * backward through the reference until the backward kernels are built).
 *
 * Exits 77 (skip) with a message only when DIR holds no fixtures at all. Prints
 * per-variant error lines and "N passed, M failed". */
#include "check.h"
#include "compile.h"
#include "model.h"
#include "safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const double TOL = 1e-4;
static const char *const VARIANTS[] = {"dense", "row_topk", "head_quantile", "layer_quantile"};

static bool exists(const char *path) {
  struct stat s;
  return stat(path, &s) == 0;
}

static int read_i32(const SafeTensors *st, const char *name, int32_t *dst, size_t cap,
                    size_t *n) {
  const StTensor *t = st_find(st, name);
  if (!t || t->dtype != ST_I32 || t->numel > cap)
    return -1;
  for (size_t i = 0; i < t->numel; i++) {
    const unsigned char *p = t->data + 4 * i;
    dst[i] = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                       (uint32_t)p[3] << 24);
  }
  *n = t->numel;
  return 0;
}

static double max_abs(const float *x, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++)
    m = fabs(x[i]) > m ? fabs(x[i]) : m;
  return m;
}

/* max|x - ref| / max(max|ref|, floor) (max|x - ref| when both are zero). */
static double rel_err(const float *x, const float *ref, size_t n, double floor) {
  double num = 0, den = floor;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)x[i] - ref[i]);
    num = d > num || isnan(d) ? d : num;
    den = fabs(ref[i]) > den ? fabs(ref[i]) : den;
  }
  return den > 0 ? num / den : num;
}

/* The key projection's bias has an exactly zero gradient: it adds q_i . b to every
 * score of row i, which the softmax ignores (and which moves no kept set: the
 * threshold is a constant in the backward, and sum_j dS_ij = 0 in every mode). Both
 * sides hold float rounding noise there (~1e-8 against ~1e-1 for the weight), so its
 * error is measured against the scale of the same projection's weight gradient. */
static bool zero_gradient(const char *name) {
  size_t n = strlen(name);
  const char *ends[] = {"attention.k_lin.bias", "attention.self.key.bias"};
  for (int i = 0; i < 2; i++)
    if (n >= strlen(ends[i]) && !strcmp(name + n - strlen(ends[i]), ends[i]))
      return true;
  return false;
}

static int read_ref(const SafeTensors *ref, const char *name, size_t numel, float **out) {
  char err[512];
  const StTensor *g = st_find(ref, name);
  if (!g || g->numel != numel) {
    fprintf(stderr, "fixture: %s missing or of the wrong size\n", name);
    return -1;
  }
  *out = malloc(numel * sizeof **out);
  if (!*out || st_read_f32(g, *out, numel, err, sizeof err)) {
    free(*out);
    return -1;
  }
  return 0;
}

typedef struct Inputs {
  int B, N;
  int32_t ids[256], lengths[16], labels[16];
} Inputs;

static int load_inputs(const char *dir, Inputs *in) {
  char path[640], err[512];
  snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
  SafeTensors *st = st_open(path, err, sizeof err);
  if (!st) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  size_t nid, nl, nlab;
  const StTensor *t = st_find(st, "ids");
  int rc = !t || t->rank != 2 || read_i32(st, "ids", in->ids, 256, &nid) ||
           read_i32(st, "lengths", in->lengths, 16, &nl) ||
           read_i32(st, "labels", in->labels, 16, &nlab);
  if (!rc) {
    in->B = (int)t->shape[0];
    in->N = (int)t->shape[1];
    rc = (size_t)in->B != nl || (size_t)in->B != nlab;
  }
  st_close(st);
  if (rc)
    fprintf(stderr, "%s: expected int32 ids [B, N], lengths [B], labels [B]\n", path);
  return rc ? -1 : 0;
}

/* The group a parameter's error line is reported under. */
static void group_of(const char *name, char *out, size_t cap) {
  const char *l = strstr(name, "layer.");
  if (strstr(name, "embeddings"))
    snprintf(out, cap, "embeddings");
  else if (l)
    snprintf(out, cap, "layer.%d", atoi(l + 6));
  else
    snprintf(out, cap, "head");
}

typedef struct Result {
  double logits, loss, grad_max;
  char worst[HF_NAME_MAX];
  char groups[8][16];
  double group_err[8];
  int n_groups;
} Result;

/* Forward + backward of the fixture's batch padded to N + extra; compares with ref. */
static int run_variant(Model *m, const Inputs *in, int extra, const SafeTensors *ref,
                       Result *res) {
  int B = in->B, N = in->N + extra;
  int32_t ids[512];
  for (int b = 0; b < B; b++)
    for (int n = 0; n < N; n++)
      ids[b * N + n] = n < in->N ? in->ids[b * in->N + n] : m->cfg.pad_token_id;
  model_zero_grad(m);
  ModelRun run = {.train = false};
  if (model_forward(m, ids, in->lengths, B, N, in->labels, &run) || model_backward(m)) {
    fprintf(stderr, "model: %s\n", m->err);
    return -1;
  }
  char err[512];
  memset(res, 0, sizeof *res);
  const StTensor *t = st_find(ref, "logits");
  const StTensor *tl = st_find(ref, "loss");
  if (!t || !tl || t->numel != (size_t)B * m->cfg.num_labels) {
    fprintf(stderr, "fixture: logits [%d, %d] or loss missing\n", B, m->cfg.num_labels);
    return -1;
  }
  float logits[64], loss;
  if (st_read_f32(t, logits, t->numel, err, sizeof err) || st_read_f32(tl, &loss, 1, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  res->logits = rel_err(run.logits, logits, t->numel, 0);
  res->loss = fabs((double)run.loss - loss) / fabs(loss);
  for (int i = 0; i < m->n_params; i++) {
    char name[HF_NAME_MAX + 8];
    snprintf(name, sizeof name, "grad.%s", m->info[i].name);
    float *want;
    if (read_ref(ref, name, m->info[i].numel, &want))
      return -1;
    double floor = 0;
    if (zero_gradient(m->info[i].name)) {
      /* hf_params lists NAME.weight right before NAME.bias */
      float *wgrad;
      snprintf(name, sizeof name, "grad.%s", m->info[i - 1].name);
      if (read_ref(ref, name, m->info[i - 1].numel, &wgrad)) {
        free(want);
        return -1;
      }
      floor = max_abs(wgrad, m->info[i - 1].numel);
      free(wgrad);
    }
    double e = rel_err(m->grad[i], want, m->info[i].numel, floor);
    free(want);
    if (e > res->grad_max || isnan(e)) {
      res->grad_max = e;
      snprintf(res->worst, sizeof res->worst, "%s", m->info[i].name);
    }
    char grp[16];
    group_of(m->info[i].name, grp, sizeof grp);
    int k = 0;
    while (k < res->n_groups && strcmp(res->groups[k], grp))
      k++;
    if (k == res->n_groups && k < 8)
      snprintf(res->groups[res->n_groups++], sizeof res->groups[0], "%s", grp);
    if (k < 8 && (e > res->group_err[k] || isnan(e)))
      res->group_err[k] = e;
  }
  return 0;
}

static void report(const char *kind, const char *variant, int extra, bool crisp,
                   const Result *r) {
  printf("%s/%s%s%s: logits %.2e  loss %.2e  grads", kind, variant, crisp ? " [crisp]" : "",
         extra ? " (padded +5)" : "", r->logits, r->loss);
  for (int k = 0; k < r->n_groups; k++)
    printf("  %s %.2e", r->groups[k], r->group_err[k]);
  printf("  (worst %s)\n", r->worst);
}

static bool ok(double e) { return e <= TOL; }

static void check_model(Backend *be, const char *root, const char *kind) {
  char dir[600], path[700], err[512];
  snprintf(dir, sizeof dir, "%s/%s", root, kind);
  ModelConfig cfg;
  Inputs in;
  int rc_cfg = hf_config_load(dir, &cfg, err, sizeof err);
  CHECK(rc_cfg == 0, "%s", err);
  int rc_in = load_inputs(dir, &in);
  CHECK(rc_in == 0, "%s: inputs", dir);
  if (rc_cfg || rc_in)
    return;
  ModelOptions opt = {.max_batch = in.B, .max_len = in.N + 5};
  Model *m = model_create(be, &cfg, &opt, err, sizeof err);
  CHECK(m != NULL, "%s", err);
  if (!m)
    return;
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  int n_init = -1;
  CHECK(model_load(m, path, 1, &n_init, err, sizeof err) == 0, "%s", err);
  CHECK(n_init == 0, "%s: %d parameters were initialised instead of loaded", path, n_init);
  /* the crisp kernels for every mode, JIT-compiled for the host (keep_min 1) */
  RtModule *mods[4] = {NULL};
  for (int k = 0; k < 4; k++) {
    Spec s;
    spec_defaults(&s);
    snprintf(s.name, sizeof s.name, "parity%d", k);
    s.head_dim = cfg.hidden / cfg.heads, s.max_seq = opt.max_len, s.select = (SelectKind)k;
    s.keep_min = 1, s.backward = true;
    TileConfig tile = tile_resolve(&s, TUNE_CPU);
    int rc = rt_compile_load(be, &s, &tile, NULL, &mods[k], err, sizeof err);
    CHECK(rc == 0, "compiling the crisp kernels (%s): %s", select_name(s.select), err);
    if (rc == 0)
      CHECK(model_add_crisp(m, mods[k]) == 0, "%s", m->err);
  }
  int variants = 0;
  for (size_t v = 0; v < sizeof VARIANTS / sizeof *VARIANTS; v++) {
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, VARIANTS[v]);
    if (!exists(path))
      continue;
    variants++;
    SafeTensors *ref = st_open(path, err, sizeof err);
    CHECK(ref != NULL, "%s", err);
    if (!ref)
      continue;
    const char *sel = st_metadata(ref, "select"), *sp = st_metadata(ref, "sparsity"),
               *km = st_metadata(ref, "keep_min");
    SelectKind kinds[] = {SEL_NONE, SEL_ROW_TOPK, SEL_HEAD_QUANTILE, SEL_LAYER_QUANTILE};
    int which = -1;
    for (int k = 0; sel && k < 4; k++)
      if (!strcmp(sel, select_name(kinds[k])))
        which = k;
    CHECK(which >= 0 && sp && km, "%s: metadata select/sparsity/keep_min missing", path);
    if (which >= 0 && sp && km) {
      m->attn.select = kinds[which];
      m->attn.keep_min = atoi(km);
      for (int l = 0; l < cfg.layers; l++)
        m->attn.sparsity[l] = (float)atof(sp);
      /* the C reference attention (padded exactly and by 5 more), then the crisp kernels */
      for (int pass = 0; pass < 3; pass++) {
        int extra = pass == 1 ? 5 : 0;
        bool crisp = pass == 2;
        if (crisp && !attention_has_crisp(&m->attn_engine, kinds[which], false))
          continue;
        m->attn.impl = crisp ? ATTN_IMPL_CRISP : ATTN_IMPL_REF;
        Result r;
        int rc = run_variant(m, &in, extra, ref, &r);
        m->attn.impl = ATTN_IMPL_REF;
        CHECK(rc == 0, "%s: run failed", path);
        if (rc)
          break;
        report(kind, VARIANTS[v], extra, crisp, &r);
        CHECK(ok(r.logits), "%s/%s +%d%s: logits error %.3e > %g", kind, VARIANTS[v], extra,
              crisp ? " crisp" : "", r.logits, TOL);
        CHECK(ok(r.loss), "%s/%s +%d%s: loss error %.3e > %g", kind, VARIANTS[v], extra,
              crisp ? " crisp" : "", r.loss, TOL);
        CHECK(ok(r.grad_max), "%s/%s +%d%s: gradient of %s error %.3e > %g", kind, VARIANTS[v],
              extra, crisp ? " crisp" : "", r.worst, r.grad_max, TOL);
      }
      if (which > 0) {
        /* the fixture discriminates: dense attention misses it by far more than TOL */
        m->attn.select = SEL_NONE;
        Result r;
        if (run_variant(m, &in, 0, ref, &r) == 0)
          CHECK(r.logits > 100 * TOL && r.grad_max > 100 * TOL,
                "%s/%s: dense attention matches the sparse fixture (logits %.2e, grads %.2e)",
                kind, VARIANTS[v], r.logits, r.grad_max);
      }
    }
    st_close(ref);
  }
  snprintf(path, sizeof path, "%s/dense.safetensors", dir);
  CHECK(exists(path), "%s: the dense fixture is missing", path);
  CHECK(variants >= 2, "%s: expected dense and at least one sparse variant, found %d", dir,
        variants);
  model_free(m);
  for (int k = 0; k < 4; k++)
    if (mods[k])
      rt_module_unload(be, mods[k]);
}

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : "tests/fixtures/parity";
  char a[600], b[600];
  snprintf(a, sizeof a, "%s/distilbert", root);
  snprintf(b, sizeof b, "%s/bert", root);
  if (!exists(a) && !exists(b)) {
    printf("skip: no parity fixtures in %s (tests/parity/make_model_fixture.py writes them)\n",
           root);
    return 77;
  }
  char err[512];
  BackendOptions bo = {.threads = 1, .quiet = true};
  Backend *be = backend_open("cpu", &bo, err, sizeof err);
  CHECK(be != NULL, "%s", err);
  if (!be)
    return check_summary();
  check_model(be, root, "distilbert");
  check_model(be, root, "bert");
  backend_close(be);
  return check_summary();
}
