/* bench_train.c: the speed of one training step of crisp's model on the CPU, for
 * bench/bench_train.sh (which measures PyTorch + transformers in the same run and
 * prints the ratio).
 *
 *     bench_train --shape distilbert|minilm [--threads N] [--batch 16] [--len 64]
 *                 [--steps 5] [--warmup 3]
 *                 [--select none|row_topk|head_quantile|layer_quantile]
 *                 [--sparsity 0.8] [--impl crisp|ref]
 *
 * A step is what the trainer does per optimizer step with no accumulation: forward
 * (training mode, dropout at the config's rates), backward, the gradient norm and
 * clip, AdamW over every parameter, zeroing the gradients. Random weights
 * (transformers' init) and random token ids, every row full length. Prints one line:
 *     crisp SHAPE select S: times_s t1,t2,... median_s X tokens_per_s Y
 *                           cpu_s c1,c2,... median_cpu_s Z (steps N, ...)
 * (cpu_s: CPU seconds of all threads per step, a measure of work that other users
 * of a shared machine disturb much less than the wall time)
 * after `warmup` untimed steps (PyTorch needs a few to reach its steady speed; both
 * sides get the same number). Every value is range-checked (--help lists the ranges);
 * a bad one or an unknown flag exits 2 before the model is built (bench_args.h). */
#include "train.h"

#include "../runtime/fsutil.h"
#include "bench_args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* CPU seconds of every thread of the process so far: on a shared machine the wall
 * time of a step depends on the other users, its CPU time much less so. */
static double cpu_now(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
         (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

static double median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static const char USAGE[] =
    "usage: bench_train --shape distilbert|minilm [--threads N] [--batch B] [--len N]\n"
    "                   [--steps K] [--warmup W] [--select S] [--sparsity s] [--impl I]\n"
    "  --shape S      the model shape (required)\n"
    "  --threads N    0..1024 (default 0: one per online core)\n"
    "  --batch B      1..4096 (default 16); --len N: 2..512 tokens (default 64)\n"
    "  --steps K      timed steps, 1..10000 (default 5); --warmup W: untimed, 0..10000 (3)\n"
    "  --select S     none | row_topk | head_quantile | layer_quantile (default none)\n"
    "  --sparsity s   every layer's s in [0, 0.999] (default 0.8; not with none)\n"
    "  --impl I       crisp | ref (default crisp)\n";

int main(int argc, char **argv) {
  static const char *const shapes[] = {"distilbert", "minilm", NULL};
  static const char *const selects[] = {"none", "row_topk", "head_quantile", "layer_quantile",
                                        NULL};
  static const char *const impls[] = {"crisp", "ref", NULL};
  int shape_k = -1, sel = 0, impl_k = 0;
  int threads = 0, B = 16, N = 64, steps = 5, warmup = 3;
  double sparsity = 0.8;
  BenchArgs args = bench_args(argc, argv, "bench_train", USAGE);
  while (bench_next(&args))
    if (!bench_choice(&args, "--shape", shapes, &shape_k) &&
        !bench_int(&args, "--threads", 0, 1024, &threads) &&
        !bench_int(&args, "--batch", 1, 4096, &B) && !bench_int(&args, "--len", 2, 512, &N) &&
        !bench_int(&args, "--steps", 1, 10000, &steps) &&
        !bench_int(&args, "--warmup", 0, 10000, &warmup) &&
        !bench_choice(&args, "--select", selects, &sel) &&
        !bench_num(&args, "--sparsity", 0, 0.999, &sparsity) &&
        !bench_choice(&args, "--impl", impls, &impl_k))
      bench_unknown(&args);
  if (shape_k < 0)
    bench_fail(&args, "--shape", "required (distilbert or minilm)");
  const char *shape = shapes[shape_k], *select = selects[sel], *impl = impls[impl_k];
  ModelConfig mc;
  if (shape_k == 0) {
    hf_config_default(&mc, MODEL_DISTILBERT);   /* distilbert-base-uncased */
  } else {
    hf_config_default(&mc, MODEL_BERT);         /* all-MiniLM-L6-v2 */
    mc.hidden = 384, mc.layers = 6, mc.heads = 12, mc.intermediate = 1536;
  }
  char err[2048];
  if (threads > 0) {
    char t[16];
    snprintf(t, sizeof t, "%d", threads);
    setenv("OPENBLAS_NUM_THREADS", t, 1);
  }
  Backend *be = backend_open("cpu", &(BackendOptions){.threads = threads}, err, sizeof err);
  if (!be) {
    fprintf(stderr, "bench_train: %s\n", err);
    return 1;
  }
  Model *m = model_create(be, &mc, &(ModelOptions){.max_batch = B, .max_len = N}, err, sizeof err);
  if (!m) {
    fprintf(stderr, "bench_train: %s\n", err);
    return 1;
  }
  model_init_params(m, 1);
  m->attn.select = (SelectKind)sel;
  m->attn.keep_min = 1;
  for (int l = 0; l < mc.layers; l++)
    m->attn.sparsity[l] = sel == 0 ? 0.0f : (float)sparsity;
  RtModule *mod = NULL;
  if (!strcmp(impl, "crisp")) {
    if (train_attach_crisp(m, (SelectKind)sel, 1, &mod, err, sizeof err)) {
      fprintf(stderr, "bench_train: %s\n", err);
      return 1;
    }
    m->attn.impl = ATTN_IMPL_CRISP;
  }
  AdamW o;
  if (adamw_init(&o, m->n_param_floats, &(AdamWConfig){0.9, 0.999, 1e-8, 0.01}))
    return 1;
  int32_t *ids = malloc((size_t)B * N * sizeof *ids), *len = malloc((size_t)B * sizeof *len),
          *lab = malloc((size_t)B * sizeof *lab);
  uint64_t s = 7;
  for (int i = 0; i < B * N; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    ids[i] = 1000 + (int32_t)((s >> 33) % 20000);
  }
  for (int b = 0; b < B; b++)
    len[b] = N, lab[b] = b & 1;
  double *t = malloc((size_t)steps * sizeof *t), *cpu = malloc((size_t)steps * sizeof *cpu);
  for (int k = -warmup; k < steps; k++) {
    double t0 = rt_now(), c0 = cpu_now();
    ModelRun run = {.train = true, .seed = 1, .step = (uint32_t)(k + warmup)};
    if (model_forward(m, ids, len, B, N, lab, &run) || model_backward(m)) {
      fprintf(stderr, "bench_train: %s\n", m->err);
      return 1;
    }
    RtPool *pool = rt_host_pool(be);   /* as the trainer's optimizer step */
    double norm = grad_norm_par(pool, m->grads_mem, m->n_param_floats);
    float gscale = (float)clip_coef(norm, 1.0);
    adamw_begin(&o);
    for (int i = 0; i < m->n_params; i++)   /* zeroes the gradients too */
      adamw_update_par(pool, &o, m->param[i], m->grad[i], (size_t)(m->param[i] - m->params_mem),
                       m->info[i].numel, m->info[i].rank == 2, 2e-5, gscale, true);
    if (k >= 0)
      t[k] = rt_now() - t0, cpu[k] = cpu_now() - c0;
  }
  printf("crisp %s select %s: times_s", shape, select);
  for (int k = 0; k < steps; k++)
    printf("%s%.4f", k ? "," : " ", t[k]);
  double med = median(t, steps);
  printf(" median_s %.4f tokens_per_s %.1f cpu_s", med, (double)B * N / med);
  for (int k = 0; k < steps; k++)
    printf("%s%.3f", k ? "," : " ", cpu[k]);
  printf(" median_cpu_s %.4f (steps %d, threads %d, %s)\n", median(cpu, steps), steps,
         be->threads, be->gemm_lib);
  free(t);
  free(cpu);
  free(ids);
  free(len);
  free(lab);
  adamw_free(&o);
  model_free(m);
  if (mod)
    rt_module_unload(be, mod);
  backend_close(be);
  return 0;
}
