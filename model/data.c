/* GLUE SST-2 TSV loader: reads the whole file, checks every line, and keeps the
 * sentences in the file buffer (tabs and newlines replaced by NULs). */
#include "data.h"
#include "errf.h"

#include "vocab.h" /* read_whole_file, utf8_find_invalid */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sst2_free(Sst2Set *s) {
  if (!s) return;
  free(s->rows);
  free(s->buf_);
  memset(s, 0, sizeof *s);
}

typedef struct {
  const char *path;
  long line; /* 1-based */
  char *err;
  size_t cap;
} Where;

static int fail(const Where *w, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  model_fail(w->err, w->cap, "%s:%ld: %s", w->path, w->line, msg);
  return -1;
}

/* Byte-level problems of one line s[0..len): CR, NUL, invalid UTF-8. */
static int check_bytes(const Where *w, const char *s, size_t len) {
  const char *cr = memchr(s, '\r', len);
  if (cr) return fail(w, "carriage return at column %zu (CRLF line endings are not supported)", (size_t)(cr - s) + 1);
  const char *nul = memchr(s, '\0', len);
  if (nul) return fail(w, "NUL byte at column %zu", (size_t)(nul - s) + 1);
  size_t bad = utf8_find_invalid(s, len);
  if (bad != (size_t)-1)
    return fail(w, "invalid UTF-8 at column %zu (byte 0x%02X)", bad + 1, (unsigned char)s[bad]);
  return 0;
}

static int is_blank(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (s[i] != ' ') return 0;
  return 1;
}

static int parse_label(const Where *w, const char *s, size_t len, int *label) {
  if (len == 1 && (s[0] == '0' || s[0] == '1')) { *label = s[0] - '0'; return 0; }
  return fail(w, "label '%.*s' is not 0 or 1", (int)(len > 20 ? 20 : len), s);
}

static int parse_index(const Where *w, const char *s, size_t len, long *index) {
  long v = 0;
  int ok = len > 0 && len <= 9;
  for (size_t i = 0; ok && i < len; i++) {
    ok = s[i] >= '0' && s[i] <= '9';
    v = v * 10 + (s[i] - '0');
  }
  if (!ok) return fail(w, "index '%.*s' is not a non-negative integer", (int)(len > 20 ? 20 : len), s);
  *index = v;
  return 0;
}

/* One data row in line[0..len) (its end byte becomes NUL later); fills *row. */
static int parse_row(const Where *w, char *line, size_t len, int labeled, Sst2Row *row) {
  if (check_bytes(w, line, len)) return -1;
  if (len == 0) return fail(w, "blank line (expected 2 tab-separated columns)");
  char *tab = memchr(line, '\t', len);
  int tabs = 0;
  for (size_t i = 0; i < len; i++) tabs += line[i] == '\t';
  if (tabs != 1) return fail(w, "expected 2 tab-separated columns, found %d", tabs + 1);
  size_t a = (size_t)(tab - line), b = len - a - 1;
  char *sent = labeled ? line : tab + 1;
  size_t slen = labeled ? a : b;
  if (is_blank(sent, slen)) return fail(w, "empty sentence");
  row->text = sent;
  row->len = slen;
  row->label = -1;
  row->index = w->line - 2;
  if (labeled && parse_label(w, tab + 1, b, &row->label)) return -1;
  if (!labeled && parse_index(w, line, a, &row->index)) return -1;
  *tab = '\0';
  return 0;
}

static int parse_header(const Where *w, const char *s, size_t len, int *labeled) {
  if (check_bytes(w, s, len)) return -1;
  if (len == 14 && memcmp(s, "sentence\tlabel", 14) == 0) { *labeled = 1; return 0; }
  if (len == 14 && memcmp(s, "index\tsentence", 14) == 0) { *labeled = 0; return 0; }
  return fail(w, "missing header: expected 'sentence<TAB>label' (train/dev) or 'index<TAB>sentence' (test)");
}

static int count_lines(const char *buf, size_t len) {
  long n = 0;
  for (size_t i = 0; i < len; i++) n += buf[i] == '\n';
  n += len > 0 && buf[len - 1] != '\n';
  return n > 0x7fffffff ? -1 : (int)n;
}

static int parse_file(char *buf, size_t len, Sst2Set *out, Where *w) {
  int lines = count_lines(buf, len);
  if (lines <= 0) return w->line = 1, fail(w, "empty file (missing header)");
  out->rows = calloc(lines > 1 ? (size_t)lines - 1 : 1, sizeof *out->rows);
  if (!out->rows) return fail(w, "out of memory");
  size_t start = 0;
  for (w->line = 1; w->line <= lines; w->line++) {
    char *nl = memchr(buf + start, '\n', len - start);
    size_t end = nl ? (size_t)(nl - buf) : len;
    int rc = w->line == 1 ? parse_header(w, buf + start, end - start, &out->labeled)
                          : parse_row(w, buf + start, end - start, out->labeled, &out->rows[out->n]);
    if (rc) return -1;
    if (w->line > 1) out->n++;
    buf[end] = '\0';
    start = end + 1;
  }
  if (out->n == 0) return w->line = 2, fail(w, "no data rows after the header");
  return 0;
}

int sst2_load(const char *path, Sst2Set *out, char *err, size_t cap) {
  if (!out) { model_fail(err, cap, "%s: sst2_load: NULL output", path); return -1; }
  memset(out, 0, sizeof *out);
  size_t len;
  out->buf_ = read_whole_file(path, &len, err, cap);
  if (!out->buf_) return -1;
  Where w = {path, 0, err, cap};
  if (parse_file(out->buf_, len, out, &w)) {
    sst2_free(out);
    return -1;
  }
  return 0;
}
