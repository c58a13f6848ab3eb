/* train_config.c: test_train's run configurations: unknown keys / wrong types name
 * the file and key, --set, the resolved JSON reads back to the same hash, and every
 * shipped example (examples/configs) loads with the paper's hyper-parameters. Apart
 * because it reads and writes only configuration files. */
#define CHECK_SHARED
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

/* ---- config ------------------------------------------------------------------------ */

static void write_text(const char *path, const char *text) {
  char err[256];
  CHECK(rt_write_atomic(path, text, strlen(text), err, sizeof err) == 0, "%s", err);
}

void test_config(void) {
  char path[512], err[1024];
  TrainConfig c;
  snprintf(path, sizeof path, "%s/bad.json", g_tmp);
  write_text(path, "{\"name\": \"x\", \"budget\": {\"kind\": \"adaptive\", \"tagret\": 0.8}}");
  train_config_defaults(&c);
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, path) &&
            strstr(err, "unknown key \"budget.tagret\""),
        "unknown key: %s", err);
  write_text(path, "{\"lr\": \"fast\"}");
  train_config_defaults(&c);
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, "\"lr\"") &&
            strstr(err, "a number"),
        "wrong type: %s", err);
  write_text(path, "{\"batch_size\": 16.5}");
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, "integer"), "%s", err);
  write_text(path, "{\"select\": \"top\"}");
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, "row_topk"), "%s", err);
  write_text(path, "{\"budget\": {\"target\": 1.5}}");
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, "outside"), "%s", err);
  write_text(path, "{\"lr\": 1e-5,\n \"epochs\": }");
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, ":2:"), "bad JSON: %s",
        err);
  /* text after the object, and a NUL byte, are errors at their place, not ignored */
  write_text(path, "{\"lr\": 1e-5}\n x");
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, ":2:2: unexpected text"),
        "trailing text: %s", err);
  write_text(path, "{\"lr\": 1e-5} \n");
  CHECK(train_config_load(path, &c, err, sizeof err) == 0, "trailing blanks: %s", err);
  FILE *f = fopen(path, "wb");
  fwrite("{\"name\": \"a\0b\"}", 1, 15, f);
  fclose(f);
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, ":1:12: NUL byte"),
        "NUL: %s", err);
  CHECK(train_config_set(&c, "batch_size=4x", err, sizeof err) == -1 &&
            strstr(err, "\"batch_size\": expected an integer"), "--set 4x: %s", err);
  CHECK(train_config_set(&c, "max_steps=1 2", err, sizeof err) == -1, "--set '1 2': %s", err);

  train_config_defaults(&c);
  CHECK(train_config_set(&c, "budget.entropy=dense", err, sizeof err) == 0 &&
            c.budget.entropy == BUDGET_ENTROPY_DENSE, "budget.entropy: %s", err);
  CHECK(train_config_set(&c, "budget.entropy=full", err, sizeof err) != 0 &&
            strstr(err, "budget.entropy") && strstr(err, "dense"), "bad budget.entropy: %s", err);
  c.budget.entropy = BUDGET_ENTROPY_KEPT;
  CHECK(train_config_set(&c, "budget.target=0.6", err, sizeof err) == 0 && c.budget.target == 0.6,
        "--set number: %s", err);
  CHECK(train_config_set(&c, "name=run-1", err, sizeof err) == 0 && !strcmp(c.name, "run-1"),
        "--set bare string: %s", err);
  CHECK(train_config_set(&c, "betas=[0.8,0.99]", err, sizeof err) == 0 && c.beta2 == 0.99,
        "--set array: %s", err);
  CHECK(train_config_set(&c, "nope=1", err, sizeof err) == -1 && strstr(err, "nope"), "%s", err);
  c.select = SEL_NONE;
  CHECK(train_config_check(&c, "x", err, sizeof err) == -1 && strstr(err, "dense"),
        "select none with a sparse budget: %s", err);

  /* the resolved form reads back to the same configuration */
  train_config_defaults(&c);
  c.budget.kind = BUDGET_LIST, c.budget.n_list = 2, c.budget.list[0] = 0.25, c.budget.list[1] = 0.7;
  c.lr = 3.3e-5, c.drop_attention = 0.05;
  snprintf(c.model, sizeof c.model, "/some/model");
  char *json = train_config_json(&c);
  snprintf(path, sizeof path, "%s/resolved", g_tmp);
  mkdir(path, 0777);
  snprintf(path, sizeof path, "%s/resolved/config.json", g_tmp);
  write_text(path, json);
  free(json);
  TrainConfig back;
  snprintf(path, sizeof path, "%s/resolved", g_tmp);
  CHECK(train_config_from_run(path, &back, err, sizeof err) == 0, "%s", err);
  CHECK(train_config_hash(&back) == train_config_hash(&c) && back.budget.list[1] == 0.7 &&
            back.drop_attention == 0.05 && back.drop_hidden == -1,
        "resolved config round trip");
  back.max_steps = 99;   /* resumable keys leave the hash alone */
  CHECK(train_config_hash(&back) == train_config_hash(&c), "max_steps is resumable");
  back.lr = 1e-4;
  CHECK(train_config_hash(&back) != train_config_hash(&c), "lr is not");
}



/* Every example config (examples/configs) loads, passes the checks and is named after its file. */
void test_examples(const char *dir) {
  const char *names[] = {"baseline", "uniform_sparse", "light_sparse", "aggressive_sparse",
                         "uniform_sparse_rowtopk", "light_sparse_rowtopk",
                         "aggressive_sparse_rowtopk", "per_layer_list"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char path[1024], err[1024];
    snprintf(path, sizeof path, "%s/%s.json", dir, names[i]);
    TrainConfig c;
    train_config_defaults(&c);
    int rc = train_config_load(path, &c, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc)
      continue;
    CHECK(train_config_check(&c, path, err, sizeof err) == 0, "%s", err);
    CHECK(!strcmp(c.name, names[i]), "%s: name %s", path, c.name);
    bool rowtopk = strstr(names[i], "rowtopk") != NULL;
    if (!strcmp(names[i], "baseline"))
      CHECK(c.select == SEL_NONE, "baseline is dense");
    else
      CHECK(c.select == (rowtopk ? SEL_ROW_TOPK : SEL_HEAD_QUANTILE), "%s: select", names[i]);
    if (strstr(names[i], "light"))
      CHECK(c.budget.kind == BUDGET_ADAPTIVE && c.budget.target == 0.6, "%s: budget", names[i]);
    if (strstr(names[i], "aggressive"))
      CHECK(c.budget.kind == BUDGET_ADAPTIVE && c.budget.target == 0.8, "%s: budget", names[i]);
    if (strstr(names[i], "uniform"))
      CHECK(c.budget.kind == BUDGET_UNIFORM && c.budget.target == 0.8, "%s: budget", names[i]);
    /* the paper's hyper-parameters */
    CHECK(c.lr == 2e-5 && c.batch_size == 16 && c.grad_accum == 4 && c.epochs == 3 &&
              c.max_len == 512 && c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8,
          "%s: the paper's hyper-parameters", names[i]);
  }
}
