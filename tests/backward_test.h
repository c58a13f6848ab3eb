/* backward_test.h: what the test_backward suite's files share.
 *
 * test_backward is one program in seven files with one pass/fail count and one
 * random stream: test_backward.c (the random draws, compiling the kernels, tile
 * legality, main and the order the suites run in), backward_case.c (one problem:
 * inputs, the double reference, the kernel arguments, errors against the
 * reference), backward_fd.c (a: the reference against finite differences),
 * backward_runs.c (b, c, e: the kernels run on the host JIT, in the interpreter and
 * after the forward kernel), backward_ptx.c (d: PTX through ptxas),
 * backward_bits.c (the step count the tile schedule's masked blocks decide by) and
 * backward_nonfinite.c (f: a NaN in dO goes where it should). */
#ifndef CRISP_BACKWARD_TEST_H
#define CRISP_BACKWARD_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../compiler/jit.h"
#include "../compiler/lower.h"
#include "../ir/passes.h"
#include "../templates/attention_bwd.h"
#include "../templates/reference_bwd.h"

/* test_backward.c: the random stream, the worst errors seen, compiling */
extern uint64_t rng;
extern double worst_rel, worst_term, worst_fd;
extern long fd_nonzero;
void *xcalloc(size_t n, size_t size);
double uniform(void);
float draw(bool quantized);
Spec make_spec(int head_dim, int max_seq, SelectKind sel, bool causal, int keep_min);
int compile(Module *m, const Spec *s, const TileConfig *t, MapTarget target, char *err,
            size_t cap);
/* run_host (test_backward.c, below BwdArgs) launches one compiled kernel on the host */

/* backward_case.c: one backward problem: inputs, kernel outputs, reference */

typedef struct {
  Spec spec;
  AttnLayout l;                     /* q/k/v (qkv strides) and o/dout (o strides) */
  int64_t g_sb, g_sn, g_sh;         /* dq/dk/dv strides */
  int64_t nin, nq, no, ng, nrows;   /* allocation sizes */
  float *in, *q, *k, *v, *o, *dout, *lse, *tau, *delta, *grad, *dq, *dk, *dv;
  int32_t *lengths;
  double sparsity;
  AttnDropout dp;
  bool tau_inf;                     /* a row keeping every valid key gets tau = -inf, as the
                                       forward writes it (else its lowest kept score): the
                                       tile backward's dense blocks (s = 0) */
  AttnBwdRef ref;                   /* o, lse, tau, delta, dq, dk, dv (qkv layout) */
  uint8_t *mask;
} Case;

/* kernelParams for both kernels. */
typedef struct {
  void *ptrs[12];
  int32_t ints[16];
  float p;
  void *args[ATTN_BWD_NPARAMS];
  int64_t counts[ATTN_BWD_NPARAMS];
} BwdArgs;

typedef struct {
  double rel, term;   /* max |x - ref| / max |ref|, and / the term scale */
  bool unwritten;
} Err;

void run_host(CpuKernelFn fn, Kernel *k, BwdArgs *a);
void case_init(Case *c, const Spec *s, int B, int H, int N, bool fused_in, bool fused_grad);
void case_free(Case *c);
int64_t at_in(const Case *c, int b, int i, int h);
int64_t at_o(const Case *c, int b, int i, int h);
void random_lengths(Case *c);
void case_fill(Case *c);
float kernel_score(const Case *c, int b, int h, int i, int j);
void case_reference(Case *c);
void case_poison(Case *c);
void bwd_args(BwdArgs *a, Case *c);
void case_errors(const Case *c, Err e[4]);
void report(const Case *c, const char *what, Err e[4]);

/* backward_fd.c */
void fd_suite(void);

/* backward_runs.c */
void host_suite(const Spec *s, TileConfig t);   /* t: tile_resolve(s, TUNE_CPU) or any */
void interp_suite(const Spec *s, TileConfig t);
void e2e_suite(const Spec *s, TileConfig t);

/* backward_ptx.c */
void ptx_suite(void);

/* backward_bits.c: the masked blocks' step count (tile_bits_steps) */
void bits_suite(void);

/* backward_nonfinite.c: a NaN in dO reaches the gradients that depend on it */
void nonfinite_suite(void);

#endif
