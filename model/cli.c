/* cli.c: `crisp COMMAND`: the dispatch to train, eval, predict and report, and the
 * option helpers every command parses its arguments with (see cli.h and
 * docs/training.md). The commands are cli_train.c and cli_eval.c; the model folder
 * eval and predict load is cli_model.c. */
#include "cli_impl.h"

#include "report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE_MAIN[] =
    "usage: crisp COMMAND [options]\n"
    "\n"
    "Fine-tune and run DistilBERT/BERT sequence classifiers with crisp (sparse) attention.\n"
    "\n"
    "commands:\n"
    "  train     fine-tune on SST-2 (no --model: a small random model, a quick demo run)\n"
    "  eval      accuracy and loss of a model folder on SST-2's dev set\n"
    "  predict   label and probabilities for sentences\n"
    "  report    the paper's tables and figures from run folders\n"
    "\n"
    "`crisp COMMAND --help` lists each command's options. docs/training.md has the details.\n";

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "crisp %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n(see crisp %s --help)\n", cmd);
  return 2;
}

bool cli_opt_val(int argc, char **argv, int *i, const char *name, const char **val,
                 bool *missing) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (strncmp(a, name, n))
    return false;
  if (a[n] == '=') {
    *val = a + n + 1;
    return true;
  }
  if (a[n])
    return false;
  if (*i + 1 >= argc) {
    *missing = true;
    return true;
  }
  *val = argv[++*i];
  return true;
}

bool cli_parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

int crisp_cli(int argc, char **argv) {
  if (argc < 2) {
    fputs(USAGE_MAIN, stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    fputs(USAGE_MAIN, stdout);
    return 0;
  }
  if (!strcmp(cmd, "train"))
    return cli_train(argc - 2, argv + 2);
  if (!strcmp(cmd, "eval"))
    return cli_eval(argc - 2, argv + 2);
  if (!strcmp(cmd, "predict"))
    return cli_predict(argc - 2, argv + 2);
  if (!strcmp(cmd, "report"))
    return report_cli(argc - 2, argv + 2);
  fprintf(stderr, "crisp: unknown command \"%s\"\n\n%s", cmd, USAGE_MAIN);
  return 2;
}
