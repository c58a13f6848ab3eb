/* The IR interpreter: runs an unmapped kernel with its GPU mapping semantics.
 *
 * Why: every session has CPUs but few have a GPU, so GPU schedules (which thread
 * runs which index, where the barriers are, how warps reduce) are tested here.
 * Blocks run one after another; inside a block the parallel model of ir.h runs
 * hierarchically and sequentially: block-level code once, a pfor.block body for
 * threads t = 0..T-1 in turn, a pfor.warp body per warp, a pfor.lane body per lane
 * of the running warp. Nothing inside a thread context synchronises (barriers and
 * collectives live at block or warp level), so running threads one after another
 * is a legal GPU schedule; the race checker (interp_mem.c) flags every pair of
 * accesses whose order that schedule merely happened to pick.
 *
 * One environment: values live in one array indexed by op id. A parallel body
 * only writes the values it defines (SSA, lexical scope), and the verifier forbids
 * setting an outer var from a nested region, so thread t+1 simply overwrites
 * thread t's values after they went out of scope; each context thus gets its own
 * copy of the vars it declares.
 *
 * Reductions reproduce the mapped code's combination order (strided per-lane
 * partials, the shfl.bfly butterfly, warps combined in order) so float results
 * match the GPU bit for bit. Arithmetic: IEEE in the op's type (f32 in float,
 * never double), two's complement wrap for ints; see ir.h for CMP and CAST rules.
 *
 * Here: errors, the grid of blocks and the entry point; the ops and their
 * arithmetic run in interp_exec.c, memory and its checks in interp_mem.c.
 */
#include "interp_impl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---- */

static void put(Interp *in, size_t *n, const char *fmt, ...) {
  if (*n >= in->cap)
    return;
  va_list ap;
  va_start(ap, fmt);
  int r = vsnprintf(in->err + *n, in->cap - *n, fmt, ap);
  va_end(ap);
  if (r > 0)
    *n += (size_t)r;
}

/* "%N (load)" for a value; ops without one (ids are for values only) by what
 * they touch: "store o[%7]", "set %3", "barrier". */
static void describe(Interp *in, size_t *n, const Op *op) {
  if (ir_op_has_result(op))
    put(in, n, "%%%d (%s): ", op->id, ir_op_name(op->kind));
  else if (op->kind == OP_STORE)
    put(in, n, "store %s[%%%d]: ", op->buf->name, op->a[0]->id);
  else if (op->kind == OP_SET)
    put(in, n, "set %%%d: ", op->var->id);
  else
    put(in, n, "%s: ", ir_op_name(op->kind));
}

static _Noreturn void vfail(Interp *in, const Op *op, bool ctx, const char *fmt, va_list ap) {
  size_t n = 0;
  if (in->cap) {
    put(in, &n, "kernel %s: ", in->k->name);
    if (in->in_block) {
      put(in, &n, "block (%d,%d,%d)", in->bid[0], in->bid[1], in->bid[2]);
      if (ctx && in->lvl == LVL_THREAD)
        put(in, &n, " thread %d (warp %d lane %d)", in->tid, in->tid / 32, in->tid % 32);
      else if (ctx && in->lvl == LVL_WARP)
        put(in, &n, " warp %d", in->warp);
      put(in, &n, ": ");
    }
    if (op)
      describe(in, &n, op);
    if (n < in->cap)
      vsnprintf(in->err + n, in->cap - n, fmt, ap);
  }
  longjmp(in->jb, 1);
}

_Noreturn void interp_fail(Interp *in, const Op *op, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(in, op, true, fmt, ap);
}

_Noreturn void interp_fail_block(Interp *in, const Op *op, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(in, op, false, fmt, ap);
}

/* ---- driver ---- */

static void read_params(Interp *in, void *const *args) {
  Kernel *k = in->k;
  for (int p = 0; p < k->nparams; p++) {
    if (k->params[p].buf)
      continue;
    if (!args || !args[p])
      interp_fail(in, NULL, "no argument for parameter %s", k->params[p].name);
    Val *r = &in->params[p];
    switch (k->params[p].type) {
    case TY_BOOL: r->i = *(const bool *)args[p]; break;
    case TY_I32: r->i = *(const int32_t *)args[p]; break;
    case TY_I64: r->i = *(const int64_t *)args[p]; break;
    case TY_F32: r->f = *(const float *)args[p]; break;
    case TY_F64: r->d = *(const double *)args[p]; break;
    default: interp_fail(in, NULL, "parameter %s has no type", k->params[p].name);
    }
  }
}

static void run_block(Interp *in, int x, int y, int z) {
  in->bid[0] = x;
  in->bid[1] = y;
  in->bid[2] = z;
  in->blin = x + in->grid[0] * (y + in->grid[1] * z);
  in->in_block = true;
  in->lvl = LVL_BLOCK;
  in->warp = in->tid = 0;
  in->bepoch++;   /* nothing of an earlier block counts as ordered by epochs */
  mem_block_begin(in);
  interp_exec_block(in, &in->k->body);
  in->in_block = false;
}

static void run_grid(Interp *in, void *const *args, const int64_t *counts) {
  for (int d = 0; d < 3; d++)
    if (in->grid[d] < 0)
      interp_fail(in, NULL, "grid dim %d is negative (%d)", d, in->grid[d]);
  read_params(in, args);
  mem_setup(in, args, counts);
  traffic_begin(in);
  for (int z = 0; z < in->grid[2]; z++)
    for (int y = 0; y < in->grid[1]; y++)
      for (int x = 0; x < in->grid[0]; x++)
        run_block(in, x, y, z);
}

static int refuse(Kernel *k, char *err, size_t cap) {
  if (k->mapped) {
    snprintf(err, cap, "kernel %s: the interpreter runs unmapped kernels only (this one is "
                       "mapped for a target)", k->name);
    return -1;
  }
  char verr[512];
  if (ir_verify(k, verr, sizeof verr) == 0)
    return 0;
  size_t skip = strlen(k->name) + 9;   /* "kernel NAME: " */
  const char *why = strncmp(verr, "kernel ", 7) == 0 && strlen(verr) >= skip ? verr + skip : verr;
  snprintf(err, cap, "kernel %s: refusing to interpret a kernel that fails verification: %s",
           k->name, why);
  return -1;
}

int interp_run(Kernel *k, void *const *args, const int64_t *counts, const int32_t grid[3],
               const InterpOptions *opt, char *err, size_t cap) {
  return interp_run_traffic(k, args, counts, grid, opt, NULL, err, cap);
}

int interp_run_traffic(Kernel *k, void *const *args, const int64_t *counts,
                       const int32_t grid[3], const InterpOptions *opt, InterpTraffic *traffic,
                       char *err, size_t cap) {
  if (cap)
    err[0] = 0;
  if (refuse(k, err, cap))
    return -1;
  Interp *in = calloc(1, sizeof *in);
  Val *vals = calloc((size_t)k->next_id + 1, sizeof(Val));
  if (!in || !vals) {
    free(in);
    free(vals);
    snprintf(err, cap, "kernel %s: out of memory", k->name);
    return -1;
  }
  *in = (Interp){.k = k, .v = vals, .T = IR_WARP_SIZE * k->warps, .W = k->warps,
                 .traffic = traffic, .err = err, .cap = cap};
  in->opt = opt ? *opt : (InterpOptions){true, true};
  memcpy(in->grid, grid, sizeof in->grid);
  int rc = 0;
  if (setjmp(in->jb) == 0)
    run_grid(in, args, counts);
  else
    rc = -1;
  mem_release(in);
  traffic_release(in);
  free(vals);
  free(in);
  return rc;
}
