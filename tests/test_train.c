/* test_train.c: the fine-tuning pipeline (model/train.h, model/optim.h).
 *
 *   - AdamW against a step computed by hand (decay and no decay), and the fused
 *     gradient scale (accumulation mean x clipping);
 *   - the linear schedule with and without warm-up;
 *   - budgets: re-centring (the mean equals the target, clipping holds), the first
 *     batch is uniform, the EMA, the list kind, error cases;
 *   - the config: unknown keys / wrong types name the file and key, --set, the
 *     resolved JSON reads back to the same hash;
 *   - checkpoints: a round trip, and a flipped byte / a truncated file / a foreign
 *     file / one of the older format is refused without touching the model;
 *   - whole runs on generated data with a tiny random model and one thread: the same
 *     seed gives bitwise-identical parameters, another seed does not; 3 steps +
 *     --resume 3 equals 6 straight; a stop request (what Ctrl-C sets) saves a
 *     checkpoint, returns 130, and resuming it ends bitwise where a straight run does.
 * With an argument (examples/configs), also checks the shipped run configurations.
 * Runs in a few seconds; writes only under a fresh temporary folder.
 *
 * This file holds AdamW, the schedule, the file helpers and main (the order the
 * tests run in); the rest is split by concern, see train_test.h. */
#define CHECK_SHARED
#define CHECK_OWNER
#include "check.h"
#include "train_test.h"
#include "train.h"

#include "../runtime/fsutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char g_tmp[256];

/* ---- AdamW and the schedule ------------------------------------------------------ */

static void test_adamw(void) {
  /* p = 1, lr 0.1, betas 0.9/0.999, eps 1e-8, weight decay 0.01; grads 0.5 then -1.
   * Step 1 by hand: p = 1 - 0.1*0.01 = 0.999; m = 0.05, v = 0.00025; m^ = 0.5,
   * v^ = 0.25; p -= 0.1 * 0.5 / (0.5 + 1e-8)  ->  0.899000002.
   * Step 2: m = -0.055, v = 0.00124975, m^ = -0.055/0.19, v^ = 0.00124975/0.001999
   *   ->  0.9347113542 (p decayed by 0.999 first). */
  AdamW o;
  CHECK(adamw_init(&o, 2, &(AdamWConfig){0.9, 0.999, 1e-8, 0.01}) == 0, "adamw_init");
  float p[2] = {1, 1}, g[2] = {0.5f, 0.5f};
  adamw_begin(&o);
  adamw_update(&o, p, g, 0, 1, true, 0.1, 1.0f);
  adamw_update(&o, p + 1, g + 1, 1, 1, false, 0.1, 1.0f);
  CHECK(fabs(p[0] - 0.899000002) < 1e-6, "AdamW step 1 with decay: %.9f", p[0]);
  CHECK(fabs(p[1] - 0.900000002) < 1e-6, "AdamW step 1 without decay: %.9f", p[1]);
  g[0] = -2.0f;   /* with gscale 0.5: an effective gradient of -1 */
  adamw_begin(&o);
  adamw_update(&o, p, g, 0, 1, true, 0.1, 0.5f);
  CHECK(fabs(p[0] - 0.9347113542) < 2e-6, "AdamW step 2: %.9f", p[0]);
  CHECK(o.t == 2, "step count %lld", (long long)o.t);
  adamw_free(&o);

  float gg[37];
  double ss = 0;
  for (int i = 0; i < 37; i++)
    gg[i] = (float)(i - 18) / 8, ss += (double)gg[i] * gg[i];
  CHECK(fabs(grad_norm(gg, 37) - sqrt(ss)) < 1e-12, "grad_norm");
  CHECK(clip_coef(10, 1) < 0.1 && clip_coef(10, 1) > 0.0999, "clip_coef %g", clip_coef(10, 1));
  CHECK(clip_coef(0.5, 1) == 1 && clip_coef(10, 0) == 1, "clip_coef no clip");
}

static void test_schedule(void) {
  CHECK(lr_linear(0, 100, 0, 1) == 1, "lr at 0");
  CHECK(fabs(lr_linear(50, 100, 0, 1) - 0.5) < 1e-15, "lr at 50");
  CHECK(fabs(lr_linear(99, 100, 0, 2e-5) - 2e-7) < 1e-20, "lr at 99");
  CHECK(lr_linear(100, 100, 0, 1) == 0 && lr_linear(150, 100, 0, 1) == 0, "lr past the end");
  CHECK(lr_linear(0, 100, 10, 1) == 0, "warm-up starts at 0");
  CHECK(fabs(lr_linear(5, 100, 10, 1) - 0.5) < 1e-15, "warm-up midway");
  CHECK(lr_linear(10, 100, 10, 1) == 1, "warm-up peak");
  CHECK(fabs(lr_linear(55, 100, 10, 1) - 0.5) < 1e-15, "decay after warm-up");
}


char *read_all(const char *path, size_t *n) {
  char *buf = NULL, err[256];
  if (rt_read_file(path, &buf, n, err, sizeof err))
    return NULL;
  return buf;
}

bool same_file(const char *a, const char *b) {
  size_t na, nb;
  char *x = read_all(a, &na), *y = read_all(b, &nb);
  bool same = x && y && na == nb && !memcmp(x, y, na);
  free(x);
  free(y);
  return same;
}


static void rm_rf(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/crisp_test_train_XXXXXX");
  if (!mkdtemp(g_tmp)) {
    perror("mkdtemp");
    return 1;
  }
  test_adamw();
  test_schedule();
  if (argc > 1)
    test_examples(argv[1]);
  test_budget();
  test_budget_entropy();
  test_config();
  test_checkpoint();
  test_param_layout();
  test_runs();
  test_run_dense_entropy();
  test_run_not_finite();
  test_run_failed();
  if (!check_failed)
    rm_rf(g_tmp);
  else
    fprintf(stderr, "kept %s for inspection\n", g_tmp);
  return check_summary();
}
