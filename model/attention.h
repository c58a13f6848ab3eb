/* attention.h: crisp attention inside the model. One entry point per direction,
 * attention_forward / attention_backward, with a pluggable implementation chosen
 * per call (AttnCall.impl):
 *
 *   ATTN_IMPL_REF    the C float reference (model/attn_ref.c) on the host: every
 *                    selection mode, keep_min, dropout; single-threaded. Always
 *                    available.
 *   ATTN_IMPL_CRISP  the crisp kernels through runtime/: a module compiled from a
 *                    spec (rt_compile_for / rt_compile_load, or a precompiled PTX +
 *                    manifest) and registered with attention_engine_add_crisp, one
 *                    per selection mode. Forward: the select plan (quantile modes,
 *                    templates/attention_select.h) then NAME_attn_fwd
 *                    (templates/templates.h). Backward: NAME_attn_bwd, or
 *                    NAME_attn_bwd_dq then NAME_attn_bwd_dkdv
 *                    (templates/attention_bwd.h), whichever the module has; a
 *                    forward-only module gets the reference backward on the
 *                    kernel's saved lse and tau ("CRISP HOOK" in attention.c). On the host target the kernel's scores are
 *                    the reference's bit for bit, so the kept sets agree (tested).
 *
 * Layout (templates.h): the fused projection qkv is [B, N, 3, H, D] (row stride
 * 3*H*D; q at +0, k at +H*D, v at +2*H*D), the output o and its gradient are
 * [B, N, H, D]; per-row arrays are [B, H, N] for the call's B and N. The backward
 * writes every element of dqkv (padding 0), so it needs no memset. Device pointers
 * are host pointers on the "cpu" backend (the only one the model runs on today). */
#ifndef CRISP_MODEL_ATTENTION_H
#define CRISP_MODEL_ATTENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/backend.h"
#include "../templates/templates.h"

typedef enum AttnImpl { ATTN_IMPL_REF, ATTN_IMPL_CRISP } AttnImpl;

typedef struct AttnCrisp AttnCrisp;

typedef struct AttnEngine {
  Backend *be;
  int max_batch, max_len, heads, head_dim;
  void *ws;              /* the reference's workspace (host) */
  size_t ws_bytes;
  AttnCrisp *crisp;      /* registered kernels per selection mode (NULL: none) */
} AttnEngine;

/* One layer's call: the implementation, selection and dropout settings. */
typedef struct AttnCall {
  AttnImpl impl;
  SelectKind select;
  double sparsity;       /* this layer's s_l, [0, 1) */
  int keep_min;          /* >= 1 (the crisp kernels compile it in: it must match) */
  float dropout;         /* attention dropout probability (0 at evaluation) */
  uint32_t seed, step, layer;   /* dropout mask counters (dropout.h) */
  bool stats;            /* also write the per-row entropy of the kept distribution */
  bool dense_stats;      /* also write the per-row entropy of the dense softmax */
} AttnCall;

/* What the forward saves per row for the backward and the statistics ([B, H, N]). */
typedef struct AttnRows {
  float *lse, *tau;
  int32_t *kept;         /* keys kept per row */
  float *entropy;        /* entropy of the kept distribution (written when stats) */
  float *dense_entropy;  /* of the softmax over every valid key (when dense_stats) */
  float *delta;          /* backward scratch: dO . O per row */
} AttnRows;

/* Prepares an engine (the reference) for up to max_batch x max_len with H heads of
 * size D. 0, or -1 with the reason in err. */
int attention_engine_init(AttnEngine *e, Backend *be, int max_batch, int max_len, int heads,
                          int head_dim, char *err, size_t cap);
void attention_engine_free(AttnEngine *e);

/* Registers a loaded crisp module (borrowed: unload it after the engine is freed)
 * for its spec's selection mode, replacing an earlier one. The spec must have this
 * engine's head_dim, max_seq >= max_len and causal = false; the module must hold
 * NAME_attn_fwd (and the select kernels for the quantile modes). 0, or -1 with err. */
int attention_engine_add_crisp(AttnEngine *e, RtModule *m, char *err, size_t cap);
/* Whether crisp kernels are registered for the mode (forward / backward). */
bool attention_has_crisp(const AttnEngine *e, SelectKind s, bool backward);

const char *attention_impl_name(AttnImpl impl);   /* "ref", "crisp" */

int attention_forward(AttnEngine *e, const AttnCall *c, const float *qkv, float *o,
                      const int32_t *lengths, int B, int N, const AttnRows *rows, char *err,
                      size_t cap);
/* dqkv (fused layout) from dout, the forward's qkv, o and saved rows. */
int attention_backward(AttnEngine *e, const AttnCall *c, const float *qkv, const float *o,
                       const float *dout, float *dqkv, const int32_t *lengths, int B, int N,
                       const AttnRows *rows, char *err, size_t cap);

#endif
