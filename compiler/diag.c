/* diag.c: renders one error as "FILE:LINE:COL: error: MESSAGE", the source line and
 * a caret line, into a fixed-size Diag (no allocation, so it can report on any input).
 *
 * The source line is shown as it is, except that bytes which would garble a terminal
 * (control bytes other than tab, malformed UTF-8) are shown as '?'. The caret line
 * copies the tabs of the source line and puts one space per other character, so the
 * caret lines up under the offending text in any terminal. Lines longer than
 * SHOW_MAX bytes are shown as a window around the error, cut ends marked "...". */
#include "diag.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

enum { SHOW_MAX = 160, SHOW_LEFT = 60 };

typedef struct {
  char *p;
  size_t cap, n;
} Buf;

static void put(Buf *b, const char *s, size_t n) {
  size_t room = b->cap - 1 - b->n;
  if (n > room)
    n = room;
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void puts_(Buf *b, const char *s) { put(b, s, strlen(s)); }

size_t diag_utf8_len(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  if (n == 0)
    return 0;
  if (p[0] < 0x80)
    return 1;
  size_t k;
  unsigned cp, min;
  if (p[0] >= 0xC2 && p[0] <= 0xDF)
    k = 2, cp = p[0] & 0x1F, min = 0x80;
  else if ((p[0] & 0xF0) == 0xE0)
    k = 3, cp = p[0] & 0x0F, min = 0x800;
  else if (p[0] >= 0xF0 && p[0] <= 0xF4)
    k = 4, cp = p[0] & 0x07, min = 0x10000;
  else
    return 0;
  if (n < k)
    return 0;
  for (size_t i = 1; i < k; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
    cp = cp << 6 | (p[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return k;
}

void diag_linecol(const char *text, size_t len, size_t offset, int *line, int *col) {
  if (offset > len)
    offset = len;
  int ln = 1;
  size_t start = 0;
  for (size_t i = 0; i < offset; i++) {
    if (text[i] == '\n') {
      if (ln < 0x7fffffff)
        ln++;
      start = i + 1;
    }
  }
  size_t c = offset - start + 1;
  *line = ln;
  *col = c > 0x7fffffff ? 0x7fffffff : (int)c;
}

/* Bytes taken by the character displayed at s[0..n); *as_is tells whether it can be
 * shown as it is (printable ASCII, tab, well-formed UTF-8) or must be shown as '?'. */
static size_t glyph(const char *s, size_t n, bool *as_is) {
  unsigned char c = (unsigned char)s[0];
  if (c == '\t' || (c >= 0x20 && c < 0x7f)) {
    *as_is = true;
    return 1;
  }
  size_t k = c >= 0x80 ? diag_utf8_len(s, n) : 0;
  *as_is = k > 0;
  return k > 0 ? k : 1;
}

static bool is_cont(char c) { return ((unsigned char)c & 0xC0) == 0x80; }

/* Appends the source line holding t[off] and the caret line under it. */
static void render_source(Buf *b, const char *t, size_t len, size_t off, size_t span) {
  size_t ls = off, le = off;
  while (ls > 0 && t[ls - 1] != '\n')
    ls--;
  while (le < len && t[le] != '\n')
    le++;
  if (le > ls && t[le - 1] == '\r')
    le--;

  size_t ws = ls, we = le;
  bool cut_left = off - ls > SHOW_MAX / 2, cut_right = false;
  if (cut_left) {
    ws = off - SHOW_LEFT;
    while (ws < off && is_cont(t[ws]))
      ws++;
  }
  if (we > ws + SHOW_MAX) {
    we = ws + SHOW_MAX;
    cut_right = true;
    while (we > off + 1 && is_cont(t[we]))
      we--;
  }

  puts_(b, ws == we && !cut_left ? "" : cut_left ? "  ..." : "  ");
  for (size_t p = ws; p < we;) {
    bool as_is;
    size_t k = glyph(t + p, we - p, &as_is);
    put(b, as_is ? t + p : "?", as_is ? k : 1);
    p += k;
  }
  puts_(b, cut_right ? "...\n" : "\n");

  puts_(b, cut_left ? "     " : "  ");
  size_t p = ws;
  while (p < off) {
    bool as_is;
    size_t k = p < we ? glyph(t + p, we - p, &as_is) : 1;
    put(b, p < we && t[p] == '\t' ? "\t" : " ", 1);
    p += k;
  }
  puts_(b, "^");
  size_t end = off + span < we ? off + span : we;
  for (size_t n = 0; p < end; n++) {
    bool as_is;
    p += glyph(t + p, end - p, &as_is);
    if (n > 0)
      puts_(b, "~");
  }
  puts_(b, "\n");
}

void diag_verror(Diag *d, const char *file, const char *text, size_t len, size_t offset,
                 size_t span, const char *fmt, va_list ap) {
  if (!file)
    file = "<input>";
  if (!text)
    text = "", len = 0;
  if (offset > len)
    offset = len;
  if (span > len - offset)
    span = len - offset;

  memset(d, 0, sizeof *d);
  snprintf(d->file, sizeof d->file, "%s", file);
  vsnprintf(d->msg, sizeof d->msg, fmt, ap);
  diag_linecol(text, len, offset, &d->line, &d->col);
  d->offset = offset;
  d->span = span;

  Buf b = {d->text, sizeof d->text, 0};
  char head[64];
  snprintf(head, sizeof head, ":%d:%d: error: ", d->line, d->col);
  puts_(&b, file);
  puts_(&b, head);
  puts_(&b, d->msg);
  puts_(&b, "\n");
  render_source(&b, text, len, offset, span);
  if (b.n > 0 && b.p[b.n - 1] != '\n')
    b.p[b.n - 1] = '\n'; /* truncated: still end in a newline */
}

void diag_error(Diag *d, const char *file, const char *text, size_t len, size_t offset,
                size_t span, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(d, file, text, len, offset, span, fmt, ap);
  va_end(ap);
}
