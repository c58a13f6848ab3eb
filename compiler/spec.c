/* spec.c: a Spec's defaults, its canonical text and hash.
 *
 * The canonical text is itself a valid spec (every key, fixed order, doubles as %.17g
 * so they read back exactly); spec_hash is FNV-1a 64 over it. Kernel caches and
 * manifests key on the hash, so this format changes only on purpose. */
#include "spec_impl.h"

#include <stdio.h>
#include <string.h>

void spec_defaults(Spec *s) {
  memset(s, 0, sizeof *s);
  s->head_dim = 64;
  s->max_seq = 512;
  s->dtype = DTYPE_F32;
  s->sparsity = 0.0;
  s->select = SEL_ROW_TOPK;
  s->keep_min = 1;
  s->causal = false;
  s->dropout = 0.0;
  s->backward = false;
  s->tile = (TileSpec){.is_auto = true};
}

static const char *yes_no(bool b) { return b ? "true" : "false"; }

void spec_canonical(const Spec *s, char *buf, size_t cap) {
  char tile[96];
  if (cap == 0)
    return;
  if (s->tile.is_auto)
    snprintf(tile, sizeof tile, "tile = auto");
  else
    snprintf(tile, sizeof tile, "tile { rows = %d, cols = %d, warps = %d }", s->tile.rows,
             s->tile.cols, s->tile.warps);
  snprintf(buf, cap,
           "attention %.63s {\n"
           "  head_dim = %d\n"
           "  max_seq = %d\n"
           "  dtype = %s\n"
           "  sparsity = %.17g\n"
           "  select = %s\n"
           "  keep_min = %d\n"
           "  causal = %s\n"
           "  dropout = %.17g\n"
           "  backward = %s\n"
           "  %s\n"
           "}\n",
           s->name, s->head_dim, s->max_seq, dtype_name(s->dtype), s->sparsity,
           select_name(s->select), s->keep_min, yes_no(s->causal), s->dropout,
           yes_no(s->backward), tile);
}

uint64_t spec_hash(const Spec *s) {
  char buf[SPEC_CANONICAL_MAX];
  uint64_t h = 0xcbf29ce484222325u; /* FNV-1a 64 offset basis */
  spec_canonical(s, buf, sizeof buf);
  for (const unsigned char *p = (const unsigned char *)buf; *p; p++) {
    h ^= *p;
    h *= 0x100000001b3u; /* FNV-1a 64 prime */
  }
  return h;
}
