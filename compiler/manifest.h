/* The manifest: a JSON description written beside a PTX file, enough for a runtime
 * to launch its kernels without the compiler (names, parameters with types and
 * roles, launch geometry rule, threads, shared memory, tile, spec and its hash). */
#ifndef CRISP_MANIFEST_H
#define CRISP_MANIFEST_H

#include "../ir/ir.h"
#include "../templates/templates.h"
#include "spec.h"
#include "target.h"

/* Returns a malloc'd JSON text, or NULL when out of memory. */
char *manifest_json(const Spec *s, const TileConfig *t, Target target, const Module *m);

/* X.ptx -> X.manifest.json (malloc'd). */
char *manifest_path_for(const char *output_path);

#endif
