/* optim.h: AdamW (torch.optim.AdamW's update, decoupled weight decay) and the linear
 * learning-rate schedule of transformers' get_linear_schedule_with_warmup.
 *
 *   AdamW o; adamw_init(&o, n_floats, &cfg)        moments m, v zeroed, t = 0
 *   adamw_step(&o, params, grads, decay, n, lr)     one step over a flat block
 *   lr_linear(k, total, warmup, base)               the rate of optimizer step k
 *
 * One step, for every element (t counts steps from 1; sums in float as PyTorch's
 * single-tensor path, bias corrections in double):
 *     p -= lr * wd * p                         (only where decay[i])
 *     m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2
 *     p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * Which tensors decay is the caller's choice (the trainer follows transformers'
 * Trainer: no decay on biases and LayerNorm weights). Deterministic: elementwise. */
#ifndef CRISP_MODEL_OPTIM_H
#define CRISP_MODEL_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/pool.h"

typedef struct AdamWConfig {
  double beta1, beta2, eps, weight_decay;
} AdamWConfig;

typedef struct AdamW {
  AdamWConfig cfg;
  size_t n;          /* floats in the moments (the parameter block's size) */
  float *m, *v;      /* first and second moments, [n] */
  int64_t t;         /* steps taken */
} AdamW;

/* 0, or -1 (out of memory). */
int adamw_init(AdamW *o, size_t n, const AdamWConfig *cfg);
void adamw_free(AdamW *o);

/* Updates params[off .. off + n) with gscale * grads (same layout; gscale folds in
 * the accumulation mean and gradient clipping), moments at the same offset, decayed
 * when decay is true; t must already count this step (call adamw_begin first). Split
 * so a block of tensors can decay per tensor. */
void adamw_begin(AdamW *o);
void adamw_update(AdamW *o, float *params, const float *grads, size_t off, size_t n, bool decay,
                  double lr, float gscale);

/* sum g^2 / its square root over n floats, in double: chunks of 2^16 floats (more
 * past 2^28), each summed in 16 fixed lanes, the chunks' sums added in order. */
double grad_sumsq(const float *g, size_t n);
double grad_norm(const float *g, size_t n);

/* Threaded versions over a pool (NULL: the caller), bitwise equal to the plain ones
 * with any thread count (elementwise updates; the norm's chunks are a function of n
 * alone and their sums are added in order). adamw_update_par also zeroes each chunk
 * of grads after using it when zero_grads (the trainer's model_zero_grad, fused). */
void adamw_update_par(RtPool *pool, AdamW *o, float *params, float *grads, size_t off, size_t n,
                      bool decay, double lr, float gscale, bool zero_grads);
double grad_sumsq_par(RtPool *pool, const float *g, size_t n);
double grad_norm_par(RtPool *pool, const float *g, size_t n);
/* torch's clip factor: min(1, max_norm / (norm + 1e-6)); 1 when max_norm <= 0. */
double clip_coef(double norm, double max_norm);
/* torch.nn.utils.clip_grad_norm_: scales g by max_norm / (norm + 1e-6) when that is
 * below 1 (max_norm <= 0: never). Returns the norm before clipping. */
double clip_grad_norm(float *g, size_t n, double max_norm);

/* The learning rate of optimizer step k (0-based) of total, after `warmup` warm-up
 * steps: base * k / warmup during warm-up, then base * (total - k) / (total - warmup),
 * never below 0 (transformers' linear schedule, stepped after each update). */
double lr_linear(int64_t k, int64_t total, int64_t warmup, double base);

#endif
