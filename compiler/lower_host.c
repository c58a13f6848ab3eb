/* lower_host.c: the host side of the lowering.
 *
 * A CPU-mapped kernel becomes an internal function NAME.block(params..., bx, by, bz)
 * that runs one block, and an external entry NAME(args, grid, first, last) that
 * loads the parameters once (CUDA kernelParams convention) and calls the block
 * function for each linear block id. Keeping the block body a function with
 * noalias parameters gives the vectoriser alias facts (inlining turns them into
 * scoped alias metadata).
 *
 * exp on f32 is expanded inline instead of calling expf, whose call would stop the
 * loop vectoriser: Cody-Waite range reduction, a degree-7 polynomial and a 2^n scale
 * built from integer bits. Measured max relative error 7.5e-8 on [-87, 88] (libm's
 * expf: 6e-8; see tests/test_lower.c). Results below FLT_MIN flush to 0, as with
 * the GPU's ftz. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lower_impl.h"

void host_function_attrs(Lower *L, LLVMValueRef fn) {
  const char *cpu = L->host_cpu ? L->host_cpu : "generic";
  const char *features = L->host_features ? L->host_features : "";
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(L->ctx, "target-cpu", 10, cpu,
                                                    (unsigned)strlen(cpu)));
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(L->ctx, "target-features", 15, features,
                                                    (unsigned)strlen(features)));
  /* LLVM's x86 cost model caps vectors at 256 bits on CPUs where 512-bit code may
   * lower the clock; register-blocked loops want all 32 full-width registers
   * (twice the accumulators per register), so ask for the widest the CPU has. */
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(L->ctx, "prefer-vector-width", 19, "512", 3));
  lower_add_attr(L, fn, LLVMAttributeFunctionIndex, "nounwind");
}

LLVMValueRef host_body_function(Lower *L) {
  Kernel *k = L->k;
  LLVMTypeRef ps[35];
  int n = k->nparams;
  for (int i = 0; i < n; i++)
    ps[i] = k->params[i].buf ? L->t_ptr : lower_type(L, k->params[i].type);
  for (int d = 0; d < 3; d++)
    ps[n + d] = L->t_i32;   /* block ids */
  char name[96];
  snprintf(name, sizeof name, "%s.block", k->name);
  LLVMValueRef fn = LLVMAddFunction(L->mod, name, LLVMFunctionType(L->t_void, ps, (unsigned)n + 3, 0));
  LLVMSetLinkage(fn, LLVMInternalLinkage);
  host_function_attrs(L, fn);
  lower_buffer_attrs(L, fn, k);   /* the first n parameters are the kernel's */
  return fn;
}

/* The value of parameter i: *(T *)args[i]. */
static LLVMValueRef load_arg(Lower *L, LLVMBuilderRef b, LLVMValueRef args, int i) {
  const Param *p = &L->k->params[i];
  LLVMValueRef idx = LLVMConstInt(L->t_i64, (unsigned long long)i, 0);
  LLVMValueRef slot = LLVMBuildInBoundsGEP2(b, L->t_ptr, args, &idx, 1, "");
  LLVMValueRef ptr = LLVMBuildLoad2(b, L->t_ptr, slot, p->name);
  return LLVMBuildLoad2(b, p->buf ? L->t_ptr : lower_type(L, p->type), ptr, p->name);
}

static LLVMValueRef load_grid(Lower *L, LLVMBuilderRef b, LLVMValueRef grid, int d) {
  LLVMValueRef idx = LLVMConstInt(L->t_i64, (unsigned long long)d, 0);
  LLVMValueRef g = LLVMBuildLoad2(b, L->t_i32, LLVMBuildInBoundsGEP2(b, L->t_i32, grid, &idx, 1, ""), "");
  return LLVMBuildSExt(b, g, L->t_i64, "");
}

/* for (b = first; b < last; b++) NAME.block(params..., b % gx, b / gx % gy, b / (gx*gy)) */
void host_entry_wrapper(Lower *L, LLVMValueRef body) {
  Kernel *k = L->k;
  LLVMTypeRef ps[4] = {L->t_ptr, L->t_ptr, L->t_i64, L->t_i64};
  LLVMValueRef fn = LLVMAddFunction(L->mod, k->name, LLVMFunctionType(L->t_void, ps, 4, 0));
  host_function_attrs(L, fn);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(L->ctx, fn, "entry");
  LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(L->ctx, fn, "blocks");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(L->ctx, fn, "done");
  LLVMBuilderRef b = LLVMCreateBuilderInContext(L->ctx);
  LLVMPositionBuilderAtEnd(b, entry);
  LLVMValueRef call_args[35];
  for (int i = 0; i < k->nparams; i++)
    call_args[i] = load_arg(L, b, LLVMGetParam(fn, 0), i);
  LLVMValueRef gx = load_grid(L, b, LLVMGetParam(fn, 1), 0);
  LLVMValueRef gy = load_grid(L, b, LLVMGetParam(fn, 1), 1);
  LLVMValueRef gxy = LLVMBuildMul(b, gx, gy, "");
  LLVMValueRef first = LLVMGetParam(fn, 2), last = LLVMGetParam(fn, 3);
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, first, last, ""), loop, done);

  LLVMPositionBuilderAtEnd(b, loop);
  LLVMValueRef id = LLVMBuildPhi(b, L->t_i64, "block");
  LLVMValueRef ids[3] = {LLVMBuildURem(b, id, gx, ""),
                         LLVMBuildURem(b, LLVMBuildUDiv(b, id, gx, ""), gy, ""),
                         LLVMBuildUDiv(b, id, gxy, "")};
  for (int d = 0; d < 3; d++)
    call_args[k->nparams + d] = LLVMBuildTrunc(b, ids[d], L->t_i32, "");
  LLVMBuildCall2(b, LLVMGlobalGetValueType(body), body, call_args, (unsigned)k->nparams + 3, "");
  LLVMValueRef next = LLVMBuildNSWAdd(b, id, LLVMConstInt(L->t_i64, 1, 0), "");
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, next, last, ""), loop, done);
  LLVMValueRef in_vals[2] = {first, next};
  LLVMBasicBlockRef in_blocks[2] = {entry, loop};
  LLVMAddIncoming(id, in_vals, in_blocks, 2);

  LLVMPositionBuilderAtEnd(b, done);
  LLVMBuildRetVoid(b);
  LLVMDisposeBuilder(b);
}

static LLVMValueRef f32c(Lower *L, double v) { return LLVMConstReal(L->t_f32, v); }
static LLVMValueRef i32c(Lower *L, int64_t v) { return lower_const_int(L, TY_I32, v); }

/* 2^n for n in [-126, 127], from the exponent bits. */
static LLVMValueRef pow2i(Lower *L, LLVMValueRef n) {
  LLVMValueRef bits = LLVMBuildShl(L->b, LLVMBuildAdd(L->b, n, i32c(L, 127), ""), i32c(L, 23), "");
  return LLVMBuildBitCast(L->b, bits, L->t_f32, "");
}

static LLVMValueRef exp_f32(Lower *L, LLVMValueRef x) {
  /* e^r on [-ln2/2, ln2/2]: 1 + r + r^2 (c0 + c1 r + ...) (Cephes expf minimax) */
  static const double poly[] = {1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1,
                                1.0, 1.0};
  const double shift = 12582912.0;   /* 1.5 * 2^23: adding it rounds to an integer */
  LLVMBuilderRef b = L->b;
  /* n = round(x / ln2), also as an integer from t's low mantissa bits */
  LLVMValueRef t = lower_fmuladd(L, x, f32c(L, 1.44269504088896341), f32c(L, shift));
  LLVMValueRef n = LLVMBuildFSub(b, t, f32c(L, shift), "");
  LLVMValueRef ni = LLVMBuildSub(b, LLVMBuildBitCast(b, t, L->t_i32, ""), i32c(L, 0x4B400000), "");
  /* r = x - n ln2 in two steps (ln2_hi has few bits, so n * ln2_hi is exact) */
  LLVMValueRef r = lower_fmuladd(L, n, f32c(L, -0.693359375), x);
  r = lower_fmuladd(L, n, f32c(L, 2.12194440e-4), r);
  LLVMValueRef y = f32c(L, poly[0]);
  for (size_t i = 1; i < sizeof poly / sizeof poly[0]; i++)
    y = lower_fmuladd(L, y, r, f32c(L, poly[i]));
  /* 2^n = 2^(n/2) * 2^(n - n/2): each factor stays a normal float for n in [-126, 128] */
  LLVMValueRef n1 = LLVMBuildAShr(b, ni, i32c(L, 1), "");
  LLVMValueRef n2 = LLVMBuildSub(b, ni, n1, "");
  y = LLVMBuildFMul(b, LLVMBuildFMul(b, y, pow2i(L, n1), ""), pow2i(L, n2), "");
  /* outside the range the bits above are garbage: pick the limits (NaN compares false) */
  LLVMValueRef big = LLVMBuildFCmp(b, LLVMRealOGT, x, f32c(L, 88.72283935546875), "");
  LLVMValueRef small = LLVMBuildFCmp(b, LLVMRealOLT, x, f32c(L, -87.33654475), "");
  y = LLVMBuildSelect(b, big, f32c(L, INFINITY), y, "");
  return LLVMBuildSelect(b, small, f32c(L, 0.0), y, "");
}

LLVMValueRef host_exp(Lower *L, Type t, LLVMValueRef x) {
  if (t == TY_F32)
    return exp_f32(L, x);
  LLVMTypeRef ty = lower_type(L, t);
  return lower_intrinsic(L, "llvm.exp", &ty, 1, &x, 1);   /* f64: libm's exp */
}

LLVMValueRef host_log(Lower *L, Type t, LLVMValueRef x) {
  if (t == TY_F32)
    return math_log_f32(L, x);   /* vectorisable, unlike a logf call */
  LLVMTypeRef ty = lower_type(L, t);
  return lower_intrinsic(L, "llvm.log", &ty, 1, &x, 1);
}

/* ---- transpose16 ---- */

/* Round k of the in-register transpose pairs rows i and i + k (i & k == 0) and swaps
 * their off-diagonal k x k blocks: lo[c] = c & k ? hi_row[c - k] : lo_row[c],
 * hi[c] = c & k ? hi_row[c] : lo_row[c + k]. Rounds k = 8, 4, 2, 1 transpose the
 * tile (the recursive block transpose); each is 16 two-source shuffles, which x86
 * lowers to vpermt2ps / unpck / shuf*. */
static void transpose_round(Lower *L, LLVMValueRef v[IR_TRANSPOSE_N], int k) {
  enum { N = IR_TRANSPOSE_N };
  LLVMValueRef lo_mask[N], hi_mask[N];
  for (int c = 0; c < N; c++) {
    lo_mask[c] = LLVMConstInt(L->t_i32, (unsigned)(c & k ? N + c - k : c), 0);
    hi_mask[c] = LLVMConstInt(L->t_i32, (unsigned)(c & k ? N + c : c + k), 0);
  }
  LLVMValueRef lo = LLVMConstVector(lo_mask, N), hi = LLVMConstVector(hi_mask, N);
  for (int i = 0; i < N; i++) {
    if (i & k)
      continue;
    LLVMValueRef a = v[i], b = v[i + k];
    v[i] = LLVMBuildShuffleVector(L->b, a, b, lo, "");
    v[i + k] = LLVMBuildShuffleVector(L->b, a, b, hi, "");
  }
}

/* Row r is a masked load (rows >= `rows` are not read and give 0), so a tile that
 * runs past the last key reads nothing out of bounds; then four shuffle rounds and
 * 16 row stores. */
void host_transpose16(Lower *L, LLVMValueRef dst, int64_t ld, LLVMValueRef src, LLVMValueRef ss,
                      LLVMValueRef rows) {
  enum { N = IR_TRANSPOSE_N };
  LLVMTypeRef vt = LLVMVectorType(L->t_f32, N);
  LLVMTypeRef over[2] = {vt, L->t_ptr};
  LLVMValueRef v[N], all[N];
  for (int i = 0; i < N; i++)
    all[i] = LLVMConstInt(L->t_bool, 1, 0);
  LLVMValueRef ones = LLVMConstVector(all, N), none = LLVMConstNull(LLVMTypeOf(ones));
  for (int r = 0; r < N; r++) {
    LLVMValueRef off = LLVMBuildMul(L->b, ss, LLVMConstInt(L->t_i64, (unsigned)r, 0), "");
    LLVMValueRef p = LLVMBuildGEP2(L->b, L->t_f32, src, &off, 1, "");
    LLVMValueRef in = LLVMBuildICmp(L->b, LLVMIntSGT, rows, LLVMConstInt(L->t_i64, (unsigned)r, 0), "");
    LLVMValueRef mask = LLVMBuildSelect(L->b, in, ones, none, "");
    LLVMValueRef args[4] = {p, LLVMConstInt(L->t_i32, 4, 0), mask, LLVMConstNull(vt)};
    v[r] = lower_intrinsic(L, "llvm.masked.load", over, 2, args, 4);
  }
  for (int k = N / 2; k >= 1; k /= 2)
    transpose_round(L, v, k);
  for (int c = 0; c < N; c++) {
    LLVMValueRef off = LLVMConstInt(L->t_i64, (unsigned long long)(c * ld), 0);
    LLVMValueRef st = LLVMBuildStore(L->b, v[c], LLVMBuildGEP2(L->b, L->t_f32, dst, &off, 1, ""));
    LLVMSetAlignment(st, 4);
  }
}
