/* model_params.h: where each parameter lies in the model's parameter block (and the
 * gradient block, laid out alike), for model_create.
 *
 * The order is hf_params', except that each encoder block's q, k and v weights lie
 * together, then their biases: one [3C, C] matrix and one [3C] bias, so the q/k/v
 * projection and its backward are one GEMM each (N = 3C forward, K = 3C for the
 * input gradient). Files never see this order: Hugging Face folders are read and
 * written through m->param[i] by name; checkpoints store the block as it lies
 * (format 2, model/checkpoint.c). */
#ifndef CRISP_MODEL_PARAMS_H
#define CRISP_MODEL_PARAMS_H

#include "model.h"

/* off[i] = the offset in floats of hf_params' parameter i (m->info, m->n_params set).
 * 0, or -1 with m->err. */
int model_place_params(Model *m, size_t *off);
/* Fills the role pointers of one block (params or grads) from block[i] by name.
 * 0, or -1 with m->err. */
int model_bind_params(Model *m, float **block, ModelParams *w);
/* Checks, once m->w is bound, that every block's q, k, v are adjacent as the fused
 * projection needs. 0, or -1 with m->err. */
int model_check_qkv(Model *m);

#endif
