/* sema.c: the keys of the spec language, the type and range of each value, and the
 * rules across keys (keep_min <= max_seq; a tile's rows split evenly among its warps).
 *
 * Checks do not know where a value sits in the text: they return a message and the
 * parser places it at the value. Messages quote the value as written ("got 1.0"), say
 * what was expected, and suggest the nearest name for a misspelt key or word. */
#include "spec_impl.h"

#include <stdio.h>
#include <string.h>

enum { SEQ_LIMIT = 8192 };

static const char *const top_keys[K_COUNT] = {
    "head_dim", "max_seq", "dtype", "sparsity", "select",
    "keep_min", "causal", "dropout", "backward", "tile"};
static const char *const tile_keys[T_COUNT] = {"rows", "cols", "warps"};
static const char *const select_names[] = {"none", "row_topk", "head_quantile",
                                           "layer_quantile"};
static const char *const dtype_names[] = {"f32", "bf16", "f16"};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *select_name(SelectKind k) {
  return (int)k >= 0 && (int)k < COUNT(select_names) ? select_names[k] : "?";
}

const char *dtype_name(DType t) {
  return (int)t >= 0 && (int)t < COUNT(dtype_names) ? dtype_names[t] : "?";
}

const char *spec_sema_key_name(int key, bool tile) {
  if (tile)
    return key >= 0 && key < T_COUNT ? tile_keys[key] : "?";
  return key >= 0 && key < K_COUNT ? top_keys[key] : "?";
}

static int fail(char *msg, size_t cap, const char *fmt, ...) DIAG_PRINTF(3, 4);

static int fail(char *msg, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, cap, fmt, ap);
  va_end(ap);
  return -1;
}

/* Edit distance between a[0..n) and b (big when either is long). */
static size_t distance(const char *a, size_t n, const char *b) {
  size_t m = strlen(b), row[33];
  if (n > 32 || m > 32)
    return 99;
  for (size_t j = 0; j <= m; j++)
    row[j] = j;
  for (size_t i = 1; i <= n; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= m; j++) {
      size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[m];
}

/* The name t is most likely a typo of, or NULL if none is close. */
static const char *closest(const SpecToken *t, const char *const *names, int count) {
  const char *best = NULL;
  size_t best_d = 3;
  for (int i = 0; i < count; i++) {
    size_t d = distance(t->loc, t->len, names[i]);
    if (d < best_d && d * 3 <= strlen(names[i]))
      best = names[i], best_d = d;
  }
  return best;
}

static void join(char *buf, size_t cap, const char *const *names, int count) {
  size_t n = 0;
  buf[0] = '\0';
  for (int i = 0; i < count && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", names[i]);
}

/* "unknown WHAT 'x' (did you mean 'y'?)" or "... (expected one of: a, b, c)". */
static int unknown(char *msg, size_t cap, const char *what, const SpecToken *t,
                   const char *const *names, int count) {
  char text[64], list[256];
  spec_tok_text(t, text, sizeof text);
  const char *near = closest(t, names, count);
  if (near)
    return fail(msg, cap, "unknown %s '%s' (did you mean '%s'?)", what, text, near);
  join(list, sizeof list, names, count);
  return fail(msg, cap, "unknown %s '%s' (expected one of: %s)", what, text, list);
}

int spec_sema_key(const SpecToken *t, bool tile, char *msg, size_t cap) {
  const char *const *names = tile ? tile_keys : top_keys;
  int count = tile ? T_COUNT : K_COUNT;
  for (int i = 0; i < count; i++)
    if (spec_tok_is(t, names[i]))
      return i;
  unknown(msg, cap, tile ? "tile key" : "key", t, names, count);
  return -1;
}

static int want_int(const char *key, const SpecToken *v, int64_t *out, char *msg,
                    size_t cap) {
  char desc[64];
  if (v->kind == TK_NUM && v->is_int) {
    *out = v->ival;
    return 0;
  }
  return fail(msg, cap, "%s must be an integer, found %s", key,
              spec_tok_desc(v, desc, sizeof desc));
}

/* A fraction in [0, 1): sparsity, dropout. */
static int want_fraction(const char *key, const SpecToken *v, double *out, char *msg,
                         size_t cap) {
  char text[64];
  if (v->kind != TK_NUM)
    return fail(msg, cap, "%s must be a number, found %s", key,
                spec_tok_desc(v, text, sizeof text));
  if (!(v->fval >= 0 && v->fval < 1))
    return fail(msg, cap, "%s must be in [0, 1), got %s", key,
                spec_tok_text(v, text, sizeof text));
  *out = v->fval == 0 ? 0.0 : v->fval; /* no -0 in canonical text */
  return 0;
}

/* One of names (a bare word); *out is its index. */
static int want_word(const char *key, const SpecToken *v, const char *const *names,
                     int count, int *out, char *msg, size_t cap) {
  char desc[64], list[256];
  for (int i = 0; i < count; i++) {
    if (v->kind == TK_IDENT && spec_tok_is(v, names[i])) {
      *out = i;
      return 0;
    }
  }
  if (v->kind == TK_IDENT)
    return unknown(msg, cap, key, v, names, count);
  join(list, sizeof list, names, count);
  return fail(msg, cap, "%s must be one of %s (a bare word), found %s", key, list,
              spec_tok_desc(v, desc, sizeof desc));
}

static int want_bool(const char *key, const SpecToken *v, bool *out, char *msg, size_t cap) {
  char desc[64];
  if (spec_tok_is(v, "true") || spec_tok_is(v, "false")) {
    *out = spec_tok_is(v, "true");
    return 0;
  }
  return fail(msg, cap, "%s must be true or false, found %s", key,
              spec_tok_desc(v, desc, sizeof desc));
}

static int set_int(Spec *s, int key, const SpecToken *v, char *msg, size_t cap) {
  const char *name = top_keys[key];
  char text[64];
  int64_t x = 0;
  if (want_int(name, v, &x, msg, cap))
    return -1;
  spec_tok_text(v, text, sizeof text);
  if (key == K_HEAD_DIM && (x < 8 || x > 256 || x % 8 != 0))
    return fail(msg, cap, "head_dim must be a multiple of 8 in 8..256, got %s", text);
  if (key == K_MAX_SEQ && (x < 1 || x > SEQ_LIMIT))
    return fail(msg, cap, "max_seq must be in 1..%d, got %s", SEQ_LIMIT, text);
  if (key == K_KEEP_MIN && x < 1)
    return fail(msg, cap, "keep_min must be at least 1, got %s", text);
  if (key == K_KEEP_MIN && x > SEQ_LIMIT)
    return fail(msg, cap, "keep_min must not exceed max_seq (at most %d), got %s",
                SEQ_LIMIT, text);
  if (key == K_HEAD_DIM)
    s->head_dim = (int)x;
  else if (key == K_MAX_SEQ)
    s->max_seq = (int)x;
  else
    s->keep_min = (int)x;
  return 0;
}

static int set_dtype(Spec *s, const SpecToken *v, char *msg, size_t cap) {
  int i = 0;
  if (want_word("dtype", v, dtype_names, COUNT(dtype_names), &i, msg, cap))
    return -1;
  if (i != DTYPE_F32)
    return fail(msg, cap, "dtype '%s' is not supported yet (only f32)", dtype_names[i]);
  s->dtype = (DType)i;
  return 0;
}

static int set_tile_auto(Spec *s, const SpecToken *v, char *msg, size_t cap) {
  char desc[64];
  if (!spec_tok_is(v, "auto"))
    return fail(msg, cap, "tile must be 'auto' or a block { rows = R, cols = C, warps = W }, "
                "found %s", spec_tok_desc(v, desc, sizeof desc));
  s->tile = (TileSpec){.is_auto = true};
  return 0;
}

int spec_sema_set(Spec *s, int key, const SpecToken *v, char *msg, size_t cap) {
  const char *name = spec_sema_key_name(key, false);
  int i = 0;
  switch (key) {
  case K_HEAD_DIM:
  case K_MAX_SEQ:
  case K_KEEP_MIN:
    return set_int(s, key, v, msg, cap);
  case K_DTYPE:
    return set_dtype(s, v, msg, cap);
  case K_SPARSITY:
    return want_fraction(name, v, &s->sparsity, msg, cap);
  case K_DROPOUT:
    return want_fraction(name, v, &s->dropout, msg, cap);
  case K_SELECT:
    if (want_word(name, v, select_names, COUNT(select_names), &i, msg, cap))
      return -1;
    s->select = (SelectKind)i;
    return 0;
  case K_CAUSAL:
    return want_bool(name, v, &s->causal, msg, cap);
  case K_BACKWARD:
    return want_bool(name, v, &s->backward, msg, cap);
  case K_TILE:
    return set_tile_auto(s, v, msg, cap);
  }
  return fail(msg, cap, "internal error: no key %d", key);
}

static bool is_pow2(int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

int spec_sema_set_tile(TileSpec *t, int key, const SpecToken *v, char *msg, size_t cap) {
  char name[16], text[64];
  int64_t x = 0;
  snprintf(name, sizeof name, "tile %s", spec_sema_key_name(key, true));
  if (want_int(name, v, &x, msg, cap))
    return -1;
  spec_tok_text(v, text, sizeof text);
  if (key == T_ROWS && !(is_pow2(x) && x <= 64))
    return fail(msg, cap, "tile rows must be a power of two in 1..64, got %s", text);
  if (key == T_COLS && !(is_pow2(x) && x >= 16 && x <= 512))
    return fail(msg, cap, "tile cols must be a power of two in 16..512, got %s", text);
  if (key == T_WARPS && !(x >= 1 && x <= 16))
    return fail(msg, cap, "tile warps must be in 1..16, got %s", text);
  if (key == T_ROWS)
    t->rows = (int)x;
  else if (key == T_COLS)
    t->cols = (int)x;
  else
    t->warps = (int)x;
  return 0;
}

int spec_sema_check_tile(const TileSpec *t, char *msg, size_t cap) {
  if (!t->is_auto && t->warps > 0 && t->rows % t->warps != 0) {
    fail(msg, cap, "tile rows (%d) must be a multiple of warps (%d): each warp takes whole "
         "query rows", t->rows, t->warps);
    return T_WARPS;
  }
  return -1;
}

int spec_sema_check_spec(const Spec *s, char *msg, size_t cap) {
  if (s->keep_min > s->max_seq) {
    fail(msg, cap, "keep_min (%d) must not exceed max_seq (%d)", s->keep_min, s->max_seq);
    return K_KEEP_MIN;
  }
  return -1;
}
