/* Passes over crisp IR. Each takes a kernel, rewrites it in place and returns 0,
 * or -1 with a message in err. The driver runs them in this order:
 *   verify -> simplify -> map(target) -> simplify -> verify
 * and `-d PASS` prints the kernel after PASS in the printer's format. */
#ifndef CRISP_PASSES_H
#define CRISP_PASSES_H

#include "ir.h"

typedef enum { MAP_NONE, MAP_GPU, MAP_CPU } MapTarget;

/* Constant folding, algebraic identities (x+0, x*1, x*0 for ints), dead pure ops. */
int ir_simplify(Kernel *k, char *err, size_t cap);

/* Rewrite pfor/reduce/barrier into the target's primitive ops (see ir.h). */
int ir_map(Kernel *k, MapTarget target, char *err, size_t cap);

/* verify -> simplify -> map(target) -> simplify -> verify (MAP_NONE: no map and no
 * second simplify), stopping at the first pass that fails. */
int ir_run_passes(Kernel *k, MapTarget target, char *err, size_t cap);

/* Replace every use of `from` with `to` in the kernel. */
void ir_replace_uses(Kernel *k, Op *from, Op *to);

/* Threads per warp on the GPU mapping, as the interpreter and lowering assume. */
enum { IR_WARP_SIZE = 32 };

#endif
