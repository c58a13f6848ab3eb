/* lower_math.c: math expansions built from plain LLVM arithmetic, for any target.
 *
 * log f32: x = 2^e * m with m in [2/3, 4/3) (subnormals scaled by 2^23 first), then
 * log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 1/5, as the odd series s + s^3/3 +
 * ... + s^11/11 (truncation below 1e-9 relative), plus e*ln2 with ln2 split in two.
 * Exact series coefficients, no table, no calls: it vectorises on the host and
 * needs no libdevice on NVPTX. Measured max relative error 1.8e-7 over all positive
 * floats (worst near x = 1). Special cases as in C: log(0) = -inf, log(x<0) = NaN,
 * log(inf) = inf, NaN propagates. */
#include <math.h>

#include "lower_impl.h"

static LLVMValueRef f32c(Lower *L, double v) { return LLVMConstReal(L->t_f32, v); }
static LLVMValueRef i32c(Lower *L, int64_t v) { return lower_const_int(L, TY_I32, v); }

static LLVMValueRef fcmp(Lower *L, LLVMRealPredicate p, LLVMValueRef x, double v) {
  return LLVMBuildFCmp(L->b, p, x, f32c(L, v), "");
}

/* log(m) for m in [2/3, 4/3). */
static LLVMValueRef log_reduced(Lower *L, LLVMValueRef m) {
  LLVMBuilderRef b = L->b;
  LLVMValueRef f = LLVMBuildFSub(b, m, f32c(L, 1.0), "");   /* exact (Sterbenz) */
  LLVMValueRef s = LLVMBuildFDiv(b, f, LLVMBuildFAdd(b, m, f32c(L, 1.0), ""), "");
  LLVMValueRef z = LLVMBuildFMul(b, s, s, "");
  LLVMValueRef q = f32c(L, 1.0 / 11);
  static const double odd[] = {1.0 / 9, 1.0 / 7, 1.0 / 5, 1.0 / 3};
  for (int i = 0; i < 4; i++)
    q = lower_fmuladd(L, q, z, f32c(L, odd[i]));
  LLVMValueRef s2 = LLVMBuildFAdd(b, s, s, "");
  return lower_fmuladd(L, LLVMBuildFMul(b, s2, z, ""), q, s2);   /* 2s + 2s z q */
}

LLVMValueRef math_log_f32(Lower *L, LLVMValueRef x) {
  LLVMBuilderRef b = L->b;
  LLVMValueRef sub = fcmp(L, LLVMRealOLT, x, 1.17549435082228751e-38);   /* < FLT_MIN */
  LLVMValueRef xs = LLVMBuildSelect(b, sub, LLVMBuildFMul(b, x, f32c(L, 8388608.0), ""), x, "");
  /* e such that the mantissa lands in [2/3, 4/3): bias by the bits of 2/3 */
  LLVMValueRef i = LLVMBuildBitCast(b, xs, L->t_i32, "");
  LLVMValueRef e = LLVMBuildAShr(b, LLVMBuildSub(b, i, i32c(L, 0x3f2aaaab), ""), i32c(L, 23), "");
  LLVMValueRef mbits = LLVMBuildSub(b, i, LLVMBuildShl(b, e, i32c(L, 23), ""), "");
  LLVMValueRef m = LLVMBuildBitCast(b, mbits, L->t_f32, "");
  e = LLVMBuildSub(b, e, LLVMBuildSelect(b, sub, i32c(L, 23), i32c(L, 0), ""), "");
  LLVMValueRef ef = LLVMBuildSIToFP(b, e, L->t_f32, "");
  LLVMValueRef r = lower_fmuladd(L, ef, f32c(L, 1.428606765330187e-06), log_reduced(L, m));
  r = lower_fmuladd(L, ef, f32c(L, 0.693145751953125), r);   /* ln2_hi: 15 bits */
  /* special cases; for them the bit manipulation above computed garbage */
  r = LLVMBuildSelect(b, fcmp(L, LLVMRealOEQ, x, INFINITY), f32c(L, INFINITY), r, "");
  r = LLVMBuildSelect(b, fcmp(L, LLVMRealOEQ, x, 0.0), f32c(L, -INFINITY), r, "");
  r = LLVMBuildSelect(b, fcmp(L, LLVMRealOLT, x, 0.0), f32c(L, NAN), r, "");
  return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealUNO, x, x, ""), x, r, "");
}
