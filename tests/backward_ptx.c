/* backward_ptx.c: test_backward's suite d): PTX of both backward kernels through
 * ptxas -v for sm_90 and sm_80: assembles, no spills (on spills it also reports
 * whether the PTX without .maxntid is spill-free). Apart because it runs no kernel
 * and needs only ptxas (skipped without it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../compiler/emit.h"
#include "fsutil.h"
#include "ptxas_util.h"

#define CHECK_SHARED
#include "backward_test.h"
#include "check.h"

/* ---- d) PTX through ptxas ---- */

/* ptxas -v on ptx: *fns functions, *clean of them with no spill stores; the
 * output (when out != NULL) into out. Returns ptxas's exit status, or -1. */
static int run_ptxas(const char *ptxas, const char *arch, const char *ptx, size_t len, int *fns,
                     int *clean, char *out, size_t cap) {
  char path[96], cmd[1024], err[256];
  static int serial;
  snprintf(path, sizeof path, "/tmp/crisp_test_bwd_%d_%d.ptx", (int)getpid(), serial++);
  *fns = *clean = 0;
  if (rt_write_atomic(path, ptx, len, err, sizeof err)) {
    if (out)
      snprintf(out, cap, "%s", err);
    return -1;
  }
  snprintf(cmd, sizeof cmd, "%s -v -arch=%s %s -o /dev/null 2>&1", ptxas, arch, path);
  FILE *p = popen(cmd, "r");
  char *text = xcalloc(1 << 16, 1);
  size_t n = p ? fread(text, 1, (1 << 16) - 1, p) : 0;
  int rc = p ? pclose(p) : -1;
  text[n] = 0;
  *fns = count(text, "spill stores");
  *clean = count(text, " 0 bytes spill stores");
  if (getenv("CRISP_TEST_VERBOSE"))
    fputs(text, stdout);
  if (out)
    snprintf(out, cap, "%s", text);
  free(text);
  unlink(path);
  return rc;
}

/* A copy of ptx without its ".maxntid" lines. */
static char *strip_maxntid(const char *ptx) {
  char *out = xcalloc(strlen(ptx) + 1, 1), *o = out;
  for (const char *line = ptx; *line;) {
    const char *end = strchr(line, '\n');
    size_t n = end ? (size_t)(end - line + 1) : strlen(line);
    if (strncmp(line, ".maxntid", 8) != 0) {
      memcpy(o, line, n);
      o += n;
    }
    line += n;
  }
  return out;
}

static void ptxas_check(const char *ptxas, const Spec *s, Target tg) {
  char err[1 << 14];
  Module m = {0};
  TileConfig t = tile_resolve(s, TUNE_GPU);
  if (compile(&m, s, &t, MAP_GPU, err, sizeof err)) {
    CHECK(0, "compile for %s: %s", target_name(tg), err);
    ir_module_free(&m);
    return;
  }
  char *ptx = NULL;
  size_t len = 0;
  int ok = !emit_module(&m, tg, EMIT_ASM, &ptx, &len, err, sizeof err);
  CHECK(ok, "PTX for %s: %s", target_name(tg), err);
  if (ok && getenv("CRISP_TEST_PTX"))
    fputs(ptx, stdout);
  if (ok && ptxas) {
    const char *arch = tg == TARGET_SM90 ? "sm_90" : "sm_80";
    int fns, clean, rc = run_ptxas(ptxas, arch, ptx, len, &fns, &clean, err, sizeof err);
    char hint[160] = "";
    if (rc == 0 && clean < fns) {   /* is it ptxas trading registers for occupancy? */
      char *bare = strip_maxntid(ptx);
      int f2, c2;
      if (run_ptxas(ptxas, arch, bare, strlen(bare), &f2, &c2, NULL, 0) == 0)
        snprintf(hint, sizeof hint, "; without the .maxntid directive: %d of %d spill-free", c2,
                 f2);
      free(bare);
    }
    CHECK(rc == 0 && fns == 2 && clean == 2,
          "ptxas -arch=%s (select=%s causal=%d): rc %d, %d functions, %d spill-free%s:\n%s", arch,
          select_name(s->select), s->causal, rc, fns, clean, hint, err);
    printf("ptxas -arch=%s, select=%s causal=%d, tile %dx%d: %d kernels, %d without spills%s\n",
           arch, select_name(s->select), s->causal, t.rows, t.warps, fns, clean, hint);
  }
  free(ptx);
  ir_module_free(&m);
}

void ptx_suite(void) {
  const char *ptxas = find_ptxas();
  if (!ptxas)
    printf("ptxas not found (/usr/local/cuda/bin or PATH): PTX is emitted but not assembled\n");
  Spec a = make_spec(64, 512, SEL_ROW_TOPK, false, 1);
  Spec b = make_spec(64, 512, SEL_NONE, true, 1);
  Spec c = make_spec(128, 256, SEL_HEAD_QUANTILE, false, 1);
  const Spec *specs[] = {&a, &b, &c};
  for (int i = 0; i < 3; i++) {
    ptxas_check(ptxas, specs[i], TARGET_SM90);
    ptxas_check(ptxas, specs[i], TARGET_SM80);
  }
}
