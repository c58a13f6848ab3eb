/* Counter-based dropout masks (see dropout.h), as IR and as C. */
#include "dropout.h"

enum { GOLDEN = (int32_t)0x9E3779B1u, M1 = (int32_t)0x85EBCA6Bu, M2 = (int32_t)0xC2B2AE35u };

static Op *k32(Builder *b, int32_t v) { return ir_const_i32(b, v); }

static Op *xorshift_ir(Builder *b, Op *x, int s) {
  return ir_bin(b, OP_XOR, x, ir_bin(b, OP_SHR, x, k32(b, s)));
}

static Op *fmix32_ir(Builder *b, Op *x) {
  x = ir_bin(b, OP_MUL, xorshift_ir(b, x, 16), k32(b, M1));
  x = ir_bin(b, OP_MUL, xorshift_ir(b, x, 13), k32(b, M2));
  return xorshift_ir(b, x, 16);
}

static Op *fold_ir(Builder *b, Op *state, Op *v) {
  return fmix32_ir(b, ir_bin(b, OP_ADD, state, ir_bin(b, OP_MUL, v, k32(b, GOLDEN))));
}

Op *dropout_row_hash_ir(Builder *b, Op *seed, Op *step, Op *layer, Op *batch, Op *head, Op *i) {
  Op *h = fmix32_ir(b, seed);
  Op *parts[] = {step, layer, batch, head, i};
  for (int n = 0; n < 5; n++)
    h = fold_ir(b, h, parts[n]);
  return h;
}

Op *dropout_keep_ir(Builder *b, Op *row_hash, Op *j, Op *threshold) {
  Op *bits = fold_ir(b, row_hash, ir_bin(b, OP_ADD, j, k32(b, 1)));
  return ir_cmp(b, CMP_UGE, bits, threshold);
}

Op *dropout_threshold_ir(Builder *b, Op *p) {
  Op *scaled = ir_bin(b, OP_MUL, ir_cast(b, TY_F64, p), ir_const_f64(b, 4294967296.0));
  return ir_cast(b, TY_I32, ir_cast(b, TY_I64, scaled));
}

static uint32_t fmix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x85EBCA6Bu;
  x ^= x >> 13;
  x *= 0xC2B2AE35u;
  return x ^ (x >> 16);
}

static uint32_t fold(uint32_t state, uint32_t v) { return fmix32(state + v * 0x9E3779B1u); }

uint32_t dropout_row_hash(uint32_t seed, uint32_t step, uint32_t layer, uint32_t batch,
                          uint32_t head, uint32_t i) {
  uint32_t h = fmix32(seed);
  uint32_t parts[] = {step, layer, batch, head, i};
  for (int n = 0; n < 5; n++)
    h = fold(h, parts[n]);
  return h;
}

bool dropout_keep(uint32_t row_hash, uint32_t j, uint32_t threshold) {
  return fold(row_hash, j + 1) >= threshold;
}

uint32_t dropout_threshold(float p) { return (uint32_t)(int64_t)((double)p * 4294967296.0); }
