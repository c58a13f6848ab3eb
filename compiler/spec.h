/* spec.h: the spec language front end. A spec file names one attention kernel family:
 *
 *     attention crisp80 {
 *       head_dim = 64
 *       sparsity = 0.8
 *       tile     = auto      # or  tile { rows = 64, cols = 64, warps = 4 }
 *     }
 *
 * spec_parse turns a file's text into a checked Spec (every key in range, cross-key
 * rules hold) or a Diag naming file:line:col; it never crashes, whatever the bytes.
 * spec_override applies a command-line "-D key=value" with the same checks.
 * spec_canonical/spec_hash give the canonical text and its hash (cache keys,
 * manifests). The language itself is documented in docs/spec.md. */
#ifndef CRISP_SPEC_H
#define CRISP_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"

typedef enum { SEL_NONE, SEL_ROW_TOPK, SEL_HEAD_QUANTILE, SEL_LAYER_QUANTILE } SelectKind;
typedef enum { DTYPE_F32, DTYPE_BF16, DTYPE_F16 } DType;

/* rows: query rows per block; cols: key tile; warps: warps per block. When is_auto,
 * rows/cols/warps are 0 and the autotuner (or a default) picks them. */
typedef struct {
  bool is_auto;
  int rows, cols, warps;
} TileSpec;

typedef struct Spec {
  char name[64];       /* identifier after `attention` (at most 63 bytes) */
  int head_dim;        /* 8..256, multiple of 8; default 64 */
  int max_seq;         /* 1..8192; default 512 */
  DType dtype;         /* only f32 is accepted for now; default f32 */
  double sparsity;     /* [0, 1); default 0.0 (a run-time argument may override it) */
  SelectKind select;   /* default row_topk */
  int keep_min;        /* 1..max_seq; default 1 */
  bool causal;         /* default false */
  double dropout;      /* [0, 1); default 0.0 */
  bool backward;       /* default false */
  TileSpec tile;       /* default auto; else rows 1..64 and cols 16..512 powers of two,
                          warps 1..16, rows a multiple of warps */
} Spec;

enum { SPEC_CANONICAL_MAX = 512 }; /* spec_canonical never needs more than this */

/* Every key at its default; name is "". */
void spec_defaults(Spec *s);

/* Parses one spec file's text (len bytes, NUL not needed). Returns 0 and fills *out on
 * success; on error returns -1, fills *d and leaves *out untouched. */
int spec_parse(const char *file, const char *text, size_t len, Spec *out, Diag *d);

/* Applies a -D override "key=value" (e.g. "sparsity=0.5", "tile={rows=8,cols=64,warps=4}")
 * with the same checks as in a file, then re-checks the cross-key rules. On error
 * returns -1, leaves *s untouched and reports at file "<-D>", line 1, the column of
 * the offending text within key_eq_value. */
int spec_override(Spec *s, const char *key_eq_value, Diag *d);

/* Canonical text: a valid spec with every key, in a fixed order, doubles as %.17g.
 * spec_hash is FNV-1a 64 of that text. Equal specs give equal text and hash. */
void spec_canonical(const Spec *s, char *buf, size_t cap);
uint64_t spec_hash(const Spec *s);

const char *select_name(SelectKind k); /* "none", "row_topk", ... ("?" if out of range) */
const char *dtype_name(DType t);       /* "f32", "bf16", "f16" */

#endif
