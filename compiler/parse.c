/* parse.c: the grammar of a spec file and of a -D override; values go to sema.c.
 *
 *     spec    = "attention" NAME "{" entries "}" EOF
 *     entries = { entry [ "," ] }
 *     entry   = KEY "=" VALUE
 *             | "tile" "=" "auto"
 *             | "tile" [ "=" ] "{" { TILE_KEY "=" INTEGER [ "," ] } "}"
 *
 * Newlines matter in one way only: a key, its '=' and its value sit on one line, and
 * two entries on one line need a ',' between them. The first error ends the parse.
 * It is placed at the offending token, or just after the previous token when what is
 * missing is at the end of a line or of the file. Whole-spec rules are checked last.
 * Results are built in the Parser and copied out only on success. */
#include "spec_impl.h"

#include <stdio.h>
#include <string.h>

typedef struct {
  SpecLexer lx;
  SpecToken tok, prev; /* current and previous token */
  Diag *d;
  Spec s;              /* being built */
  SpecToken head;      /* the `attention` keyword */
  TileSpec tile;       /* the tile block being built */
  bool seen[K_COUNT], tseen[T_COUNT];
  SpecToken key_at[K_COUNT], val_at[K_COUNT];    /* where each key and value was given */
  SpecToken tkey_at[T_COUNT], tval_at[T_COUNT];  /* the same inside the tile block */
} Parser;

static int error_at(Parser *p, const char *loc, size_t span, const char *fmt, ...)
    DIAG_PRINTF(4, 5);
static int error_tok(Parser *p, const SpecToken *t, const char *fmt, ...) DIAG_PRINTF(3, 4);
static int expected(Parser *p, bool same_line, const char *fmt, ...) DIAG_PRINTF(3, 4);
static int parse_entries(Parser *p, bool tile, const SpecToken *open, const char *what);

static int error_at(Parser *p, const char *loc, size_t span, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(p->d, p->lx.file, p->lx.src, p->lx.len, (size_t)(loc - p->lx.src), span, fmt,
              ap);
  va_end(ap);
  return -1;
}

static int error_tok(Parser *p, const SpecToken *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(p->d, p->lx.file, p->lx.src, p->lx.len, (size_t)(t->loc - p->lx.src), t->len,
              fmt, ap);
  va_end(ap);
  return -1;
}

/* "expected WHAT, found X", at the current token; or, when it is the end of the file
 * or (same_line) on a later line, just after the previous token. */
static int expected(Parser *p, bool same_line, const char *fmt, ...) {
  char what[512], found[80];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  const SpecToken *t = &p->tok;
  if (t->kind != TK_EOF && !(same_line && t->nl_before))
    return error_tok(p, t, "expected %s, found %s", what, spec_tok_desc(t, found, sizeof found));
  return error_at(p, p->prev.loc + p->prev.len, 0, "expected %s, found end of %s", what,
                  t->kind == TK_EOF ? "file" : "line");
}

static const char *where(const Parser *p, const SpecToken *t, char *buf, size_t cap) {
  int line, col;
  diag_linecol(p->lx.src, p->lx.len, (size_t)(t->loc - p->lx.src), &line, &col);
  snprintf(buf, cap, "%d:%d", line, col);
  return buf;
}

static int advance(Parser *p) {
  p->prev = p->tok;
  return spec_lex_next(&p->lx, &p->tok);
}

static bool at_punct(const Parser *p, char c) {
  return p->tok.kind == TK_PUNCT && p->tok.loc[0] == c;
}

/* Is the current token a value on the line of the '=' before it? */
static bool at_value(const Parser *p) {
  return p->tok.kind != TK_EOF && p->tok.kind != TK_PUNCT && !p->tok.nl_before;
}

/* "{" tile entries "}": all of rows, cols and warps, which must fit together. */
static int parse_tile_block(Parser *p) {
  char msg[512];
  SpecToken open = p->tok;
  memset(p->tseen, 0, sizeof p->tseen);
  p->tile = (TileSpec){0};
  if (advance(p) || parse_entries(p, true, &open, "the tile block"))
    return -1;
  for (int k = 0; k < T_COUNT; k++)
    if (!p->tseen[k])
      return error_tok(p, &p->tok, "tile block is missing '%s' (give rows, cols and warps, "
                       "or write tile = auto)", spec_sema_key_name(k, true));
  int bad = spec_sema_check_tile(&p->tile, msg, sizeof msg);
  if (bad >= 0)
    return error_tok(p, &p->tval_at[bad], "%s", msg);
  p->s.tile = p->tile;
  p->val_at[K_TILE] = open;
  return advance(p);
}

/* After the key `tile`: "= auto", "{ ... }" or "= { ... }". */
static int parse_tile(Parser *p) {
  char msg[512];
  bool eq = at_punct(p, '=') && !p->tok.nl_before;
  if (eq && advance(p))
    return -1;
  if (at_punct(p, '{') && !p->tok.nl_before)
    return parse_tile_block(p);
  if (!eq)
    return expected(p, true, "'=' or '{' after 'tile'");
  if (!at_value(p))
    return expected(p, true, "'auto' or '{' after 'tile ='");
  p->val_at[K_TILE] = p->tok;
  if (spec_sema_set(&p->s, K_TILE, &p->tok, msg, sizeof msg))
    return error_tok(p, &p->tok, "%s", msg);
  return advance(p);
}

/* KEY "=" VALUE (or a tile entry), checked and stored; *key gets the key's index. */
static int parse_entry(Parser *p, bool tile, int *key) {
  char msg[512], at[32];
  SpecToken name = p->tok;
  int k = *key = spec_sema_key(&name, tile, msg, sizeof msg);
  if (k < 0)
    return error_tok(p, &name, "%s", msg);
  const char *kname = spec_sema_key_name(k, tile);
  bool *seen = tile ? &p->tseen[k] : &p->seen[k];
  SpecToken *first = tile ? &p->tkey_at[k] : &p->key_at[k];
  if (*seen)
    return error_tok(p, &name, "duplicate %s '%s' (first given at %s)",
                     tile ? "tile key" : "key", kname, where(p, first, at, sizeof at));
  *seen = true;
  *first = name;
  if (advance(p))
    return -1;
  if (!tile && k == K_TILE)
    return parse_tile(p);
  if (!at_punct(p, '=') || p->tok.nl_before)
    return expected(p, true, "'=' after key '%s'", kname);
  if (advance(p))
    return -1;
  if (!at_value(p))
    return expected(p, true, "a value after '='");
  SpecToken *v = tile ? &p->tval_at[k] : &p->val_at[k];
  *v = p->tok;
  int rc = tile ? spec_sema_set_tile(&p->tile, k, v, msg, sizeof msg)
                : spec_sema_set(&p->s, k, v, msg, sizeof msg);
  if (rc)
    return error_tok(p, v, "%s", msg);
  return advance(p);
}

/* Entries up to the closing '}' of a block opened at *open; stops on the '}'. */
static int parse_entries(Parser *p, bool tile, const SpecToken *open, const char *what) {
  char at[32];
  int key;
  for (;;) {
    if (at_punct(p, '}'))
      return 0;
    if (p->tok.kind == TK_EOF)
      return expected(p, false, "'}' to close %s (opened at %s)", what,
                      where(p, open, at, sizeof at));
    if (p->tok.kind != TK_IDENT)
      return expected(p, false, tile ? "a tile key (rows, cols, warps) or '}'" : "a key or '}'");
    if (parse_entry(p, tile, &key))
      return -1;
    if (at_punct(p, ',')) {
      if (advance(p))
        return -1;
    } else if (!at_punct(p, '}') && p->tok.kind != TK_EOF && !p->tok.nl_before) {
      return expected(p, false, "',' or a new line between entries");
    }
  }
}

/* The whole-spec rules, blamed on the value of key `blame` if given (an override),
 * else on the value of the key the rule names (or on `attention`, if not given). */
static int check_spec(Parser *p, int blame) {
  char msg[512];
  int bad = spec_sema_check_spec(&p->s, msg, sizeof msg);
  if (bad < 0)
    return 0;
  if (blame < 0 && !p->seen[bad])
    return error_tok(p, &p->head, "%s", msg);
  return error_tok(p, &p->val_at[blame < 0 ? bad : blame], "%s", msg);
}

static int parse_spec(Parser *p) {
  char what[96], at[32];
  if (p->tok.kind == TK_EOF)
    return error_at(p, p->lx.src, 0, "empty spec: expected 'attention NAME { ... }'");
  if (!spec_tok_is(&p->tok, "attention"))
    return expected(p, false, "'attention' at the start of the spec");
  p->head = p->tok;
  if (advance(p))
    return -1;
  if (p->tok.kind != TK_IDENT)
    return expected(p, false, "a name after 'attention'");
  if (p->tok.len >= sizeof p->s.name)
    return error_tok(p, &p->tok, "attention name is too long (%zu bytes, at most %zu)",
                     p->tok.len, sizeof p->s.name - 1);
  memcpy(p->s.name, p->tok.loc, p->tok.len);
  p->s.name[p->tok.len] = '\0';
  if (advance(p))
    return -1;
  if (!at_punct(p, '{'))
    return expected(p, false, "'{' after attention name");
  SpecToken open = p->tok;
  snprintf(what, sizeof what, "'attention %s'", p->s.name);
  if (advance(p) || parse_entries(p, false, &open, what) || advance(p))
    return -1;
  if (spec_tok_is(&p->tok, "attention"))
    return error_tok(p, &p->tok, "only one attention block is allowed per file (the first "
                     "is at %s)", where(p, &p->head, at, sizeof at));
  if (p->tok.kind != TK_EOF)
    return expected(p, false, "end of file after the attention block");
  return check_spec(p, -1);
}

static int init(Parser *p, const char *file, const char *text, size_t len, Diag *d) {
  memset(p, 0, sizeof *p);
  p->d = d;
  spec_defaults(&p->s);
  if (spec_lex_init(&p->lx, file, text, len, d))
    return -1;
  p->tok.kind = TK_EOF;
  p->tok.loc = p->lx.src + p->lx.pos; /* becomes prev: "just after" the start */
  return advance(p);
}

int spec_parse(const char *file, const char *text, size_t len, Spec *out, Diag *d) {
  Diag scratch;
  Parser p;
  if (init(&p, file, text, len, d ? d : &scratch) || parse_spec(&p))
    return -1;
  *out = p.s;
  return 0;
}

int spec_override(Spec *s, const char *key_eq_value, Diag *d) {
  Diag scratch;
  Parser p;
  const char *kv = key_eq_value ? key_eq_value : "";
  int key;
  if (init(&p, "<-D>", kv, strlen(kv), d ? d : &scratch))
    return -1;
  p.s = *s;
  if (p.tok.kind == TK_EOF)
    return error_at(&p, p.lx.src, 0, "empty override: expected key=value");
  if (p.tok.kind != TK_IDENT)
    return expected(&p, false, "a key");
  if (parse_entry(&p, false, &key))
    return -1;
  if (p.tok.kind != TK_EOF)
    return expected(&p, false, "end of the override after the value");
  if (check_spec(&p, key))
    return -1;
  *s = p.s;
  return 0;
}
