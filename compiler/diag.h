/* diag.h: one error message about a position in a text, rendered the crisp way:
 *
 *     FILE:LINE:COL: error: MESSAGE
 *       <the source line, tabs kept>
 *       <spaces>^~~~
 *
 * LINE and COL are 1-based; COL counts bytes. The caret sits under the offending
 * text and '~' extends it over the text's length. A Diag keeps the message and the
 * rendered text so that callers and tests can inspect them; printing is the
 * caller's job (fputs(d.text, stderr)). Diag needs no cleanup. */
#ifndef CRISP_DIAG_H
#define CRISP_DIAG_H

#include <stdarg.h>
#include <stddef.h>

typedef struct Diag {
  char file[256];  /* file name as given (truncated to fit) */
  int line, col;   /* 1-based; col in bytes */
  size_t offset;   /* byte offset of the offending text */
  size_t span;     /* its length in bytes (0: a point, e.g. end of file) */
  char msg[1024];  /* MESSAGE alone */
  char text[4096]; /* the three rendered lines, each ending in '\n' */
} Diag;

#if defined(__GNUC__)
#define DIAG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DIAG_PRINTF(f, a)
#endif

/* Fills *d with an error at text[offset .. offset+span) of the len-byte text
 * (which need not be NUL-terminated; offset may equal len). file may be NULL. */
void diag_error(Diag *d, const char *file, const char *text, size_t len, size_t offset,
                size_t span, const char *fmt, ...) DIAG_PRINTF(7, 8);
void diag_verror(Diag *d, const char *file, const char *text, size_t len, size_t offset,
                 size_t span, const char *fmt, va_list ap) DIAG_PRINTF(7, 0);

/* 1-based line and byte column of text[offset]. */
void diag_linecol(const char *text, size_t len, size_t offset, int *line, int *col);

/* Length (1..4) of the well-formed UTF-8 sequence at s[0..n), or 0 if there is none
 * (overlong forms, surrogates and code points above U+10FFFF are not well formed). */
size_t diag_utf8_len(const char *s, size_t n);

#endif
