/* Attention dropout masks from a counter-based generator: the mask bit of score
 * (i, j) is a pure function of (seed, step, layer, b, h, i, j), so the forward and
 * backward kernels regenerate the same mask without storing it.
 *
 *   row  = H(seed, step, layer, b, h, i)      once per query row
 *   bits = fmix32(row + (j + 1) * 0x9E3779B1) per score
 *   keep = bits >= threshold,  threshold = floor(p * 2^32)  (unsigned compare)
 *
 * H folds each value v into the state as fmix32(state + v * 0x9E3779B1), starting
 * from fmix32(seed); fmix32 is MurmurHash3's 32-bit finaliser (a bijection with full
 * avalanche). Kept probabilities are divided by (1 - p) (inverted dropout). The IR
 * builders and the C functions below compute bit-identical values. */
#ifndef CRISP_DROPOUT_H
#define CRISP_DROPOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "../ir/ir.h"

/* IR: all operands i32 (threshold and hashes are u32 bit patterns in i32). */
Op *dropout_row_hash_ir(Builder *b, Op *seed, Op *step, Op *layer, Op *batch, Op *head, Op *i);
Op *dropout_keep_ir(Builder *b, Op *row_hash, Op *j, Op *threshold);   /* -> bool */
Op *dropout_threshold_ir(Builder *b, Op *p);                            /* f32 p -> i32 */

/* C reference, bit-identical. */
uint32_t dropout_row_hash(uint32_t seed, uint32_t step, uint32_t layer, uint32_t batch,
                          uint32_t head, uint32_t i);
bool dropout_keep(uint32_t row_hash, uint32_t j, uint32_t threshold);
uint32_t dropout_threshold(float p);

#endif
