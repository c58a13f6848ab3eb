/* train_data.c: a data set as training and evaluation consume it: every row tokenized
 * once (EncodedSet), rows gathered into batches padded to their longest row, and the
 * seeded shuffles that order them. Apart from the loop because evaluation (train_eval.c,
 * `crisp eval`) reads the same sets and batches. */
#include "train_impl.h"

#include "rng.h"

#include <stdlib.h>
#include <string.h>

/* idx = a permutation of 0..n-1 drawn from seed (Fisher-Yates). */
void train_permutation(int *idx, int n, uint64_t seed) {
  uint64_t s = seed;
  for (int i = 0; i < n; i++)
    idx[i] = i;
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(splitmix64(&s) % (uint64_t)(i + 1));
    int t = idx[i];
    idx[i] = idx[j], idx[j] = t;
  }
}

/* ---- encoded data ----------------------------------------------------------------- */

int encoded_set_build(const Tokenizer *t, const Sst2Set *s, int max_len, int limit,
                      EncodedSet *out, char *err, size_t cap) {
  memset(out, 0, sizeof *out);
  int n = limit > 0 && limit < s->n ? limit : s->n;
  size_t room = (size_t)n * 24 + (size_t)max_len, used = 0;
  out->offset = malloc(((size_t)n + 1) * sizeof *out->offset);
  out->length = malloc(((size_t)n + 1) * sizeof *out->length);
  out->label = malloc(((size_t)n + 1) * sizeof *out->label);
  out->ids = malloc(room * sizeof *out->ids);
  int32_t *row = malloc((size_t)max_len * sizeof *row);
  if (!out->offset || !out->length || !out->label || !out->ids || !row)
    goto oom;
  for (int i = 0; i < n; i++) {
    int len;
    char e[256];
    if (tok_encode(t, s->rows[i].text, s->rows[i].len, max_len, row, &len, e, sizeof e)) {
      snprintf(err, cap, "row %ld: %s", s->rows[i].index, e);
      free(row);
      encoded_set_free(out);
      return -1;
    }
    if (used + (size_t)len > room) {
      room = room * 2 + (size_t)len;
      int32_t *ids = realloc(out->ids, room * sizeof *ids);
      if (!ids)
        goto oom;
      out->ids = ids;
    }
    memcpy(out->ids + used, row, (size_t)len * sizeof *row);
    out->offset[i] = (int32_t)used, out->length[i] = len, out->label[i] = s->rows[i].label;
    used += (size_t)len;
    out->longest = len > out->longest ? len : out->longest;
  }
  out->n = n;
  free(row);
  return 0;
oom:
  free(row);
  encoded_set_free(out);
  snprintf(err, cap, "out of memory tokenizing %d rows", n);
  return -1;
}

void encoded_set_free(EncodedSet *e) {
  free(e->ids);
  free(e->offset);
  free(e->length);
  free(e->label);
  memset(e, 0, sizeof *e);
}

int batch_alloc(Batch *b, int rows, int len) {
  memset(b, 0, sizeof *b);
  b->cap_rows = rows, b->cap_len = len;
  b->ids = malloc((size_t)rows * len * sizeof *b->ids);
  b->lengths = malloc((size_t)rows * sizeof *b->lengths);
  b->labels = malloc((size_t)rows * sizeof *b->labels);
  return b->ids && b->lengths && b->labels ? 0 : -1;
}

void batch_free(Batch *b) {
  free(b->ids);
  free(b->lengths);
  free(b->labels);
}

/* Rows idx[0..count) padded to the longest of them (dynamic padding). */
void batch_fill(Batch *b, const EncodedSet *s, const int *idx, int count, int32_t pad) {
  int N = 1;
  for (int k = 0; k < count; k++)
    N = s->length[idx[k]] > N ? s->length[idx[k]] : N;
  b->B = count, b->N = N, b->tokens = 0;
  for (int k = 0; k < count; k++) {
    int r = idx[k], L = s->length[r];
    int32_t *dst = b->ids + (size_t)k * N;
    memcpy(dst, s->ids + s->offset[r], (size_t)L * sizeof *dst);
    for (int j = L; j < N; j++)
      dst[j] = pad;
    b->lengths[k] = L, b->labels[k] = s->label[r];
    b->tokens += L;
  }
}
