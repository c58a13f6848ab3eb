/* crisp-devcheck train: the kernels of one training-time attention call (select,
 * forward, backward) on a device, against the double reference, then timed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_task.h"
#include "attn_train.h"
#include "devcheck.h"
#include "fsutil.h"
#include "tune.h"

typedef struct {
  const char *what;
  AttnTrainShape sh;        /* sparsity < 0: the spec's */
} TrainCase;

static int check_case(Backend *b, Variant *v, const TrainCase *c, uint64_t *rng,
                      double *worst, char *first, size_t cap) {
  const Spec *s = &v->man.spec;
  AttnTrainShape sh = c->sh;
  if (sh.N > s->max_seq)
    sh.N = s->max_seq;
  if (sh.sparsity < 0)
    sh.sparsity = s->sparsity;
  AttnTrain t;
  AttnTrainErr e;
  char err[4096];
  if (attn_train_init(&t, b, v->mod, s, &sh, err, sizeof err) || attn_train_fill(&t, rng) ||
      attn_train_check(&t, &e, err, sizeof err)) {
    snprintf(first, cap, "%s: device error: %.3900s", c->what, err[0] ? err : backend_error(b));
    attn_train_free(&t);
    return -1;
  }
  attn_train_free(&t);
  double w = fmax(fmax(fmax(e.o, e.lse), fmax(e.dq, e.dk)), fmax(e.dv, e.delta));
  *worst = fmax(*worst, w);
  if (attn_train_ok(&e))
    return 0;
  snprintf(first, cap, "%s (B=%d H=%d N=%d s=%g p=%g): %s [o %.1e lse %.1e dq %.1e dk %.1e "
           "dv %.1e delta %.1e]", c->what, sh.B, sh.H, sh.N, sh.sparsity, sh.dropout,
           e.first_bad, e.o, e.lse, e.dq, e.dk, e.dv, e.delta);
  return 1;
}

static int time_case(Backend *b, Variant *v, int n, double sparsity, const Opts *o, FILE *json) {
  const Spec *s = &v->man.spec;
  AttnTrainShape sh = {16, 12, n, sparsity, s->dropout, false};
  AttnTrain t;
  RtEvent *e[3] = {0};
  char err[4096];
  uint64_t rng = o->seed + (uint64_t)n;
  int reps = o->reps > 0 ? (o->reps > 64 ? 64 : o->reps) : 20, rc = 0;
  double fwd[64], bwd[64];
  if (attn_train_init(&t, b, v->mod, s, &sh, err, sizeof err)) {
    fprintf(stderr, "crisp-devcheck: %s\n", err);
    return -1;
  }
  rc = attn_train_fill(&t, &rng) || rt_event_create(b, &e[0]) || rt_event_create(b, &e[1]) ||
       rt_event_create(b, &e[2]);
  for (int w = 0; w < 3 && !rc; w++)
    rc = attn_train_run(&t, true, true);
  rc = rc || rt_sync(b);
  for (int r = 0; r < reps && !rc; r++) {
    float f0, f1;
    rc = rt_event_record(b, e[0]) || attn_train_run(&t, true, false) ||
         rt_event_record(b, e[1]) || attn_train_run(&t, false, true) ||
         rt_event_record(b, e[2]) || rt_event_elapsed(b, e[0], e[1], &f0) ||
         rt_event_elapsed(b, e[1], e[2], &f1);
    fwd[r] = f0, bwd[r] = f1;
  }
  if (rc) {
    fprintf(stderr, "crisp-devcheck: %s\n", backend_error(b));
  } else {
    double mf = tune_median(fwd, reps), mb = tune_median(bwd, reps);
    double flops = 12.0 * 16 * 12 * (double)n * n * s->head_dim;   /* fwd + bwd, dense count */
    printf("train %-10s n=%-4d s=%.2f p=%.2f rows=%-2d warps=%-2d  fwd %.4f ms  bwd %.4f ms  "
           "total %.4f ms  %.1f GFLOP/s (12 n^2 d per head)\n",
           s->name, n, sparsity, s->dropout, v->man.tile_rows, v->man.tile_warps, mf, mb, mf + mb,
           flops / (mf + mb) * 1e-6);
    if (json)
      fprintf(json, "{\"mode\": \"fwdbwd\", \"spec\": \"%s\", \"select\": \"%s\", \"causal\": %s, "
              "\"B\": 16, \"H\": 12, \"N\": %d, \"D\": %d, \"sparsity\": %.17g, \"keep_min\": %d, "
              "\"dropout\": %g, \"rows\": %d, \"warps\": %d, \"fwd_ms\": %.6f, \"bwd_ms\": %.6f, "
              "\"ms\": %.6f, \"reps\": %d, \"device\": \"%s\"}\n",
              s->name, select_name(s->select), s->causal ? "true" : "false", n, s->head_dim,
              sparsity, s->keep_min, s->dropout, v->man.tile_rows, v->man.tile_warps, mf, mb,
              mf + mb, reps, b->device_key);
  }
  for (int i = 0; i < 3; i++)
    rt_event_destroy(b, e[i]);
  attn_train_free(&t);
  return rc ? -1 : 0;
}

int train_check_file(Backend *b, const char *manifest, const Opts *o, FILE *json,
                     int *failures) {
  Variant v = {0};
  snprintf(v.path, sizeof v.path, "%s", manifest);
  if (load_variant(b, &v, v.err, sizeof v.err)) {
    printf("FAIL %s: %s\n", manifest, v.err);
    (*failures)++;
    rt_module_unload(b, v.mod);
    return 0;
  }
  const TrainCase cases[] = {
      {"n=1", {2, 3, 1, -1, 0.0f, false}},
      {"odd n, padded, dropout", {3, 2, 37, 0.6, 0.1f, true}},
      {"dense, padded, dropout", {2, 2, 64, 0.0, 0.1f, true}},
      {"n=128, s=0.8, dropout", {2, 2, 128, 0.8, 0.1f, true}},
      {"s=0.99", {2, 2, 64, 0.99, 0.0f, true}},
      {"n=max_seq, dropout", {1, 2, 512, 0.5, 0.1f, false}},
  };
  enum { NC = sizeof cases / sizeof cases[0] };
  uint64_t rng = o->seed ^ rt_fnv1a64(manifest, strlen(manifest), RT_FNV_OFFSET);
  double worst = 0;
  int bad = 0, device_failed = 0;
  char first[4400] = "", msg[4400];
  for (int i = 0; i < NC && !device_failed; i++) {
    int r = check_case(b, &v, &cases[i], &rng, &worst, msg, sizeof msg);
    device_failed = r < 0;
    if (r && !bad)
      snprintf(first, sizeof first, "%s", msg);
    bad += r != 0;
  }
  const Spec *s = &v.man.spec;
  printf("%s %-10s %-14s causal=%d rows=%-2d warps=%-2d select+fwd+bwd", bad ? "FAIL" : "PASS",
         s->name, select_name(s->select), s->causal, v.man.tile_rows, v.man.tile_warps);
  if (bad)
    printf(": %d of %d shapes wrong; first: %s\n", bad, NC, first);
  else
    printf(": %d shapes, max err %.2e\n", NC, worst);
  *failures += bad != 0;
  int ns[TUNE_MAX_BUCKETS] = {128, 512}, nn = o->nn ? o->nn : 2;
  if (o->nn)
    memcpy(ns, o->n, sizeof ns);
  double sps[2] = {0.0, s->sparsity};
  for (int i = 0; i < nn && !bad; i++)
    for (int j = 0; j < (s->select == SEL_NONE ? 1 : 2); j++)
      if (time_case(b, &v, ns[i] < s->max_seq ? ns[i] : s->max_seq, sps[j], o, json)) {
        device_failed = 1;
        break;
      }
  rt_module_unload(b, v.mod);
  return device_failed ? -1 : 0;
}
