/* attn_train.h: one training-time attention call on a backend, as the model makes
 * it — the select kernels (quantile modes), the forward, then the two backward
 * kernels — over a fused QKV projection [B, N, 3, H, D] and its gradient, with
 * every argument bound by name from the manifest. Checked against the
 * double-precision reference (templates/reference_bwd.c) and timed with events.
 * It is how the GPU check covers the select and backward kernels and attention
 * dropout on a real device; the CPU backend runs the same code in ctest. Needs no
 * LLVM.
 *
 * Inputs: q, k multiples of 1/4 in [-1, 1] (their f32 scores are exact, so the
 * kernels' kept sets must equal the reference's exactly), v and dout uniform in
 * [-1, 1]; lengths N or random in 1..N with one full-length example. Outputs are
 * poisoned (NaN, -1) before a checked run, so unwritten elements are caught. */
#ifndef CRISP_RT_ATTN_TRAIN_H
#define CRISP_RT_ATTN_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "../templates/reference.h"
#include "backend.h"

typedef struct AttnTrainShape {
  int B, H, N;
  double sparsity;
  float dropout;            /* probability; the mask's counters are fixed non-zero */
  bool random_lengths;
} AttnTrainShape;

typedef struct AttnTrain {
  Backend *b;
  Spec spec;
  AttnTrainShape sh;
  AttnLayout l;             /* qkv: fused strides; o, dout: [B, N, H, D] */
  int64_t n_qkv, n_o, n_row; /* elements of qkv (all three), of o, of a [B, H, N] array */
  float *qkv, *dout;        /* host inputs */
  int32_t *lengths;
  DevPtr d_qkv, d_o, d_dout, d_len, d_kept, d_lse, d_tau, d_ent, d_delta, d_dqkv;
  DevPtr d_hist, d_prefix, d_rank, d_tg;   /* select scratch (quantile modes) */
  DevPtr d_cand;            /* the tile schedule's select candidates (attention_select.h) */
  int32_t cand_cap;         /* their keys per (b, h); 0 for kernels without them */
  const RtKernel *fwd, *bwd[2], *sel[3];   /* bwd: NAME_attn_bwd, or dq then dkdv */
  int groups;               /* tau_group entries (0 without select kernels) */
} AttnTrain;

/* Errors of one checked call: max |x - ref| / max |ref| per tensor (o: / max |v|;
 * lse: / max(1, |ref|)), kept counts and tau_group exact. */
typedef struct AttnTrainErr {
  double o, lse, dq, dk, dv, delta;
  bool kept_ok, tau_group_ok, unwritten;
  char first_bad[200];
} AttnTrainErr;

/* The module must hold NAME_attn_fwd, NAME_attn_bwd (or NAME_attn_bwd_dq and _dkdv) and, for the
 * quantile modes, the select kernels. 0, or -1 with err. */
int attn_train_init(AttnTrain *t, Backend *b, RtModule *m, const Spec *s,
                    const AttnTrainShape *sh, char *err, size_t cap);
void attn_train_free(AttnTrain *t);
/* New random inputs (see the top), uploaded. 0, or -1 (backend error). */
int attn_train_fill(AttnTrain *t, uint64_t *rng);
/* Launches select + forward (and the backward kernels when backward), asynchronously. */
int attn_train_run(AttnTrain *t, bool forward, bool backward);
/* Poisons, runs everything, syncs, compares with the reference. -1 only when the
 * backend fails (err); a wrong result is reported in *e (attn_train_ok). */
int attn_train_check(AttnTrain *t, AttnTrainErr *e, char *err, size_t cap);
bool attn_train_ok(const AttnTrainErr *e);
enum { ATTN_TRAIN_TOL_E6 = 10 };   /* tolerance ATTN_TRAIN_TOL_E6 * 1e-6 (DESIGN §8) */

#endif
