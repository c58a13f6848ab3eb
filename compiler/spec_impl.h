/* spec_impl.h: what lex.c, parse.c and sema.c share inside the spec front end.
 * Not part of the module contract (that is spec.h); nothing else should include it. */
#ifndef CRISP_SPEC_IMPL_H
#define CRISP_SPEC_IMPL_H

#include "spec.h"

/* ---- lex.c: tokens ---- */

typedef enum { TK_IDENT, TK_NUM, TK_STR, TK_PUNCT, TK_EOF } SpecTokenKind;

typedef struct {
  SpecTokenKind kind;
  const char *loc; /* first byte in the source */
  size_t len;      /* bytes (0 for TK_EOF) */
  bool nl_before;  /* a newline lies between the previous token and this one */
  bool is_int;     /* TK_NUM without '.' or exponent */
  int64_t ival;    /* is_int: the value, saturated to INT64_MIN..INT64_MAX */
  double fval;     /* TK_NUM: the value as a double (may be +-inf) */
} SpecToken;

typedef struct {
  const char *file, *src;
  size_t len, pos;
  Diag *d;
} SpecLexer;

/* Rejects binary data (control bytes other than \t \r \n, malformed UTF-8) anywhere in
 * src and skips a UTF-8 byte order mark. Returns 0, or -1 with *d filled. */
int spec_lex_init(SpecLexer *L, const char *file, const char *src, size_t len, Diag *d);
/* Reads the next token (TK_EOF at the end, again and again). Returns 0, or -1 with
 * *L->d filled (stray character, malformed number, unterminated string). */
int spec_lex_next(SpecLexer *L, SpecToken *t);
bool spec_tok_is(const SpecToken *t, const char *s);
/* The token's text, cut to about 40 bytes with "..." if longer. */
const char *spec_tok_text(const SpecToken *t, char *buf, size_t cap);
/* "'text'" (long text cut with "..."), "string \"...\"" or "end of file". */
const char *spec_tok_desc(const SpecToken *t, char *buf, size_t cap);

/* ---- sema.c: keys, values and the rules on them ---- */

enum { K_HEAD_DIM, K_MAX_SEQ, K_DTYPE, K_SPARSITY, K_SELECT, K_KEEP_MIN, K_CAUSAL,
       K_DROPOUT, K_BACKWARD, K_TILE, K_COUNT };
enum { T_ROWS, T_COLS, T_WARPS, T_COUNT };

/* Key index for token t among the top-level keys (tile == false) or the keys of a
 * tile block (tile == true); -1 and a message naming the expected keys if unknown. */
int spec_sema_key(const SpecToken *t, bool tile, char *msg, size_t cap);
const char *spec_sema_key_name(int key, bool tile);

/* Checks value token v for key and stores it in *s (or *t). 0, or -1 with a message.
 * spec_sema_set handles `tile = auto`; the parser handles tile blocks. */
int spec_sema_set(Spec *s, int key, const SpecToken *v, char *msg, size_t cap);
int spec_sema_set_tile(TileSpec *t, int key, const SpecToken *v, char *msg, size_t cap);

/* Rules across the values of a complete tile block / spec. Return -1 if they hold,
 * else the index of the key (T_* / K_*) to blame, with a message. */
int spec_sema_check_tile(const TileSpec *t, char *msg, size_t cap);
int spec_sema_check_spec(const Spec *s, char *msg, size_t cap);

#endif
