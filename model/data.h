/* GLUE SST-2 TSV loader. Train/dev files have the header "sentence\tlabel" and rows
 * "SENTENCE\t0|1"; the test file has "index\tsentence" and rows "N\tSENTENCE".
 * Files are UTF-8 with LF line endings. A missing or unknown header, a row with a
 * wrong column count (a blank line included), a label other than 0/1, a bad
 * index, an empty sentence, a carriage return, a NUL byte or invalid UTF-8 is an
 * error "FILE:LINE: ..." and nothing is loaded. */
#ifndef CRISP_DATA_H
#define CRISP_DATA_H

#include <stddef.h>

typedef struct {
  const char *text; /* NUL-terminated, exactly as in the file (e.g. a trailing space) */
  size_t len;       /* bytes */
  int label;        /* 0 negative, 1 positive; -1 in the test split */
  long index;       /* the test split's index column; the row number (from 0) otherwise */
} Sst2Row;

typedef struct {
  Sst2Row *rows;
  int n;
  int labeled; /* 1 for "sentence\tlabel" files, 0 for "index\tsentence" */
  char *buf_;  /* owns the texts */
} Sst2Set;

/* Loads path into *out. Returns 0, or -1 with "path:line: message" in err and *out
 * zeroed. */
int sst2_load(const char *path, Sst2Set *out, char *err, size_t cap);

void sst2_free(Sst2Set *s);

#endif
