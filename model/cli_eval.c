/* cli_eval.c: `crisp eval` (accuracy, loss, achieved sparsity and head entropy on a
 * labelled set, as text or one JSON object) and `crisp predict` (each sentence's label
 * and probabilities). Both run a folder loaded by cli_model.c. */
#include "cli_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef CRISP_SHARED_DATA
#define CRISP_SHARED_DATA "../shared/data"
#endif

static const char USAGE_EVAL[] =
    "usage: crisp eval --model DIR [--data DIR|FILE.tsv] [options]\n"
    "\n"
    "Accuracy (count x/N), validation loss, per-layer achieved sparsity and per-head entropy\n"
    "on SST-2's dev.tsv. The attention settings come from DIR/crisp_attention.json (written\n"
    "by crisp train) unless given here; a plain Hugging Face folder evaluates dense.\n"
    "\n"
    "  --model DIR       Hugging Face folder (config.json, model.safetensors, vocab.txt)\n"
    "  --data DIR|FILE   a folder holding dev.tsv, or a labelled .tsv (default: the shared SST-2)\n"
    "  --select S        none | row_topk | head_quantile | layer_quantile\n"
    "  --sparsity S      one sparsity for every layer, or a comma list per layer\n"
    "  --keep-min K      keys every row keeps at least (default 1)\n"
    "  --batch N         batch size (default 32)\n"
    "  --max-len N       truncate sentences to N tokens (default 512)\n"
    "  --limit N         evaluate the first N rows only\n"
    "  --threads N       CPU threads\n"
    "  --impl I          crisp | ref\n"
    "  --json            print the result as one JSON object\n"
    "  -h, --help        this text\n";

static const char USAGE_PREDICT[] =
    "usage: crisp predict --model DIR [options] TEXT...\n"
    "\n"
    "Prints, per sentence, the predicted label and every label's probability.\n"
    "\n"
    "  --model DIR       Hugging Face folder (config.json, model.safetensors, vocab.txt)\n"
    "  --select S, --sparsity S, --keep-min K, --max-len N, --threads N, --impl I  as in eval\n"
    "  -h, --help        this text\n";

int cli_eval(int argc, char **argv) {
  const char *model = NULL, *data = NULL;
  long threads = 0, batch = 32, max_len = 512, limit = 0;
  bool json = false;
  AttnOpts ao = {0};
  for (int i = 0; i < argc; i++) {
    const char *v = NULL, *a = argv[i];
    bool miss = false;
    int rc;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(USAGE_EVAL, stdout);
      return 0;
    }
    if (!strcmp(a, "--json")) {
      json = true;
      continue;
    }
    if (cli_attn_flag(argc, argv, &i, &ao, "eval", &rc)) {
      if (rc)
        return rc;
      continue;
    }
    struct {
      const char *flag;
      long *dst, lo, hi;
    } const ints[] = {{"--threads", &threads, 0, 1024},
                      {"--batch", &batch, 1, 4096},
                      {"--max-len", &max_len, 2, 8192},
                      {"--limit", &limit, 0, 1000000000}};
    bool done = false;
    for (size_t k = 0; k < 4 && !done; k++)
      if (cli_opt_val(argc, argv, &i, ints[k].flag, &v, &miss)) {
        if (miss || !cli_parse_int(v, ints[k].lo, ints[k].hi, ints[k].dst))
          return cli_usage_error("eval", "%s: expected an integer in %ld..%ld", ints[k].flag,
                                 ints[k].lo, ints[k].hi);
        done = true;
      }
    if (done)
      continue;
    if (cli_opt_val(argc, argv, &i, "--model", &v, &miss)) {
      if (miss)
        return cli_usage_error("eval", "--model needs a folder");
      model = v;
    } else if (cli_opt_val(argc, argv, &i, "--data", &v, &miss)) {
      if (miss)
        return cli_usage_error("eval", "--data needs a folder or file");
      data = v;
    } else {
      return cli_usage_error("eval", "unknown %s \"%s\"", a[0] == '-' ? "option" : "argument", a);
    }
  }
  if (!model)
    return cli_usage_error("eval", "--model DIR is required");
  char path[1400], err[4096];
  struct stat st;
  if (!data) {
    const char *env = getenv("CRISP_DATA");
    snprintf(path, sizeof path, "%s/sst2/dev.tsv", env && *env ? env : CRISP_SHARED_DATA);
  } else if (stat(data, &st) == 0 && S_ISDIR(st.st_mode)) {
    snprintf(path, sizeof path, "%s/dev.tsv", data);
  } else {
    snprintf(path, sizeof path, "%s", data);
  }
  Sst2Set set;
  if (sst2_load(path, &set, err, sizeof err)) {
    fprintf(stderr, "crisp eval: %s\n", err);
    return 2;
  }
  if (!set.labeled) {
    sst2_free(&set);
    fprintf(stderr, "crisp eval: %s has no labels (a test split?)\n", path);
    return 2;
  }
  Loaded ld;
  int rc = cli_load_model("eval", model, (int)threads, (int)batch, (int)max_len, &ao, &ld, err,
                          sizeof err);
  EncodedSet enc = {0};
  if (!rc && encoded_set_build(ld.tok, &set, ld.m->max_len, (int)limit, &enc, err, sizeof err))
    rc = 2;
  EvalResult e = {0};
  if (!rc && train_evaluate(ld.m, &enc, (int)batch, &e, err, sizeof err))
    rc = 1;
  if (!rc) {
    int L = e.layers;
    if (json) {
      printf("{\"model\": \"%s\", \"data\": \"%s\", \"select\": \"%s\", \"accuracy\": %.6f, "
             "\"correct\": %d, \"total\": %d, \"count\": \"%d/%d\", \"val_loss\": %.6f, "
             "\"achieved_sparsity\": [",
             model, path, select_name(ld.m->attn.select), e.accuracy, e.correct, e.total,
             e.correct, e.total, e.loss);
      for (int l = 0; l < L; l++)
        printf("%s%.6f", l ? ", " : "", 1 - e.kept[l]);
      printf("]}\n");
    } else {
      printf("%s on %s: accuracy %.4f (%d/%d), val loss %.4f\n", model, path, e.accuracy,
             e.correct, e.total, e.loss);
      printf("attention: %s, keep_min %d, %s\n", select_name(ld.m->attn.select),
             ld.m->attn.keep_min, ld.m->attn.impl == ATTN_IMPL_CRISP ? "crisp kernels" : "reference");
      for (int l = 0; l < L; l++) {
        double mean_h = 0;
        for (int h = 0; h < e.heads; h++)
          mean_h += e.entropy[l * e.heads + h] / e.heads;
        printf("  layer %d: sparsity %.3f (target %.3f), mean head entropy %.3f nats\n", l,
               1 - e.kept[l], (double)ld.m->attn.sparsity[l], mean_h);
      }
    }
  } else {
    fprintf(stderr, "crisp eval: %s\n", err);
  }
  eval_result_free(&e);
  encoded_set_free(&enc);
  sst2_free(&set);
  cli_loaded_free(&ld);
  return rc;
}

int cli_predict(int argc, char **argv) {
  const char *model = NULL;
  long threads = 0, max_len = 512;
  AttnOpts ao = {0};
  const char **texts = calloc((size_t)argc + 1, sizeof *texts);
  int n = 0, rc = 0;
  bool only_texts = false;
  for (int i = 0; i < argc; i++) {
    const char *v = NULL, *a = argv[i];
    bool miss = false;
    if (only_texts || a[0] != '-' || !a[1]) {
      texts[n++] = a;
      continue;
    }
    if (!strcmp(a, "--")) {
      only_texts = true;
      continue;
    }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(USAGE_PREDICT, stdout);
      free(texts);
      return 0;
    }
    if (cli_attn_flag(argc, argv, &i, &ao, "predict", &rc)) {
      if (rc) {
        free(texts);
        return rc;
      }
      continue;
    }
    if (cli_opt_val(argc, argv, &i, "--model", &v, &miss)) {
      model = v;
    } else if (cli_opt_val(argc, argv, &i, "--threads", &v, &miss)) {
      if (!miss && !cli_parse_int(v, 0, 1024, &threads))
        miss = true;
    } else if (cli_opt_val(argc, argv, &i, "--max-len", &v, &miss)) {
      if (!miss && !cli_parse_int(v, 2, 8192, &max_len))
        miss = true;
    } else {
      free(texts);
      return cli_usage_error("predict", "unknown option \"%s\"", a);
    }
    if (miss) {
      free(texts);
      return cli_usage_error("predict", "%s needs a valid value", a);
    }
  }
  if (!model || n == 0) {
    free(texts);
    return cli_usage_error("predict",
                           !model ? "--model DIR is required" : "give at least one TEXT");
  }
  char err[4096];
  Loaded ld;
  int batch = n < 32 ? n : 32;
  rc = cli_load_model("predict", model, (int)threads, batch, (int)max_len, &ao, &ld, err,
                      sizeof err);
  TokBatch tb = {0};
  for (int at = 0; !rc && at < n; at += batch) {
    int cnt = n - at < batch ? n - at : batch;
    if (tok_encode_batch(ld.tok, texts + at, NULL, cnt, ld.m->max_len, &tb, err, sizeof err)) {
      rc = 2;
      break;
    }
    ModelRun run = {.train = false};
    if (model_forward(ld.m, tb.ids, tb.lengths, tb.batch, tb.seq_len, NULL, &run)) {
      snprintf(err, sizeof err, "%s", ld.m->err);
      rc = 1;
      tok_batch_free(&tb);
      break;
    }
    int K = ld.m->cfg.num_labels;
    for (int b = 0; b < cnt; b++) {
      const float *z = run.logits + (size_t)b * K;
      double mx = z[0], sum = 0;
      int best = 0;
      for (int k = 1; k < K; k++)
        if (z[k] > mx)
          mx = z[k], best = k;
      for (int k = 0; k < K; k++)
        sum += exp(z[k] - mx);
      printf("%s\t", ld.m->cfg.id2label[best]);
      for (int k = 0; k < K; k++)
        printf("%s%s %.4f", k ? "  " : "", ld.m->cfg.id2label[k], exp(z[k] - mx) / sum);
      printf("\t%s\n", texts[at + b]);
    }
    tok_batch_free(&tb);
  }
  if (rc)
    fprintf(stderr, "crisp predict: %s\n", err);
  cli_loaded_free(&ld);
  free(texts);
  return rc;
}
