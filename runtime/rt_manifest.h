/* rt_manifest.h: the kernel manifest read back (the runtime's side of
 * compiler/manifest.c), so a backend can launch kernels with no compiler present.
 *
 * A manifest names each kernel, its parameters (type and role), its launch rule
 * (grid dim d = ceil(product of up to two i32 parameters / div)), threads per block
 * and static shared memory, plus the spec and tile it was built from. Parsing is
 * strict: a missing field, a wrong type or an out-of-range value is an error that
 * names the field, never a crash. Needs cJSON, not LLVM. */
#ifndef CRISP_RT_MANIFEST_H
#define CRISP_RT_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../compiler/spec.h"

typedef enum { RT_T_I32, RT_T_I64, RT_T_F32, RT_T_F64 } RtType;
typedef enum { RT_ROLE_IN, RT_ROLE_OUT, RT_ROLE_INOUT, RT_ROLE_SCALAR } RtRole;

enum { RT_MAX_PARAMS = 32, RT_MAX_KERNELS = 16 };

typedef struct RtParam {
  char name[32];
  bool is_buf;     /* a global buffer (args[i] points to its device pointer) */
  RtType type;     /* element type of a buffer, or the scalar's type */
  RtRole role;
} RtParam;

typedef struct RtKernelInfo {
  char name[96];
  int threads;               /* per block on the GPU (32 * warps) */
  int64_t shared_bytes;      /* static shared memory per block */
  int grid_params[3][2];     /* parameter indices, -1 = unused */
  int grid_div[3];
  RtParam params[RT_MAX_PARAMS];
  int nparams;
} RtKernelInfo;

typedef struct RtManifest {
  int format;
  char compiler[64], llvm[32], target[16], spec_hash[24];
  Spec spec;                 /* reconstructed (tile = auto; see tile_rows/warps) */
  int tile_rows, tile_warps;
  RtKernelInfo kernels[RT_MAX_KERNELS];
  int nkernels;
} RtManifest;

/* Parses manifest JSON text. Returns 0, or -1 with a message in err. */
int rt_manifest_parse(const char *text, size_t len, RtManifest *out, char *err, size_t cap);
/* Reads and parses a file (err names the path). */
int rt_manifest_load(const char *path, RtManifest *out, char *err, size_t cap);

/* Whether PTX text holds every kernel of the manifest with the same parameter list
 * (count, and 4 or 8 bytes each): a kernel launched with another list reads garbage
 * pointers on the GPU, an illegal address at best. 0, or -1 with err naming the
 * kernel and parameter. Only the text is read: no driver needed. */
int rt_manifest_check_ptx(const RtManifest *m, const char *ptx, size_t len, char *err,
                          size_t cap);

/* The kernel called name, or NULL. */
const RtKernelInfo *rt_manifest_kernel(const RtManifest *m, const char *name);
/* Index of parameter name in a kernel, or -1. */
int rt_param_index(const RtKernelInfo *k, const char *name);
/* Evaluates the launch rule from kernelParams-style args (see ir.h). */
void rt_grid(const RtKernelInfo *k, void *const *args, int32_t grid[3]);

const char *rt_type_name(RtType t);

#endif
