/* dropout_row.h: one row of hidden dropout, the threaded layers' fast path (see
 * dropout_row.c); the plain dropout_forward/_backward (act.c) are its reference. */
#ifndef CRISP_MODEL_DROPOUT_ROW_H
#define CRISP_MODEL_DROPOUT_ROW_H

#include <stdint.h>

/* out[c] = inp[c] * scale where the mask keeps (row_hash, c) at threshold thr, else
 * 0, for c < C: bit for bit dropout_keep(row_hash, c, thr) ? inp[c] * scale : 0.
 * out may alias inp. */
void dropout_row(float *out, const float *inp, uint32_t row_hash, uint32_t thr, float scale,
                 int C);
/* The mask's bits for element c of a row (dropout_keep compares them with thr). */
uint32_t dropout_row_bits(uint32_t row_hash, uint32_t c);

#endif
