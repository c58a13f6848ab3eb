/* Crisp attention inside the model, with a pluggable implementation (attention.h). */
#include "attention.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_ref.h"

#include "../templates/attention_bwd.h"
#include "../templates/attention_select.h"

/* Kernels registered per selection mode, and the select kernels' scratch. */
typedef struct CrispMode {
  RtModule *m;                          /* borrowed */
  RtKernel *fwd, *sel[SELECT_NKERNELS]; /* sel: quantile modes only */
  RtKernel *bwd[2];                     /* NAME_attn_bwd, or dq then dkdv; NULL: none */
  int keep_min;
} CrispMode;

struct AttnCrisp {
  CrispMode mode[SEL_LAYER_QUANTILE + 1];
  DevPtr hist, prefix, rank, tau_group; /* for G = max_batch * heads groups */
  DevPtr cand;                          /* the tile schedule's candidates (0: none yet) */
  int32_t cand_cap;                     /* its keys per (b, h) */
};

const char *attention_impl_name(AttnImpl impl) {
  return impl == ATTN_IMPL_REF ? "ref" : impl == ATTN_IMPL_CRISP ? "crisp" : "?";
}

int attention_engine_init(AttnEngine *e, Backend *be, int max_batch, int max_len, int heads,
                          int head_dim, char *err, size_t cap) {
  memset(e, 0, sizeof *e);
  e->be = be;
  e->max_batch = max_batch;
  e->max_len = max_len;
  e->heads = heads;
  e->head_dim = head_dim;
  e->ws_bytes = attn_ref_workspace_bytes(max_len, head_dim);
  e->ws = aligned_alloc(64, (e->ws_bytes + 63) & ~(size_t)63);
  if (!e->ws) {
    snprintf(err, cap, "attention: out of memory (%zu bytes of workspace)", e->ws_bytes);
    return -1;
  }
  return 0;
}

void attention_engine_free(AttnEngine *e) {
  if (!e)
    return;
  free(e->ws);
  if (e->crisp) {
    DevPtr bufs[] = {e->crisp->hist, e->crisp->prefix, e->crisp->rank, e->crisp->tau_group,
                     e->crisp->cand};
    for (int i = 0; i < 5; i++)
      if (bufs[i])
        rt_free(e->be, bufs[i]);
    free(e->crisp);
  }
  memset(e, 0, sizeof *e);
}

static RtKernel *find_kernel(AttnEngine *e, RtModule *m, const char *spec, const char *suffix,
                             bool required, char *err, size_t cap) {
  char name[160];
  snprintf(name, sizeof name, "%s_%s", spec, suffix);
  if (!rt_manifest_kernel(&m->manifest, name)) {
    if (required)
      snprintf(err, cap, "attention: module of spec \"%s\" has no kernel %s", spec, name);
    return NULL;
  }
  RtKernel *k = rt_kernel(e->be, m, name);
  if (!k)
    snprintf(err, cap, "attention: %s: %s", name, backend_error(e->be));
  return k;
}

/* CRISP HOOK: the tile schedule's select kernels keep candidate keys between rounds
 * (attention_select.h); sized once, for the largest batch and length. */
static int alloc_cand(AttnEngine *e, const RtKernel *hist, char *err, size_t cap) {
  if (e->crisp->cand || rt_param_index(hist->info, "cand") < 0)
    return 0;
  int ccap = attention_select_cand_cap(e->max_len);
  size_t n = (size_t)attention_select_cand_len(e->max_batch, e->heads, ccap);
  if (rt_alloc(e->be, n * sizeof(int32_t), &e->crisp->cand)) {
    snprintf(err, cap, "attention: %s", backend_error(e->be));
    return -1;
  }
  e->crisp->cand_cap = ccap;
  return 0;
}

int attention_engine_add_crisp(AttnEngine *e, RtModule *m, char *err, size_t cap) {
  const Spec *s = &m->manifest.spec;
  if (s->head_dim != e->head_dim || s->max_seq < e->max_len || s->causal ||
      s->select < SEL_NONE || s->select > SEL_LAYER_QUANTILE) {
    snprintf(err, cap, "attention: spec \"%s\" (head_dim %d, max_seq %d, causal %d) does not fit "
             "the model (head_dim %d, max_len %d, causal 0)", s->name, s->head_dim, s->max_seq,
             (int)s->causal, e->head_dim, e->max_len);
    return -1;
  }
  if (!e->crisp) {
    /* CRISP HOOK: the select kernels' scratch, sized once for the largest batch */
    size_t g = (size_t)e->max_batch * e->heads;
    if (!(e->crisp = calloc(1, sizeof *e->crisp)) ||
        rt_alloc(e->be, g * SELECT_BINS * sizeof(int32_t), &e->crisp->hist) ||
        rt_alloc(e->be, g * sizeof(int32_t), &e->crisp->prefix) ||
        rt_alloc(e->be, g * sizeof(int32_t), &e->crisp->rank) ||
        rt_alloc(e->be, g * sizeof(float), &e->crisp->tau_group)) {
      snprintf(err, cap, "attention: %s", e->crisp ? backend_error(e->be) : "out of memory");
      return -1;
    }
  }
  CrispMode md = {.m = m, .keep_min = s->keep_min};
  if (!(md.fwd = find_kernel(e, m, s->name, "attn_fwd", true, err, cap)))
    return -1;
  if (attention_select_groups(s, 1, 1) > 0)
    for (int k = 0; k < SELECT_NKERNELS; k++)
      if (!(md.sel[k] = find_kernel(e, m, s->name, attention_select_kernel_name(k), true, err,
                                    cap)))
        return -1;
  if (md.sel[SELECT_KERNEL_HIST] && alloc_cand(e, md.sel[SELECT_KERNEL_HIST], err, cap))
    return -1;
  /* the backward is optional (a spec with backward = false): the tile schedule's one
   * kernel, else the warp schedule's two */
  err[0] = 0;
  md.bwd[0] = find_kernel(e, m, s->name, "attn_bwd", false, err, cap);
  if (!md.bwd[0] && !err[0]) {
    RtKernel *dq = find_kernel(e, m, s->name, "attn_bwd_dq", false, err, cap);
    RtKernel *dkdv = find_kernel(e, m, s->name, "attn_bwd_dkdv", false, err, cap);
    if (dq && dkdv)
      md.bwd[0] = dq, md.bwd[1] = dkdv;
  }
  if (err[0])
    return -1;
  e->crisp->mode[s->select] = md;
  return 0;
}

bool attention_has_crisp(const AttnEngine *e, SelectKind s, bool backward) {
  if (!e->crisp || s < SEL_NONE || s > SEL_LAYER_QUANTILE)
    return false;
  const CrispMode *md = &e->crisp->mode[s];
  return backward ? md->bwd[0] != NULL : md->fwd != NULL;
}

/* The strides of the fused layout for a call's N. */
static AttnLayout layout(const AttnEngine *e, int B, int N) {
  int64_t C = (int64_t)e->heads * e->head_dim;
  return (AttnLayout){.B = B, .H = e->heads, .N = N,
                      .qkv_sb = (int64_t)N * 3 * C, .qkv_sn = 3 * C, .qkv_sh = e->head_dim,
                      .o_sb = (int64_t)N * C, .o_sn = C, .o_sh = e->head_dim};
}

static AttnRefArgs ref_args(const AttnCall *c) {
  return (AttnRefArgs){.select = c->select, .sparsity = c->sparsity, .keep_min = c->keep_min,
                       .dropout = c->dropout, .seed = c->seed, .step = c->step,
                       .layer = c->layer};
}

static int check_call(const AttnEngine *e, const AttnCall *c, int B, int N, char *err,
                      size_t cap) {
  if (B < 0 || B > e->max_batch || N < 0 || N > e->max_len) {
    snprintf(err, cap, "attention: batch %d x %d exceeds the planned %d x %d", B, N,
             e->max_batch, e->max_len);
    return -1;
  }
  if (!(c->sparsity >= 0 && c->sparsity < 1) || c->keep_min < 1 ||
      !(c->dropout >= 0 && c->dropout < 1) || c->select < SEL_NONE ||
      c->select > SEL_LAYER_QUANTILE) {
    snprintf(err, cap, "attention: layer %u: select %d, sparsity %g, keep_min %d, dropout %g "
             "out of range", c->layer, (int)c->select, c->sparsity, c->keep_min,
             (double)c->dropout);
    return -1;
  }
  if (c->impl == ATTN_IMPL_CRISP) {
    const CrispMode *md = e->crisp ? &e->crisp->mode[c->select] : NULL;
    if (!md || !md->fwd) {
      snprintf(err, cap, "attention: no crisp kernels registered for select = %s "
               "(attention_engine_add_crisp)", select_name(c->select));
      return -1;
    }
    if (md->keep_min != c->keep_min) {
      snprintf(err, cap, "attention: the crisp kernels for select = %s were compiled with "
               "keep_min %d, the call asks for %d", select_name(c->select), md->keep_min,
               c->keep_min);
      return -1;
    }
  } else if (c->impl != ATTN_IMPL_REF) {
    snprintf(err, cap, "attention: unknown implementation %d", (int)c->impl);
    return -1;
  }
  return 0;
}

/* ---- the crisp kernels: arguments bound by parameter name ------------------------ */

static DevPtr dp(const void *p) { return (DevPtr)(uintptr_t)p; }

/* The contract's arguments (templates.h, attention_bwd.h, attention_select.h), by name. */
static int launch(AttnEngine *e, const RtKernel *k, const RtArg *tab, int n, char *err,
                  size_t cap) {
  char why[512];
  if (rt_launch_named(e->be, k, tab, n, why, sizeof why)) {
    snprintf(err, cap, "attention: %s", why);
    return -1;
  }
  return 0;
}

#define BUF(n, v) {n, true, RT_T_F32, &(v)}
#define I32(n, v) {n, false, RT_T_I32, &(v)}

static int crisp_forward(AttnEngine *e, const AttnCall *c, const float *qkv, float *o,
                         const int32_t *lengths, int B, int N, const AttnRows *rows, char *err,
                         size_t cap) {
  const CrispMode *md = &e->crisp->mode[c->select];
  AttnLayout l = layout(e, B, N);
  int64_t C = (int64_t)e->heads * e->head_dim;
  DevPtr q = dp(qkv), k = dp(qkv + C), v = dp(qkv + 2 * C), po = dp(o), len = dp(lengths),
         kept = dp(rows->kept), lse = dp(rows->lse), tau = dp(rows->tau),
         ent = dp(rows->entropy), dent = dp(rows->dense_entropy), hist = e->crisp->hist,
         prefix = e->crisp->prefix, rank = e->crisp->rank, tg = e->crisp->tau_group,
         cand = e->crisp->cand;
  int32_t iB = B, iH = e->heads, iN = N, sb = (int32_t)l.qkv_sb, sn = (int32_t)l.qkv_sn,
          sh = (int32_t)l.qkv_sh, osb = (int32_t)l.o_sb, osn = (int32_t)l.o_sn,
          osh = (int32_t)l.o_sh, seed = (int32_t)c->seed, step = (int32_t)c->step,
          layer = (int32_t)c->layer, round = 0, cand_cap = e->crisp->cand_cap,
          stats = (c->stats ? ATTN_STATS_ENTROPY : 0) |
                  (c->dense_stats ? ATTN_STATS_DENSE_ENTROPY : 0);
  double sparsity = c->sparsity;
  float dropout = c->dropout;
  RtArg tab[] = {
      BUF("q", q), BUF("k", k), BUF("v", v), BUF("o", po), BUF("lengths", len),
      BUF("kept", kept), BUF("lse", lse), BUF("tau", tau), BUF("entropy", ent),
      BUF("dense_entropy", dent), BUF("tau_group", tg), BUF("hist", hist),
      BUF("prefix", prefix), BUF("rank", rank), I32("B", iB), I32("H", iH), I32("N", iN),
      I32("qkv_sb", sb), I32("qkv_sn", sn), I32("qkv_sh", sh), I32("o_sb", osb),
      I32("o_sn", osn), I32("o_sh", osh), {"sparsity", false, RT_T_F64, &sparsity},
      {"dropout", false, RT_T_F32, &dropout}, I32("seed", seed), I32("step", step),
      I32("layer", layer), I32("stats", stats), I32("round", round), BUF("cand", cand),
      I32("cand_cap", cand_cap)};
  int n = (int)(sizeof tab / sizeof *tab);
  if (md->sel[0]) {
    SelectLaunch plan[SELECT_PLAN_MAX];
    bool tile = rt_param_index(md->sel[SELECT_KERNEL_HIST]->info, "cand") >= 0;
    int np = attention_select_plan(
        attention_select_plan_kind(&md->m->manifest.spec, tile, iB, iH, iN, sparsity), plan);
    for (int i = 0; i < np; i++) {
      round = plan[i].round;
      if (launch(e, md->sel[plan[i].kernel], tab, n, err, cap))
        return -1;
    }
  }
  return launch(e, md->fwd, tab, n, err, cap);
}

static int crisp_backward(AttnEngine *e, const AttnCall *c, const float *qkv, const float *o,
                          const float *dout, float *dqkv, const int32_t *lengths, int B, int N,
                          const AttnRows *rows, char *err, size_t cap) {
  const CrispMode *md = &e->crisp->mode[c->select];
  AttnLayout l = layout(e, B, N);
  int64_t C = (int64_t)e->heads * e->head_dim;
  DevPtr q = dp(qkv), k = dp(qkv + C), v = dp(qkv + 2 * C), po = dp(o), pd = dp(dout),
         lse = dp(rows->lse), tau = dp(rows->tau), len = dp(lengths), delta = dp(rows->delta),
         dq = dp(dqkv), dk = dp(dqkv + C), dv = dp(dqkv + 2 * C);
  int32_t iB = B, iH = e->heads, iN = N, sb = (int32_t)l.qkv_sb, sn = (int32_t)l.qkv_sn,
          sh = (int32_t)l.qkv_sh, osb = (int32_t)l.o_sb, osn = (int32_t)l.o_sn,
          osh = (int32_t)l.o_sh, seed = (int32_t)c->seed, step = (int32_t)c->step,
          layer = (int32_t)c->layer;
  float dropout = c->dropout;
  RtArg tab[] = {
      BUF("q", q), BUF("k", k), BUF("v", v), BUF("o", po), BUF("dout", pd), BUF("lse", lse),
      BUF("tau", tau), BUF("lengths", len), BUF("delta", delta), BUF("dq", dq),
      BUF("dk", dk), BUF("dv", dv), I32("B", iB), I32("H", iH), I32("N", iN),
      I32("qkv_sb", sb), I32("qkv_sn", sn), I32("qkv_sh", sh), I32("o_sb", osb),
      I32("o_sn", osn), I32("o_sh", osh), I32("dqkv_sb", sb), I32("dqkv_sn", sn),
      I32("dqkv_sh", sh), {"dropout", false, RT_T_F32, &dropout}, I32("seed", seed),
      I32("step", step), I32("layer", layer)};
  int n = (int)(sizeof tab / sizeof *tab);
  for (int i = 0; i < 2 && md->bwd[i]; i++)
    if (launch(e, md->bwd[i], tab, n, err, cap))
      return -1;
  return 0;
}

#undef BUF
#undef I32

/* ---- entry points ------------------------------------------------------------------ */

int attention_forward(AttnEngine *e, const AttnCall *c, const float *qkv, float *o,
                      const int32_t *lengths, int B, int N, const AttnRows *rows, char *err,
                      size_t cap) {
  if (check_call(e, c, B, N, err, cap))
    return -1;
  if (c->impl == ATTN_IMPL_CRISP)
    return crisp_forward(e, c, qkv, o, lengths, B, N, rows, err, cap);
  AttnLayout l = layout(e, B, N);
  int64_t C = (int64_t)e->heads * e->head_dim;
  AttnRefArgs a = ref_args(c);
  if (attn_ref_forward(&l, e->head_dim, &a, qkv, qkv + C, qkv + 2 * C, lengths, o, rows->lse,
                       rows->tau, rows->kept, c->stats ? rows->entropy : NULL,
                       c->dense_stats ? rows->dense_entropy : NULL, e->ws)) {
    snprintf(err, cap, "attention: the reference refused the arguments");
    return -1;
  }
  return 0;
}

int attention_backward(AttnEngine *e, const AttnCall *c, const float *qkv, const float *o,
                       const float *dout, float *dqkv, const int32_t *lengths, int B, int N,
                       const AttnRows *rows, char *err, size_t cap) {
  if (check_call(e, c, B, N, err, cap))
    return -1;
  if (c->impl == ATTN_IMPL_CRISP && e->crisp->mode[c->select].bwd[0])
    return crisp_backward(e, c, qkv, o, dout, dqkv, lengths, B, N, rows, err, cap);
  /* CRISP HOOK: without backward kernels in the module (templates_build does not emit
   * them yet) the reference backward runs on the crisp forward's lse and tau: the
   * same contract, and on the host target the same scores bit for bit, so the same
   * kept sets (tests/test_layers.c checks the two paths agree). */
  AttnLayout l = layout(e, B, N);
  int64_t C = (int64_t)e->heads * e->head_dim;
  AttnRefArgs a = ref_args(c);
  if (attn_ref_backward(&l, e->head_dim, &a, qkv, qkv + C, qkv + 2 * C, o, dout, lengths,
                        rows->lse, rows->tau, dqkv, dqkv + C, dqkv + 2 * C, rows->delta,
                        e->ws)) {
    snprintf(err, cap, "attention: the reference refused the arguments");
    return -1;
  }
  return 0;
}
