/* Internals shared by the interpreter's parts: interp.c (errors, the grid of
 * blocks, the entry point), interp_exec.c (scalar arithmetic, ops, parallel
 * contexts, reductions) and interp_mem.c (buffers, bounds, race and
 * uninitialised-read tracking). Not part of the public API (see interp.h). */
#ifndef CRISP_INTERP_IMPL_H
#define CRISP_INTERP_IMPL_H

#include "interp.h"
#include "passes.h"

#include <setjmp.h>

/* A runtime value: ints and bools in i (i32 sign-extended, bool 0/1), f32 in f,
 * f64 in d. */
typedef union Val {
  int64_t i;
  double d;
  float f;
} Val;

/* Which kind of code runs: block-level (all threads, uniform), warp-level (the 32
 * lanes of warp `warp`, uniform) or one thread `tid`. */
typedef enum { LVL_BLOCK, LVL_WARP, LVL_THREAD } Level;

/* Threads that made one kind of access to an element since its last write, in
 * summary: t1 (-1 none), t2 another one (-1 none), the warp of all of them (-1 if
 * several warps), the block epoch of the latest access and that warp's epoch at it. */
typedef struct Accessors {
  int32_t t1, t2;
  int32_t warp;
  uint32_t ep, wep;
} Accessors;

/* Per-element access history for race and uninitialised-read checks. Epochs:
 * bepoch counts barriers (and blocks), wepoch[w] counts warp w's sync points; an
 * access is ordered before the present one if it was made by the same thread, in
 * an older block epoch, or by the same warp in an older warp epoch. Atomic adds
 * are not ordered with each other but never conflict with each other; against
 * plain accesses they count as writes. */
typedef struct Shadow {
  int32_t w;          /* last (plain) writer thread; -1: none (unwritten in this block) */
  int32_t wblock;     /* global: linear id of the writer's block; -1 none */
  uint32_t wep, wwep; /* block epoch and writer's warp epoch at the write */
  Accessors rd;       /* readers since the write */
  Accessors at;       /* atomic adders since the write */
  int32_t rblock;     /* global: block that read it (-1 none, -2 several) */
  int32_t ablock;     /* global: block that added to it atomically (-1 none, -2 several) */
} Shadow;

typedef struct Mem {
  Buf *buf;
  char *data;         /* global: the caller's; shared: one copy; local: T copies */
  int64_t n;          /* element count (per thread for local arrays) */
  int esize;
  Shadow *sh;         /* shared (always), written globals (when checking races) */
  uint8_t *written;   /* local: per thread copy, when checking uninitialised reads */
} Mem;

typedef struct InterpTrafficState InterpTrafficState;

typedef struct Interp {
  Kernel *k;
  InterpOptions opt;
  Val *v;             /* values by op id (one environment, see interp.c) */
  Val params[32];
  Mem mem[32];        /* by buffer id */
  int T, W;
  int32_t grid[3], bid[3];
  int32_t blin;       /* linear block id */
  bool in_block;      /* a block is running (error messages name it) */
  Level lvl;
  int warp, tid;
  uint32_t bepoch, wepoch[32];
  InterpTraffic *traffic;   /* where the traffic model adds (NULL: not counted) */
  InterpTrafficState *tr;   /* its records */
  char *err;
  size_t cap;
  jmp_buf jb;
} Interp;

/* Report an error and unwind to interp_run. interp_fail names the running
 * context (block, warp or thread); interp_fail_block only the block. */
_Noreturn void interp_fail(Interp *in, const Op *op, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
_Noreturn void interp_fail_block(Interp *in, const Op *op, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* interp_exec.c: runs a block's ops in the current context. */
void interp_exec_block(Interp *in, const Block *blk);

void mem_setup(Interp *in, void *const *args, const int64_t *counts);
void mem_block_begin(Interp *in);
void mem_release(Interp *in);
Val mem_load(Interp *in, const Op *op, int64_t idx);                      /* op->buf[idx] */
Val mem_load_from(Interp *in, const Op *op, const Buf *buf, int64_t idx); /* buf[idx] */
void mem_store(Interp *in, const Op *op, int64_t idx, Val val);
Val mem_atomic_add(Interp *in, const Op *op, int64_t idx, Val val);   /* returns the old value */

/* interp_traffic.c: the traffic model (InterpTraffic). traffic_note records one
 * access of m[idx]; traffic_thread marks a thread (re)entering a parallel region;
 * traffic_flush ends a lane- or thread-parallel region, turning its records into
 * requests. */
void traffic_begin(Interp *in);
void traffic_release(Interp *in);
void traffic_thread(Interp *in);
void traffic_note(Interp *in, const Op *op, const Mem *m, int64_t idx, bool store);
void traffic_flush(Interp *in);

#endif
