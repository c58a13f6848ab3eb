/* layers.h: the encoder's layers, each a _forward/_backward pair over float tensors
 * (llm.c style): row-major, rows = B*N token positions (row r = b*N + n) unless said.
 *
 * Conventions, shared by every pair:
 *  - a _forward writes its outputs (=); a _backward writes the gradient of its input
 *    (=, unless a `beta` says otherwise) and ACCUMULATES (+=) into parameter
 *    gradients, so gradient accumulation over micro-batches needs no extra pass;
 *  - a layer touches memory only through the pointers it is given (no globals, no
 *    hidden buffers), so each can later become a kernel launch;
 *  - linear layers go through the backend's GEMM (rt_gemm); the others are C loops
 *    over floats: on the CPU backend a device pointer is a host pointer. Each has a
 *    plain single-threaded version (the reference) and a threaded one over the
 *    backend's pool (below, bitwise equal), which the model runs. The GPU versions
 *    of the loops (elementwise kernels) come later; see docs/model.md.
 * In-place use (out == inp, dinp == dout) is allowed where a function says so. */
#ifndef CRISP_MODEL_LAYERS_H
#define CRISP_MODEL_LAYERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/backend.h"
#include "../runtime/pool.h"

/* ---- embeddings ------------------------------------------------------------------ */

/* out[b, n, :] = wte[ids[b, n]] + wpe[n] (+ wtt[0] when wtt: BERT's token type 0) for
 * every position n < N, padding included (its rows are computed but never read by a
 * valid position). ids must be in range (model_forward checks them). */
void embedding_forward(float *out, const int32_t *ids, const float *wte, const float *wpe,
                       const float *wtt, int B, int N, int C);
/* dwte[ids[b, n]] += dout[b, n], dwpe[n] += dout[b, n], dwtt[0] += dout[b, n] for the
 * valid positions n < lengths[b] (padded rows carry zero gradient anyway). Rows with
 * ids == pad_id get no gradient in dwte, as nn.Embedding(padding_idx) does. */
void embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                        const int32_t *ids, const int32_t *lengths, int B, int N, int C,
                        int pad_id);

/* ---- linear: y = x W^T + b ------------------------------------------------------- */

/* out[r, o] = sum_i inp[r, i] w[o, i] + bias[o] for r < rows, o < out_f; w is
 * [out_f, in_f] (PyTorch's layout); bias may be NULL. ld_out / ld_inp are the row
 * strides in elements (>= out_f / in_f), so a linear can read every N-th row (the
 * [CLS] positions) or write one third of a fused QKV row. 0, or -1 (backend_error). */
int linear_forward(Backend *be, float *out, int ld_out, const float *inp, int ld_inp,
                   const float *w, const float *bias, int rows, int in_f, int out_f);
/* dinp = beta * dinp + dout w (skipped when dinp is NULL; beta 0 or 1), dw += dout^T inp,
 * dbias += column sums of dout (skipped when NULL). */
int linear_backward(Backend *be, float *dinp, int ld_dinp, float beta, float *dw, float *dbias,
                    const float *dout, int ld_dout, const float *inp, int ld_inp,
                    const float *w, int rows, int in_f, int out_f);
/* The two bias loops of the above (plain; linear_* run the threaded versions below on
 * the backend's pool): out[r, :] = bias for r < rows (row stride ld), and
 * dbias[j] += sum_r dout[r, j] (in double, rows in order). */
void bias_fill(float *out, int ld, const float *bias, int rows, int n);
void bias_grad(float *dbias, const float *dout, int ld, int rows, int n);

/* ---- LayerNorm over the last dimension ------------------------------------------- */

/* out = (inp - mean) * rstd * w + b per row, rstd = 1 / sqrt(var + eps) (biased
 * variance); saves mean and rstd [rows] for the backward. Statistics in double. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int rows, int C, float eps);
/* dinp = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * w; dw += dout * xhat,
 * db += dout. dinp may not alias dout. */
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int rows, int C);

/* ---- activations (n elements; out may alias inp, dinp may alias dout) ------------ */

/* GELU, the exact (erf) form: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), in float
 * with a vectorised erfc and exp (gelu.c states and tests/test_gelu.c checks the
 * error against the exact value: <= 1.3e-6 relative for x >= -5). */
void gelu_forward(float *out, const float *inp, size_t n);
/* dinp = dout * (Phi(x) + x phi(x)) from the pre-activation inp. */
void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
/* The same in double with libm's erf and exp: the references of the two above. */
void gelu_forward_ref(float *out, const float *inp, size_t n);
void gelu_backward_ref(float *dinp, const float *inp, const float *dout, size_t n);
void relu_forward(float *out, const float *inp, size_t n);
/* dinp = dout where out > 0, else 0 (from the forward's output). */
void relu_backward(float *dinp, const float *out, const float *dout, size_t n);
void tanh_forward(float *out, const float *inp, size_t n);
/* dinp = dout * (1 - out^2) (from the forward's output). */
void tanh_backward(float *dinp, const float *out, const float *dout, size_t n);

/* out += inp (n elements): the residual connections. The backward of out = a + b
 * passes the gradient to both unchanged (the model folds it into GEMM betas). */
void residual_forward(float *out, const float *inp, size_t n);

/* ---- dropout (inverted), from a counter-based mask ------------------------------- */

/* The mask of one dropout site: element (b, n, c) is kept iff
 *   dropout_keep(dropout_row_hash(seed, step, layer, b, site, n), c, threshold(p))
 * (templates/dropout.h, the generator the attention kernels use), so it depends on
 * the position, never on the padded length N, and the backward regenerates it. The
 * model gives every site its own (layer, site) pair; attention dropout uses the
 * layer index with the head in `site`, hidden sites set bit 30 of `layer`. */
typedef struct DropoutSite {
  float p;            /* probability of dropping; 0 = identity */
  uint32_t seed, step, layer, site;
} DropoutSite;

/* out[b, n, c] = inp[b, n, c] * keep / (1 - p) for b < B, n < N, c < C (row stride C);
 * out may alias inp; with p = 0 out = inp (a copy unless aliased). */
void dropout_forward(float *out, const float *inp, const DropoutSite *d, int B, int N, int C);
/* dinp = dout * keep / (1 - p), the same mask; dinp may alias dout. */
void dropout_backward(float *dinp, const float *dout, const DropoutSite *d, int B, int N, int C);
/* The keep bit of one element (what both of the above use). */
bool dropout_site_keep(const DropoutSite *d, int b, int n, int c);

/* ---- classification loss --------------------------------------------------------- */

/* probs[b, :] = softmax(logits[b, :]) over K classes; returns the mean over the batch
 * of -log probs[b, labels[b]] (computed in double), or NAN when labels is NULL.
 * Labels must be in [0, K). */
float crossentropy_forward(float *probs, const float *logits, const int32_t *labels, int B,
                           int K);
/* dlogits[b, k] = scale * (probs[b, k] - [k == labels[b]]); scale = 1 / B for the mean. */
void crossentropy_backward(float *dlogits, const float *probs, const int32_t *labels, int B,
                           int K, float scale);

/* ---- threaded versions ------------------------------------------------------------ */

/* The same layers over a thread pool (NULL: the calling thread), same arguments
 * after the pool, for the model on the cpu backend (rt_host_pool). Bitwise equal to
 * the plain functions above with any thread count: rows are independent, and each
 * sum into a parameter gradient (LayerNorm dw/db, bias columns, embedding rows) is
 * split by column strips, each column summed over the rows in the plain order.
 * The plain functions stay as the references (tests/test_layers.c compares). */
void embedding_forward_par(RtPool *pool, float *out, const int32_t *ids, const float *wte,
                           const float *wpe, const float *wtt, int B, int N, int C);
void embedding_backward_par(RtPool *pool, float *dwte, float *dwpe, float *dwtt,
                            const float *dout, const int32_t *ids, const int32_t *lengths, int B,
                            int N, int C, int pad_id);
void layernorm_forward_par(RtPool *pool, float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, int rows, int C, float eps);
void layernorm_backward_par(RtPool *pool, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, int rows, int C);
void gelu_forward_par(RtPool *pool, float *out, const float *inp, size_t n);
void gelu_backward_par(RtPool *pool, float *dinp, const float *inp, const float *dout,
                       size_t n);
void residual_forward_par(RtPool *pool, float *out, const float *inp, size_t n);
void dropout_forward_par(RtPool *pool, float *out, const float *inp, const DropoutSite *d, int B,
                         int N, int C);
void dropout_backward_par(RtPool *pool, float *dinp, const float *dout, const DropoutSite *d,
                          int B, int N, int C);
void bias_fill_par(RtPool *pool, float *out, int ld, const float *bias, int rows, int n);
void bias_grad_par(RtPool *pool, float *dbias, const float *dout, int ld, int rows, int n);

#endif
