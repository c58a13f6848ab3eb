/* crisp IR: structured loop nests over typed buffers, with explicit parallel axes.
 *
 * A kernel is a tree. Every op lives in a Block (an ordered list); structured ops
 * (for, if, pfor, reduce) own child blocks. An op that produces a value *is* that
 * value (as in LLVM), numbered %N for printing. Scoping is lexical: an op may use
 * any value defined earlier in an enclosing block.
 *
 * Parallelism is hierarchical SPMD. Code directly in the kernel body runs once per
 * block and is uniform across the block; `pfor` splits an index space over a
 * parallel axis:
 *   pfor.block  over all threads of a block (thread t takes t, t+T, ...)
 *   pfor.warp   over the warps of a block   (warp w takes w, w+W, ...)
 *   pfor.lane   over the 32 lanes of a warp (only inside pfor.warp)
 * `reduce` combines a value over an index space: .serial (one thread, may be
 * reassociated), .lane (a warp collective; result uniform in the warp), .block
 * (a block collective; only in block-level code). Barriers are explicit ops in
 * block-level code; the end of a pfor.lane and a lane reduce synchronise the warp.
 * Stores happen only inside a pfor (so exactly one thread performs each); so do
 * atomic adds, which many threads may aim at one element.
 *
 * The map pass (ir/map.c) rewrites parallel ops into primitive ones for a target:
 * thread/lane ids, strided loops, warp_reduce, warpsync (GPU), or plain loops
 * marked vectorisable (CPU). Lowerings see only mapped kernels.
 */
#ifndef CRISP_IR_H
#define CRISP_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { TY_VOID, TY_BOOL, TY_I32, TY_I64, TY_F32, TY_F64 } Type;

typedef enum { SPACE_GLOBAL, SPACE_SHARED, SPACE_LOCAL } Space;

typedef enum { AXIS_BLOCK, AXIS_WARP, AXIS_LANE, AXIS_SERIAL } Axis;

typedef enum { RED_ADD, RED_MAX, RED_MIN } RedKind;

/* Compare predicates. Integers: EQ/NE, signed LT..GE, unsigned ULT/UGE (ints only).
 * Floats: every predicate is ORDERED, i.e. false when either operand is NaN, NE
 * included (LLVM oeq/one/olt/ole/ogt/oge; NE is `one`, so NE(NaN, x) is false).
 * The interpreter (ir/interp.c) and every lowering implement exactly this. */
typedef enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_ULT, CMP_UGE } CmpPred;

typedef enum {
  /* leaves */
  OP_CONST,      /* ival or fval, of type */
  OP_PARAM,      /* scalar kernel parameter: param index */
  OP_BLOCK_ID,   /* block index along grid dim (0..2) */
  OP_INDEX,      /* induction value of a for/pfor/reduce (owned by it, not in a block) */
  /* arithmetic (operands of the result type) */
  OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_REM, OP_MIN, OP_MAX,
  OP_FMA,        /* a*b + c, floats */
  OP_NEG, OP_AND, OP_OR, OP_XOR, OP_SHL, OP_SHR /* logical shift right */,
  OP_CTZ,        /* trailing zero bits of an i32/i64; its width for 0 */
  OP_EXP, OP_LOG, OP_SQRT, OP_ABS,          /* float math */
  OP_CMP,        /* -> bool; pred */
  OP_SELECT,     /* cond ? a : b */
  OP_CAST,       /* numeric conversion: int<->int (sign-extend/trunc), int<->float, float<->float;
                    bool -> int/float gives 0 or 1 (zero-extend / uitofp); float -> int
                    truncates toward zero (out of range: an error in the interpreter) */
  OP_BITCAST,    /* same-width reinterpretation (f32<->i32, f64<->i64) */
  /* memory */
  OP_LOAD,       /* buf[idx] */
  OP_STORE,      /* buf[idx] = val (no result) */
  OP_ATOMIC_ADD, /* old = buf[idx]; buf[idx] = old + val, atomically (relaxed); i32/f32 on a
                    shared or global buffer. Returns old. Only atomics are atomic with each
                    other: a plain access racing with one is still a race. */
  OP_TRANSPOSE,  /* a warp collective copy of a 16 x 16 f32 tile, transposed:
                    buf[a0 + c*ival + r] = r < a3 ? src[a1 + r*a2 + c] : 0, r, c < 16
                    (rows r >= a3 are not read). Warp-level code only; the GPU mapping
                    splits it over the lanes, the host lowers it to vector shuffles. */
  OP_PREFETCH,   /* a hint: the cache line of buf[idx] may be fetched. No effect on results
                    and never a fault, whatever idx (the interpreter skips it; the host
                    lowers it to llvm.prefetch, the GPU drops it) */
  OP_VAR,        /* declares a mutable per-thread scalar, initialised to operand 0 */
  OP_GET,        /* value of var */
  OP_SET,        /* var = value (no result) */
  /* structure */
  OP_FOR,        /* for index in [lo, hi) step `step` { body } */
  OP_IF,         /* if cond { then } else { els } */
  OP_PFOR,       /* parallel for index in [0, extent) over axis { body } */
  OP_REDUCE,     /* result = combine over index in [0, extent) of body's yield, over axis */
  OP_YIELD,      /* last op of a reduce body */
  OP_BARRIER,    /* block-wide barrier */
  /* primitive ops introduced by the map pass */
  OP_THREAD_ID,  /* thread index in block (GPU) */
  OP_WARP_REDUCE,/* butterfly all-reduce of operand 0 across the 32 lanes of a warp */
  OP_WARPSYNC,   /* synchronise the lanes of a warp */
  OP__COUNT
} OpKind;

typedef struct Op Op;
typedef struct Buf Buf;

enum { IR_MAX_OPERANDS = 4, IR_TRANSPOSE_N = 16 };

typedef struct Block {
  Op **ops;
  int n, cap;
} Block;

struct Op {
  OpKind kind;
  Type type;          /* result type; TY_VOID for ops without a result */
  int id;             /* printing/numbering; assigned by ir_number() */
  Op *a[IR_MAX_OPERANDS]; /* operands (arity depends on kind) */
  Buf *buf;           /* LOAD/STORE/ATOMIC_ADD; TRANSPOSE: the destination */
  Buf *src;           /* TRANSPOSE: the source */
  Op *var;            /* GET/SET: the OP_VAR */
  int64_t ival;       /* CONST int; PARAM index; BLOCK_ID dim; FOR step; TRANSPOSE dst row stride */
  double fval;        /* CONST float */
  CmpPred pred;       /* CMP */
  Axis axis;          /* PFOR/REDUCE */
  RedKind red;        /* REDUCE/WARP_REDUCE */
  bool vectorize;     /* FOR: lowering should force vectorisation (reassociation allowed) */
  Op *index;          /* FOR/PFOR/REDUCE: the OP_INDEX value */
  Block body;         /* FOR/PFOR/REDUCE body; IF then-branch */
  Block els;          /* IF else-branch */
  const char *hint;   /* optional name for printing (vars, indices) */
};

typedef enum { ROLE_IN, ROLE_OUT, ROLE_INOUT, ROLE_SCALAR } Role;

struct Buf {
  int id;
  char name[32];
  Type elem;
  Space space;
  int64_t size;       /* shared/local: element count (compile-time); global: 0 */
  Role role;          /* global buffers: how the kernel uses them */
  int param;          /* global buffers: parameter index; else -1 */
};

typedef struct Param {
  char name[32];
  Type type;          /* scalar params: TY_I32/TY_F32/TY_F64; buffer params: TY_VOID (see buf) */
  Buf *buf;           /* non-NULL for buffer parameters */
} Param;

/* Launch geometry: grid dim i = ceil(product of params in grid[i].params / grid[i].div) */
typedef struct GridDim {
  int params[2];      /* parameter indices, -1 = unused (a dim with none is 1) */
  int div;
} GridDim;

typedef struct Kernel {
  char name[64];
  Param params[32];
  int nparams;
  Buf *bufs[32];      /* every buffer: parameters first, then shared/local arrays */
  int nbufs;
  GridDim grid[3];
  int warps;          /* threads per block = 32 * warps on the GPU */
  bool mapped;        /* set by ir_map: body holds only primitive ops */
  int target;         /* MAP_* once mapped */
  Block body;
  int next_id;
  /* arena: every Op and Buf of the kernel, freed together */
  void **arena;
  int narena, carena;
} Kernel;

/* A module: the kernels generated from one spec. */
typedef struct Module {
  Kernel *kernels[16];
  int n;
} Module;

void ir_module_free(Module *m);

/* ---- kernels ---- */
Kernel *ir_kernel_new(const char *name, int warps);
void ir_kernel_free(Kernel *k);
Buf *ir_param_buf(Kernel *k, const char *name, Type elem, Role role);
Op *ir_param_scalar(Kernel *k, const char *name, Type t);   /* returns its OP_PARAM value */
Buf *ir_shared(Kernel *k, const char *name, Type elem, int64_t size);
Buf *ir_local(Kernel *k, const char *name, Type elem, int64_t size);
void ir_set_grid(Kernel *k, int dim, int param0, int param1, int div);
int ir_param_index(const Kernel *k, const char *name);       /* -1 if absent */
/* Kernel arguments follow CUDA's kernelParams convention everywhere (JIT, interpreter,
 * driver API): args[i] points to parameter i's value (for a buffer, to its pointer).
 * ir_grid evaluates the launch geometry rule from the integer scalar arguments. */
void ir_grid(const Kernel *k, void *const *args, int32_t grid[3]);

/* ---- the builder: an insertion point into a block ---- */
typedef struct Builder {
  Kernel *k;
  Block *blk;
} Builder;

Builder ir_builder(Kernel *k);                 /* inserts at the end of the kernel body */
Op *ir_const_i32(Builder *b, int64_t v);
Op *ir_const_i64(Builder *b, int64_t v);
Op *ir_const_f32(Builder *b, double v);
Op *ir_const_f64(Builder *b, double v);
Op *ir_const_bool(Builder *b, bool v);
Op *ir_block_id(Builder *b, int dim);
Op *ir_bin(Builder *b, OpKind kind, Op *x, Op *y);
Op *ir_un(Builder *b, OpKind kind, Op *x);
Op *ir_fma(Builder *b, Op *x, Op *y, Op *z);
Op *ir_cmp(Builder *b, CmpPred p, Op *x, Op *y);
Op *ir_select(Builder *b, Op *c, Op *x, Op *y);
Op *ir_cast(Builder *b, Type t, Op *x);
Op *ir_bitcast(Builder *b, Type t, Op *x);
Op *ir_load(Builder *b, Buf *buf, Op *idx);
void ir_store(Builder *b, Buf *buf, Op *idx, Op *val);
Op *ir_atomic_add(Builder *b, Buf *buf, Op *idx, Op *val);   /* returns the old value */
/* dst[di + c*ld + r] = r < rows ? src[si + r*ss + c] : 0 for r, c < IR_TRANSPOSE_N */
void ir_transpose(Builder *b, Buf *dst, Op *di, int64_t ld, Buf *src, Op *si, Op *ss, Op *rows);
void ir_prefetch(Builder *b, Buf *buf, Op *idx);
Op *ir_var(Builder *b, Op *init, const char *hint);
Op *ir_get(Builder *b, Op *var);
void ir_set(Builder *b, Op *var, Op *val);
void ir_barrier(Builder *b);

/* Structured ops return the op; build its body with a child builder. */
Op *ir_for(Builder *b, Op *lo, Op *hi, int64_t step, const char *hint, Builder *body);
Op *ir_if(Builder *b, Op *cond, Builder *then, Builder *els);
Op *ir_pfor(Builder *b, Axis axis, Op *extent, const char *hint, Builder *body);
Op *ir_reduce(Builder *b, Axis axis, RedKind red, Type t, Op *extent, const char *hint,
              Builder *body);
void ir_yield(Builder *b, Op *v);

/* Low-level: a new op appended at b (used by passes and the builder). */
Op *ir_append(Builder *b, OpKind kind, Type t);
Op *ir_op_new(Kernel *k, OpKind kind, Type t);   /* not inserted anywhere */
void ir_block_push(Kernel *k, Block *blk, Op *op);

/* ---- utilities ---- */
const char *ir_type_name(Type t);
const char *ir_op_name(OpKind k);
const char *ir_axis_name(Axis a);
const char *ir_red_name(RedKind r);
const char *ir_pred_name(CmpPred p);
bool ir_type_is_float(Type t);
bool ir_type_is_int(Type t);   /* i32/i64 */
int ir_type_bits(Type t);
int ir_op_arity(const Op *op);
bool ir_op_has_result(const Op *op);
void ir_number(Kernel *k);     /* renumber values in program order */

/* ---- printer (one uniform format for --emit ir and -d) ---- */
void ir_print(FILE *out, Kernel *k);

/* ---- verifier: returns 0, or -1 with a message "kernel NAME: %N: ..." in err ---- */
int ir_verify(Kernel *k, char *err, size_t cap);

#endif
