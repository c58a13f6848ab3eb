/* backward_ptx.c: test_backward's suite d): PTX of both backward kernels through
 * ptxas -v for sm_90 and sm_80, at the default tile and at rows 16 and 64 with one
 * warp: assembles, no spills (on spills it also reports whether the PTX without
 * .maxntid is spill-free); prints the registers and shared bytes. Apart because it runs no kernel
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

/* "Used N registers" of each function in ptxas -v output, as "N, M" into out. */
static void registers(const char *text, char *out, size_t cap) {
  size_t n = 0;
  out[0] = 0;
  for (const char *p = text; (p = strstr(p, "Used ")) && n + 16 < cap; p++) {
    int r;
    if (sscanf(p, "Used %d registers", &r) == 1)
      n += (size_t)snprintf(out + n, cap - n, "%s%d", n ? ", " : "", r);
  }
}

static void ptxas_check(const char *ptxas, const Spec *s, Target tg, TileConfig t) {
  char err[1 << 14];
  Module m = {0};
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
          "ptxas -arch=%s (select=%s causal=%d, tile %dx%d): rc %d, %d functions, %d "
          "spill-free%s:\n%s", arch, select_name(s->select), s->causal, t.rows, t.warps, rc, fns,
          clean, hint, err);
    char regs[64];
    registers(err, regs, sizeof regs);
    printf("ptxas -arch=%s, select=%s causal=%d d=%d, tile %dx%d: %d kernels, %d without spills%s; "
           "registers %s; shared %lld bytes\n", arch, select_name(s->select), s->causal,
           s->head_dim, t.rows, t.warps, fns, clean, hint, regs,
           (long long)attention_bwd_shared_bytes(s, &t));
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
  /* the default tile, and the forward's best tiles of the last H100 run (16x1 at
   * n = 128, 64x1 at n = 512: the dkdv kernel stages 16 rows there) */
  static const TileConfig tiles[] = {{8, 4, SCHED_WARP}, {16, 1, SCHED_WARP},
                                     {64, 1, SCHED_WARP}};
  for (int i = 0; i < 3; i++)
    for (int ti = 0; ti < (i == 0 ? 3 : 1); ti++) {
      TileConfig t = ti ? tiles[ti] : tile_resolve(specs[i], TUNE_GPU);
      ptxas_check(ptxas, specs[i], TARGET_SM90, t);
      ptxas_check(ptxas, specs[i], TARGET_SM80, t);
    }
}
