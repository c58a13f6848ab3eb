/* lex.c: splits spec text into tokens: identifiers, numbers, strings and the
 * punctuators { } = , and skips blanks and '#' comments.
 *
 * Newlines are not tokens; each token records whether one came before it, and the
 * parser uses that to end entries. Before any token is read the whole text is checked
 * to be text (UTF-8, no control bytes but \t \r \n), so binary garbage gets one clear
 * error at its first bad byte instead of a puzzling syntax error. Strings are lexed
 * only so that `head_dim = "64"` can be reported as a value of the wrong type. */
#include "spec_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NUM_MAX = 127, CLIP = 40 };

static int error_at(SpecLexer *L, size_t off, size_t span, const char *fmt, ...)
    DIAG_PRINTF(4, 5);

static int error_at(SpecLexer *L, size_t off, size_t span, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(L->d, L->file, L->src, L->len, off, span, fmt, ap);
  va_end(ap);
  return -1;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_alnum(char c) { return is_alpha(c) || is_digit(c); }

/* s[0..n) cut to CLIP bytes (on a UTF-8 boundary) with "..." appended if longer. */
static const char *clip(char *buf, size_t cap, const char *s, size_t n) {
  size_t k = n;
  if (k > CLIP) {
    k = CLIP;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
      k--;
  }
  snprintf(buf, cap, "%.*s%s", (int)k, s, k < n ? "..." : "");
  return buf;
}

const char *spec_tok_text(const SpecToken *t, char *buf, size_t cap) {
  return clip(buf, cap, t->loc, t->len);
}

const char *spec_tok_desc(const SpecToken *t, char *buf, size_t cap) {
  char text[CLIP + 8];
  if (t->kind == TK_EOF)
    snprintf(buf, cap, "end of file");
  else if (t->kind == TK_STR)
    snprintf(buf, cap, "string %s", spec_tok_text(t, text, sizeof text));
  else
    snprintf(buf, cap, "'%s'", spec_tok_text(t, text, sizeof text));
  return buf;
}

bool spec_tok_is(const SpecToken *t, const char *s) {
  return t->kind != TK_EOF && t->kind != TK_STR && strlen(s) == t->len &&
         memcmp(t->loc, s, t->len) == 0;
}

/* The first byte that is not text, if any, is an error. */
static int check_text(SpecLexer *L) {
  const char *s = L->src;
  for (size_t i = 0; i < L->len;) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\t' || c == '\n' || c == '\r' || (c >= 0x20 && c < 0x7f)) {
      i++;
    } else if (c >= 0x80 && diag_utf8_len(s + i, L->len - i) > 0) {
      i += diag_utf8_len(s + i, L->len - i);
    } else if (c >= 0x80) {
      return error_at(L, i, 1, "spec is not valid UTF-8 (byte 0x%02x at offset %zu)", c, i);
    } else {
      return error_at(L, i, 1, "binary data is not a spec (byte 0x%02x at offset %zu)", c, i);
    }
  }
  return 0;
}

int spec_lex_init(SpecLexer *L, const char *file, const char *src, size_t len, Diag *d) {
  L->file = file;
  L->src = src ? src : "";
  L->len = src ? len : 0;
  L->pos = 0;
  L->d = d;
  if (check_text(L))
    return -1;
  if (L->len >= 3 && memcmp(L->src, "\xEF\xBB\xBF", 3) == 0)
    L->pos = 3;
  return 0;
}

/* Skips blanks and comments; tells whether a newline was crossed. */
static bool skip_space(SpecLexer *L) {
  bool nl = false;
  while (L->pos < L->len) {
    char c = L->src[L->pos];
    if (c == '#') {
      while (L->pos < L->len && L->src[L->pos] != '\n')
        L->pos++;
    } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      nl |= c == '\n';
      L->pos++;
    } else {
      break;
    }
  }
  return nl;
}

static bool starts_number(const char *p, size_t n) {
  size_t i = (p[0] == '+' || p[0] == '-') ? 1 : 0;
  if (i < n && is_digit(p[i]))
    return true;
  return i + 1 < n && p[i] == '.' && is_digit(p[i + 1]);
}

static size_t skip_digits(const char *p, size_t i, size_t n) {
  while (i < n && is_digit(p[i]))
    i++;
  return i;
}

/* Decimal integer s (optional sign, digits), saturated to the int64_t range. */
static int64_t parse_int(const char *s) {
  bool neg = s[0] == '-';
  if (s[0] == '-' || s[0] == '+')
    s++;
  uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; *s; s++) {
    unsigned dig = (unsigned)(*s - '0');
    if (v > (limit - dig) / 10)
      return neg ? INT64_MIN : INT64_MAX;
    v = v * 10 + dig;
  }
  if (neg)
    return v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
  return (int64_t)v;
}

/* [sign] (digits [. digits] | . digits) [(e|E) [sign] digits]. A letter, digit, '_'
 * or '.' right after that makes the whole run malformed: 64k, 1.2.3, 0x10, 5., 1e. */
static int lex_number(SpecLexer *L, SpecToken *t) {
  const char *p = L->src + L->pos;
  size_t n = L->len - L->pos;
  size_t i = (p[0] == '+' || p[0] == '-') ? 1 : 0;
  bool is_int = true;
  i = skip_digits(p, i, n);
  if (i + 1 < n && p[i] == '.' && is_digit(p[i + 1])) {
    is_int = false;
    i = skip_digits(p, i + 1, n);
  }
  if (i < n && (p[i] == 'e' || p[i] == 'E')) {
    size_t j = i + 1 < n && (p[i + 1] == '+' || p[i + 1] == '-') ? i + 2 : i + 1;
    if (j < n && is_digit(p[j])) {
      is_int = false;
      i = skip_digits(p, j, n);
    }
  }
  size_t end = i;
  while (end < n && (is_alnum(p[end]) || p[end] == '.'))
    end++;
  char buf[NUM_MAX + 1];
  if (end > i)
    return error_at(L, L->pos, end, "malformed number '%s'", clip(buf, sizeof buf, p, end));
  if (i > NUM_MAX)
    return error_at(L, L->pos, i, "number is too long (%zu characters, at most %d)", i,
                    (int)NUM_MAX);
  memcpy(buf, p, i);
  buf[i] = '\0';
  t->kind = TK_NUM;
  t->len = i;
  t->is_int = is_int;
  t->ival = is_int ? parse_int(buf) : 0;
  t->fval = strtod(buf, NULL); /* the C locale's '.'; overflow gives +-HUGE_VAL */
  L->pos += i;
  return 0;
}

/* "..." on one line; a backslash escapes the next byte. */
static int lex_string(SpecLexer *L, SpecToken *t) {
  const char *p = L->src + L->pos;
  size_t n = L->len - L->pos, i = 1;
  while (i < n && p[i] != '"' && p[i] != '\n') {
    if (p[i] == '\\' && i + 1 < n && p[i + 1] != '\n')
      i++;
    i++;
  }
  if (i >= n || p[i] != '"') {
    size_t span = i > 0 && p[i - 1] == '\r' ? i - 1 : i;
    return error_at(L, L->pos, span, "unterminated string (expected '\"' before the end of %s)",
                    i >= n ? "the file" : "the line");
  }
  t->kind = TK_STR;
  t->len = i + 1;
  L->pos += i + 1;
  return 0;
}

static int stray(SpecLexer *L) {
  const char *p = L->src + L->pos;
  size_t k = diag_utf8_len(p, L->len - L->pos);
  const char *hint = *p == ':'   ? " (use '=' between a key and its value)"
                     : *p == ';' ? " (end entries with a new line or ',')"
                     : *p == '[' ? " (a value is a number or a word; lists are not supported)"
                                 : "";
  return error_at(L, L->pos, k, "unexpected character '%.*s'%s", (int)k, p, hint);
}

int spec_lex_next(SpecLexer *L, SpecToken *t) {
  memset(t, 0, sizeof *t);
  t->nl_before = skip_space(L);
  t->loc = L->src + L->pos;
  if (L->pos >= L->len) {
    t->kind = TK_EOF;
    return 0;
  }
  const char *p = t->loc;
  size_t n = L->len - L->pos;
  if (starts_number(p, n))
    return lex_number(L, t);
  if (*p == '"')
    return lex_string(L, t);
  if (is_alpha(*p)) {
    size_t i = 1;
    while (i < n && is_alnum(p[i]))
      i++;
    t->kind = TK_IDENT;
    t->len = i;
    L->pos += i;
    return 0;
  }
  if (*p == '{' || *p == '}' || *p == '=' || *p == ',') {
    t->kind = TK_PUNCT;
    t->len = 1;
    L->pos++;
    return 0;
  }
  return stray(L);
}
