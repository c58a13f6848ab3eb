/* GELU, the exact (erf) form, in float without libm (see layers.h).
 *
 * Phi(x) = 0.5 erfc(-x / sqrt 2) is computed from the lower tail e = Phi(-|x|):
 * Phi = e for x < 0 and 1 - e otherwise, so the negative side keeps its relative
 * accuracy where 1 + erf(x / sqrt 2) would cancel. For z = |x| / sqrt 2,
 *   erfc(z) = t exp(-z^2 + P(t)),  t = 1 / (1 + z / 2),
 * P of degree 9 (Numerical Recipes' erfcc, a Chebyshev fit with fractional error
 * < 1.2e-7 for every z >= 0). -z^2 is formed as -0.5 x^2 so x is not rounded once
 * more by the scaling. exp is Cephes' expf: a degree-7 polynomial on
 * [-ln2/2, ln2/2] times 2^n built from the exponent bits.
 *
 * Every step is a float add, multiply, divide, compare or select: no calls, no
 * table, so GCC vectorises the loops (16 lanes under the AVX-512 clone). The file
 * is compiled with -ffp-contract=off (CMakeLists.txt): no FMA contraction, so
 * every clone rounds the same and results do not depend on the CPU's features,
 * nor on how the threaded versions chunk the array (elementwise).
 *
 * Measured against the exact value in double (0.5 x erfc(-x / sqrt 2)) at 10^7
 * points over [-10, 10]; tests/test_gelu.c fails above the bounds in brackets:
 *   forward:  absolute error 3.8e-7 [4e-7] (at x ~ 4.9: under 1 ulp of the result);
 *             relative error 1.3e-6 [1.5e-6] for x >= -5, 4.0e-6 [5e-6] for
 *             x >= -10 (the rounding of x^2 in the exponent, where |gelu| < 1e-5);
 *   backward: absolute error 2.5e-7 [3e-7] of dinp / dout (the derivative lies
 *             in [-0.17, 1.13]);
 *   tails: x > 10 gives x and dout exactly, x < -10 values within 1e-30 of 0,
 *          +-inf and NaN what the references give.
 * The double-erf loops of before stay as gelu_forward_ref / gelu_backward_ref. */
#include "layers.h"

#include <math.h>
#include <string.h>

#include "clones.h"


/* exp(x) for x <= 0 (Cephes expf), 0 below -87 (where expf would be subnormal):
 * the 2^n of the bit trick needs a normal exponent, and a flushed-to-zero density
 * keeps x phi(x) at 0 for huge negative x (a clamped 1e-38 times x = -1e38 is not). */
static inline float exp_neg(float x) {
  float xc = x < -87.0f ? -87.0f : x;
  /* round to nearest by adding 1.5 * 2^23 (|x log2 e| < 2^22): the sum's low
   * mantissa bits then hold n, read without a float-to-int conversion (none is UB
   * for NaN this way) */
  float big = xc * 1.44269504088896341f + 12582912.0f;
  float n = big - 12582912.0f;
  /* ln 2 in two parts, the first exact in float, so r = x - n ln 2 loses nothing */
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  uint32_t bits;
  memcpy(&bits, &big, sizeof bits);
  bits = (bits - 0x4B400000u + 127u) << 23;   /* 2^n, n in [-126, 0] */
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return x < -87.0f ? 0.0f : p * scale;
}

/* Phi(-|x|) = 0.5 erfc(|x| / sqrt 2) */
static inline float phi_lower(float x) {
  float z = fabsf(x) * 0.70710678118654752f;
  float t = 1.0f / (1.0f + 0.5f * z);
  float q = 0.17087277f;
  q = q * t + -0.82215223f;
  q = q * t + 1.48851587f;
  q = q * t + -1.13520398f;
  q = q * t + 0.27886807f;
  q = q * t + -0.18628806f;
  q = q * t + 0.09678418f;
  q = q * t + 0.37409196f;
  q = q * t + 1.00002368f;
  q = q * t + -1.26551223f;
  return 0.5f * t * exp_neg(q - 0.5f * (x * x));
}

static inline float phi(float x) {
  float e = phi_lower(x);
  return x < 0.0f ? e : 1.0f - e;
}

CRISP_CLONES void gelu_forward(float *out, const float *inp, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    out[i] = x * phi(x);
  }
}

CRISP_CLONES void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    float pdf = 0.398942280401432678f * exp_neg(-0.5f * (x * x));
    dinp[i] = dout[i] * (phi(x) + x * pdf);
  }
}

void gelu_forward_ref(float *out, const float *inp, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double x = inp[i];
    out[i] = (float)(0.5 * x * (1.0 + erf(x * M_SQRT1_2)));
  }
}

void gelu_backward_ref(float *dinp, const float *inp, const float *dout, size_t n) {
  const double inv_sqrt_2pi = 0.3989422804014327;
  for (size_t i = 0; i < n; i++) {
    double x = inp[i];
    double cdf = 0.5 * (1.0 + erf(x * M_SQRT1_2));
    double pdf = inv_sqrt_2pi * exp(-0.5 * x * x);
    dinp[i] = (float)(dout[i] * (cdf + x * pdf));
  }
}
