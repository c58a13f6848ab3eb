/* synth.c: a small synthetic sentiment data set in SST-2's TSV format, for machines
 * without the shared GLUE copy. Sentences are templated movie-review clauses:
 *     SUBJECT VERB [not|never] [INTENSIFIER] ADJECTIVE [, but SUBJECT VERB ... ADJECTIVE] .
 * The label is the polarity of the last clause's adjective, flipped by a negation
 * (so a bag of words is not quite enough: the model has to use order a little). */
#include "train.h"

#include "rng.h"

#include "../runtime/fsutil.h"

#include <stdlib.h>
#include <string.h>

static const char *const POS[] = {"good",     "great",    "wonderful", "brilliant", "charming",
                                  "moving",   "funny",    "delightful", "gorgeous", "witty",
                                  "superb",   "touching", "beautiful", "engaging",  "fresh",
                                  "smart"};
static const char *const NEG[] = {"bad",     "dull",    "boring",      "awful",    "tedious",
                                  "clumsy",  "lifeless", "bland",      "annoying", "terrible",
                                  "weak",    "flat",    "predictable", "stupid",   "messy",
                                  "shallow"};
static const char *const SUBJ[] = {"the movie", "the film",   "this picture", "the story",
                                   "the acting", "the script", "the cast",     "the ending",
                                   "the soundtrack", "the dialogue", "the plot", "the director"};
static const char *const VERB[] = {"is", "was", "feels", "seems", "remains"};
static const char *const INTENS[] = {"very", "really", "quite", "truly", "rather", "so"};
static const char *const NEGW[] = {"not", "never"};
static const char *const EXTRA[] = {"but", ",", ".", "and", "'", "s"};

#define COUNT(a) ((int)(sizeof a / sizeof *a))

static int pick(uint64_t *s, int n) { return (int)(splitmix64(s) % (uint64_t)n); }

/* Appends one clause to buf; returns its polarity (1 positive). */
static int clause(uint64_t *s, char *buf, size_t cap) {
  size_t n = strlen(buf);
  int pos = pick(s, 2);
  int neg = pick(s, 4) == 0;
  int inten = pick(s, 2);
  const char *adj = pos ? POS[pick(s, COUNT(POS))] : NEG[pick(s, COUNT(NEG))];
  snprintf(buf + n, cap - n, "%s %s %s%s%s%s%s", SUBJ[pick(s, COUNT(SUBJ))],
           VERB[pick(s, COUNT(VERB))], neg ? NEGW[pick(s, 2)] : "", neg ? " " : "",
           inten ? INTENS[pick(s, COUNT(INTENS))] : "", inten ? " " : "", adj);
  return pos ^ neg;
}

static int write_set(const char *path, int rows, uint64_t seed, char *err, size_t cap) {
  size_t room = (size_t)rows * 160 + 64, len = 0;
  char *out = malloc(room);
  if (!out) {
    snprintf(err, cap, "%s: out of memory", path);
    return -1;
  }
  len += (size_t)snprintf(out, room, "sentence\tlabel\n");
  uint64_t s = seed;
  for (int i = 0; i < rows; i++) {
    char line[160] = "";
    int label = clause(&s, line, sizeof line);
    if (pick(&s, 3) == 0) {
      strcat(line, " , but ");
      label = clause(&s, line, sizeof line);
    }
    len += (size_t)snprintf(out + len, room - len, "%s . \t%d\n", line, label);
  }
  int rc = rt_write_atomic(path, out, len, err, cap);
  free(out);
  return rc;
}

int synth_sst2(const char *dir, int n_train, int n_dev, uint64_t seed, char *err, size_t cap) {
  if (rt_mkdirs(dir, err, cap))
    return -1;
  char path[1200];
  snprintf(path, sizeof path, "%s/train.tsv", dir);
  if (write_set(path, n_train, seed * 2 + 1, err, cap))
    return -1;
  snprintf(path, sizeof path, "%s/dev.tsv", dir);
  if (write_set(path, n_dev, seed * 2 + 2, err, cap))
    return -1;
  /* the vocabulary: BERT's special tokens, then every word once */
  const char *const *lists[] = {POS, NEG, VERB, INTENS, NEGW, EXTRA};
  int counts[] = {COUNT(POS), COUNT(NEG), COUNT(VERB), COUNT(INTENS), COUNT(NEGW), COUNT(EXTRA)};
  char vocab[4096] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nthis\n";
  for (int k = 0; k < 6; k++)
    for (int i = 0; i < counts[k]; i++) {
      strcat(vocab, lists[k][i]);
      strcat(vocab, "\n");
    }
  for (int i = 0; i < COUNT(SUBJ); i++) {
    const char *w = strchr(SUBJ[i], ' ') + 1;   /* "the movie" -> "movie" */
    strcat(vocab, w);
    strcat(vocab, "\n");
  }
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  return rt_write_atomic(path, vocab, strlen(vocab), err, cap);
}
