/* The hidden-dropout mask, a row at a time, vectorised.
 *
 * templates/dropout.h's dropout_keep is a call per element into another file, so
 * the loop over a row stayed scalar (dropout_keep + its loop were ~3% of a MiniLM
 * step). The element's bits are the same integer hash written inline here, which
 * GCC vectorises (vpmulld), and the clones make that 16 lanes wide where the CPU
 * has AVX-512. Integer arithmetic and one float multiply per element: every clone
 * gives the same bits. tests/test_layers_par.c checks dropout_row_bits against
 * dropout_keep and the threaded layers (which run this) against the plain ones. */
#include "dropout_row.h"

#include "clones.h"

/* MurmurHash3's finaliser, as templates/dropout.c's fmix32 */
static inline uint32_t fmix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x85EBCA6Bu;
  x ^= x >> 13;
  x *= 0xC2B2AE35u;
  return x ^ (x >> 16);
}

/* templates/dropout.h: bits = fmix32(row + (j + 1) * 0x9E3779B1) */
static inline uint32_t bits_of(uint32_t row_hash, uint32_t c) {
  return fmix32(row_hash + (c + 1u) * 0x9E3779B1u);
}

uint32_t dropout_row_bits(uint32_t row_hash, uint32_t c) { return bits_of(row_hash, c); }

CRISP_CLONES void dropout_row(float *out, const float *inp, uint32_t row_hash, uint32_t thr,
                              float scale, int C) {
  for (int c = 0; c < C; c++)
    out[c] = bits_of(row_hash, (uint32_t)c) >= thr ? inp[c] * scale : 0.0f;
}
