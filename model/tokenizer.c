/* BERT uncased WordPiece tokenizer, step for step as Hugging Face's Python
 * BertTokenizer (tokenization_bert.py, transformers 4.x; BertTokenizerLegacy in 5.x):
 *   1. split the raw text on the special tokens [PAD] [UNK] [CLS] [SEP] [MASK]
 *      (each occurrence becomes its id);
 *   2. _clean_text: drop U+0000, U+FFFD and category C* except \t \n \r; map
 *      \t \n \r, ' ' and category Zs to ' ';
 *   3. _tokenize_chinese_chars: spaces around each code point in HF's CJK ranges;
 *   4. NFC, then split on whitespace (' ' and U+2028/U+2029, which Python's
 *      str.split() also splits on);
 *   5. per word: Python str.lower() (full mapping: U+0130 -> "i\u0307", final
 *      sigma), NFD, drop category Mn;
 *   6. split on punctuation (ASCII 33-47, 58-64, 91-96, 123-126, category P*);
 *   7. WordPiece: greedy longest match, "##" continuation, [UNK] for a word over
 *      100 code points or with no match.
 * The output is [CLS] pieces [SEP], truncated to max_len keeping [SEP]. */
#include "tokenizer.h"
#include "errf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define MAX_WORD_CHARS 100 /* HF max_input_chars_per_word */

struct Tokenizer {
  Vocab *vocab;
  TokSpecialIds sp;
  int32_t special[5];  /* the same ids in special_names order */
  int max_piece_chars; /* longest vocabulary entry, an upper bound for a match */
};

static const char *const special_names[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

/* ---- creation ---- */

Tokenizer *tok_new(Vocab *vocab, char *err, size_t cap) {
  if (!vocab) { model_fail(err, cap, "no vocabulary"); return NULL; }
  int32_t ids[5];
  for (int i = 0; i < 5; i++) {
    ids[i] = vocab_lookup(vocab, special_names[i], strlen(special_names[i]));
    if (ids[i] < 0) {
      model_fail(err, cap, "vocabulary lacks the special token %s", special_names[i]);
      vocab_free(vocab);
      return NULL;
    }
  }
  Tokenizer *t = calloc(1, sizeof *t);
  if (!t) { model_fail(err, cap, "out of memory"); vocab_free(vocab); return NULL; }
  t->vocab = vocab;
  t->sp = (TokSpecialIds){ids[0], ids[1], ids[2], ids[3], ids[4]};
  memcpy(t->special, ids, sizeof ids);
  t->max_piece_chars = vocab_max_token_chars(vocab);
  return t;
}

Tokenizer *tok_load(const char *vocab_path, char *err, size_t cap) {
  Vocab *v = vocab_load(vocab_path, err, cap);
  if (!v) return NULL;
  Tokenizer *t = tok_new(v, err, cap);
  if (!t && err && cap) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", err);
    model_fail(err, cap, "%s: %s", vocab_path, msg);
  }
  return t;
}

void tok_free(Tokenizer *t) {
  if (!t) return;
  vocab_free(t->vocab);
  free(t);
}

const Vocab *tok_vocab(const Tokenizer *t) { return t->vocab; }
TokSpecialIds tok_special_ids(const Tokenizer *t) { return t->sp; }

/* ---- character classes (HF's _is_control, _is_whitespace, _is_punctuation,
 *      _is_chinese_char; Python's Cased and Case_Ignorable for final sigma) ---- */

static int is_control(int32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return 0;
  switch (utf8proc_category(c)) {
  case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF:
  case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
    return 1;
  default:
    return 0;
  }
}

static int is_whitespace(int32_t c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return 1;
  return utf8proc_category(c) == UTF8PROC_CATEGORY_ZS;
}

static int is_punct(int32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126))
    return 1;
  if (c < 128) return 0;
  utf8proc_category_t k = utf8proc_category(c);
  return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

static int is_cjk(int32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Separators of Python's str.split() that survive _clean_text. */
static int is_split_space(int32_t c) { return c == ' ' || c == 0x2028 || c == 0x2029; }

/* Case_Ignorable: Mn Me Cf Lm Sk and Word_Break MidLetter/MidNumLet/Single_Quote. */
static int is_case_ignorable(int32_t c) {
  static const int32_t mid[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,
                                0x5F4,  0x2018, 0x2019, 0x2024, 0x2027, 0xFE13,
                                0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
  switch (utf8proc_category(c)) {
  case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF:
  case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_SK:
    return 1;
  default:
    break;
  }
  for (size_t i = 0; i < sizeof mid / sizeof mid[0]; i++)
    if (mid[i] == c) return 1;
  return 0;
}

/* Cased (Lowercase, Uppercase or Lt), for code points that are not case-ignorable:
 * Lu Ll Lt, anything with a case mapping, and Other_Lowercase/Other_Uppercase
 * letters and symbols without one (checked against Python 3.12 for every code point). */
static int is_cased(int32_t c) {
  utf8proc_category_t k = utf8proc_category(c);
  if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT)
    return 1;
  if (utf8proc_tolower(c) != c || utf8proc_toupper(c) != c) return 1;
  return c == 0xAA || c == 0xBA || (c >= 0x1F130 && c <= 0x1F149) ||
         (c >= 0x1F150 && c <= 0x1F169) || (c >= 0x1F170 && c <= 0x1F189);
}

/* Python's handle_capital_sigma: U+03A3 at w[i] lowercases to final U+03C2 when a
 * cased letter precedes it and none follows (skipping case-ignorables). */
static int is_final_sigma(const int32_t *w, size_t n, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(w[j - 1])) j--;
  if (j == 0 || !is_cased(w[j - 1])) return 0;
  for (j = i + 1; j < n && is_case_ignorable(w[j]); j++) {}
  return j == n || !is_cased(w[j]);
}

/* ---- growable buffers ---- */

typedef struct {
  int32_t *v;
  size_t n, cap;
} Cps;

static int cps_reserve(Cps *b, size_t extra) {
  if (b->n + extra <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->n + extra) cap *= 2;
  int32_t *v = realloc(b->v, cap * sizeof *v);
  if (!v) return -1;
  b->v = v, b->cap = cap;
  return 0;
}

/* ---- Unicode normalisation with utf8proc (NFD, or NFC when compose) ---- */

/* Canonical ordering of combining marks, as utf8proc_decompose does. */
static void canonical_order(int32_t *v, size_t n) {
  size_t pos = 0;
  while (pos + 1 < n) {
    int cc1 = utf8proc_get_property(v[pos])->combining_class;
    int cc2 = utf8proc_get_property(v[pos + 1])->combining_class;
    if (cc1 > cc2 && cc2 > 0) {
      int32_t tmp = v[pos];
      v[pos] = v[pos + 1], v[pos + 1] = tmp;
      pos = pos > 0 ? pos - 1 : pos + 1;
    } else {
      pos++;
    }
  }
}

static int normalize(const int32_t *in, size_t n, int compose, Cps *out) {
  out->n = 0;
  if (cps_reserve(out, n + 4)) return -1;
  for (size_t i = 0; i < n; i++) {
    int bound = 0;
    for (;;) {
      utf8proc_ssize_t r = utf8proc_decompose_char(
          in[i], out->v + out->n, (utf8proc_ssize_t)(out->cap - out->n),
          UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, &bound);
      if (r < 0) return -1;
      if ((size_t)r <= out->cap - out->n) { out->n += (size_t)r; break; }
      if (cps_reserve(out, (size_t)r)) return -1;
    }
  }
  canonical_order(out->v, out->n);
  if (compose) {
    utf8proc_ssize_t r = utf8proc_normalize_utf32(out->v, (utf8proc_ssize_t)out->n,
                                                  UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (r < 0) return -1;
    out->n = (size_t)r;
  }
  return 0;
}

/* ---- one encoding in progress ---- */

typedef struct {
  const Tokenizer *t;
  int32_t *ids;      /* output */
  int n, limit;      /* ids written; room for pieces ends at limit */
  Cps clean, text;   /* the chunk cleaned, then NFC */
  Cps lower, word;   /* one word lowercased, then NFD without Mn */
  Cps pieces;        /* one word's piece ids */
} Enc;

static void enc_free(Enc *e) {
  free(e->clean.v);
  free(e->text.v);
  free(e->lower.v);
  free(e->word.v);
  free(e->pieces.v);
}

static int enc_full(const Enc *e) { return e->n >= e->limit; }

static void emit(Enc *e, int32_t id) {
  if (e->n < e->limit) e->ids[e->n++] = id;
}

static size_t put_utf8(char *dst, int32_t c) {
  return (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)dst);
}

/* The id of "##"-prefixed (when cont) bytes s[0..len), or -1. */
static int32_t lookup_piece(const Tokenizer *t, const char *s, size_t len, int cont) {
  char key[2 + 4 * MAX_WORD_CHARS];
  if (!cont) return vocab_lookup(t->vocab, s, len);
  key[0] = key[1] = '#';
  memcpy(key + 2, s, len);
  return vocab_lookup(t->vocab, key, len + 2);
}

/* WordPiece on one punctuation-free piece p[0..n): its ids into e->pieces, or a
 * single [UNK]; then emitted. */
static void wordpiece(Enc *e, const int32_t *p, size_t n) {
  char bytes[4 * MAX_WORD_CHARS];
  size_t off[MAX_WORD_CHARS + 1];
  if (n > MAX_WORD_CHARS) { emit(e, e->t->sp.unk); return; }
  off[0] = 0;
  for (size_t i = 0; i < n; i++) off[i + 1] = off[i] + put_utf8(bytes + off[i], p[i]);
  size_t longest = (size_t)e->t->max_piece_chars;
  e->pieces.n = 0;
  for (size_t start = 0; start < n;) {
    size_t end = n - start > longest ? start + longest : n;
    int32_t id = -1;
    for (; end > start; end--)
      if ((id = lookup_piece(e->t, bytes + off[start], off[end] - off[start], start > 0)) >= 0) break;
    if (id < 0) { emit(e, e->t->sp.unk); return; }
    e->pieces.v[e->pieces.n++] = id; /* room reserved by the caller */
    start = end;
  }
  for (size_t i = 0; i < e->pieces.n; i++) emit(e, e->pieces.v[i]);
}

/* Splits w[0..n) at punctuation (each punctuation mark is a piece of its own). */
static void split_punct(Enc *e, const int32_t *w, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i < n && !enc_full(e); i++) {
    if (!is_punct(w[i])) continue;
    if (i > start) wordpiece(e, w + start, i - start);
    wordpiece(e, w + i, 1);
    start = i + 1;
  }
  if (start < n && !enc_full(e)) wordpiece(e, w + start, n - start);
}

/* Python str.lower() of w[0..n) into e->lower. */
static int py_lower(Enc *e, const int32_t *w, size_t n) {
  e->lower.n = 0;
  if (cps_reserve(&e->lower, 2 * n)) return -1;
  for (size_t i = 0; i < n; i++) {
    int32_t c = w[i];
    if (c == 0x130) { /* SpecialCasing: LATIN CAPITAL I WITH DOT ABOVE */
      e->lower.v[e->lower.n++] = 'i';
      e->lower.v[e->lower.n++] = 0x307;
    } else if (c == 0x3A3) {
      e->lower.v[e->lower.n++] = is_final_sigma(w, n, i) ? 0x3C2 : 0x3C3;
    } else {
      e->lower.v[e->lower.n++] = utf8proc_tolower(c);
    }
  }
  return 0;
}

static int all_ascii(const int32_t *w, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (w[i] >= 128) return 0;
  return 1;
}

/* One whitespace-separated word: lowercase, strip accents, punctuation split. */
static int encode_word(Enc *e, const int32_t *w, size_t n) {
  if (all_ascii(w, n)) {
    e->word.n = 0;
    if (cps_reserve(&e->word, n)) return -1;
    for (size_t i = 0; i < n; i++)
      e->word.v[e->word.n++] = w[i] >= 'A' && w[i] <= 'Z' ? w[i] + 32 : w[i];
  } else {
    if (py_lower(e, w, n) || normalize(e->lower.v, e->lower.n, 0, &e->word)) return -1;
    size_t k = 0;
    for (size_t i = 0; i < e->word.n; i++)
      if (utf8proc_category(e->word.v[i]) != UTF8PROC_CATEGORY_MN) e->word.v[k++] = e->word.v[i];
    e->word.n = k;
  }
  e->pieces.n = 0;
  if (cps_reserve(&e->pieces, MAX_WORD_CHARS)) return -1;
  split_punct(e, e->word.v, e->word.n);
  return 0;
}

/* _clean_text and _tokenize_chinese_chars of s[0..len) (valid UTF-8) into e->clean. */
static int clean_text(Enc *e, const char *s, size_t len) {
  e->clean.n = 0;
  if (cps_reserve(&e->clean, 3 * len)) return -1;
  const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
  for (size_t i = 0; i < len;) {
    int32_t c = p[i];
    if (c < 128) i++;
    else i += (size_t)utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &c);
    if (c == 0 || c == 0xFFFD || is_control(c)) continue;
    if (is_whitespace(c)) {
      e->clean.v[e->clean.n++] = ' ';
    } else if (is_cjk(c)) {
      e->clean.v[e->clean.n++] = ' ';
      e->clean.v[e->clean.n++] = c;
      e->clean.v[e->clean.n++] = ' ';
    } else {
      e->clean.v[e->clean.n++] = c;
    }
  }
  return 0;
}

/* The index of the special token spelled by w[0..n), or -1 (HF never_split). */
static int special_word(const int32_t *w, size_t n) {
  for (int k = 0; k < 5; k++) {
    const char *name = special_names[k];
    size_t i = 0;
    while (i < n && name[i] && w[i] == (unsigned char)name[i]) i++;
    if (i == n && !name[i]) return k;
  }
  return -1;
}

/* Text without special tokens: basic tokenisation then WordPiece. A word that
 * spells a special token only after cleaning (e.g. "[C\0LS]") is that token, as
 * in HF, where such words are in BasicTokenizer's never_split. */
static int encode_chunk(Enc *e, const char *s, size_t len) {
  if (clean_text(e, s, len)) return -1;
  const Cps *text = &e->clean;
  if (!all_ascii(e->clean.v, e->clean.n)) {
    if (normalize(e->clean.v, e->clean.n, 1, &e->text)) return -1;
    text = &e->text;
  }
  size_t start = 0;
  for (size_t i = 0; i <= text->n && !enc_full(e); i++) {
    if (i < text->n && !is_split_space(text->v[i])) continue;
    int k = i > start ? special_word(text->v + start, i - start) : -1;
    if (k >= 0) emit(e, e->t->special[k]);
    else if (i > start && encode_word(e, text->v + start, i - start)) return -1;
    start = i + 1;
  }
  return 0;
}

/* The leftmost special token in s[0..len): its position, or len; *which = index. */
static size_t find_special(const char *s, size_t len, int *which) {
  for (const char *p = s; (p = memchr(p, '[', len - (size_t)(p - s))) != NULL; p++) {
    size_t left = len - (size_t)(p - s);
    for (int k = 0; k < 5; k++) {
      size_t kn = strlen(special_names[k]);
      if (kn <= left && memcmp(p, special_names[k], kn) == 0) {
        *which = k;
        return (size_t)(p - s);
      }
    }
  }
  return len;
}

static int encode_text(Enc *e, const char *s, size_t len) {
  while (len > 0 && !enc_full(e)) {
    int k = 0;
    size_t at = find_special(s, len, &k);
    if (at > 0 && encode_chunk(e, s, at)) return -1;
    if (at == len) break;
    emit(e, e->t->special[k]);
    size_t kn = strlen(special_names[k]);
    s += at + kn, len -= at + kn;
  }
  return 0;
}

int tok_encode(const Tokenizer *t, const char *text, size_t len, int max_len, int32_t *ids,
               int *n, char *err, size_t cap) {
  if (!t || !ids || !n || (!text && len)) { model_fail(err, cap, "tok_encode: NULL argument"); return -1; }
  if (max_len < 2) { model_fail(err, cap, "max_len %d is too small (need >= 2 for [CLS] and [SEP])", max_len); return -1; }
  size_t bad = utf8_find_invalid(text, len);
  if (bad != (size_t)-1) {
    model_fail(err, cap, "invalid UTF-8 at byte offset %zu (byte 0x%02X)", bad, (unsigned char)text[bad]);
    return -1;
  }
  Enc e = {.t = t, .ids = ids, .limit = max_len - 1};
  emit(&e, t->sp.cls);
  int rc = encode_text(&e, text, len);
  enc_free(&e);
  if (rc) { model_fail(err, cap, "out of memory"); return -1; }
  ids[e.n++] = t->sp.sep;
  *n = e.n;
  return 0;
}

/* ---- batches ---- */

void tok_batch_free(TokBatch *b) {
  if (!b) return;
  free(b->ids);
  free(b->lengths);
  memset(b, 0, sizeof *b);
}

/* Copies the rows of tmp (batch x max_len) into out, padded to the longest. */
static int batch_pack(const Tokenizer *t, const int32_t *tmp, int batch, int max_len,
                      TokBatch *out) {
  int longest = 0;
  for (int b = 0; b < batch; b++)
    if (out->lengths[b] > longest) longest = out->lengths[b];
  out->seq_len = longest;
  out->ids = malloc((size_t)batch * (size_t)(longest ? longest : 1) * sizeof *out->ids);
  if (!out->ids) return -1;
  for (int b = 0; b < batch; b++) {
    int32_t *row = out->ids + (size_t)b * (size_t)longest;
    memcpy(row, tmp + (size_t)b * (size_t)max_len, (size_t)out->lengths[b] * sizeof *row);
    for (int i = out->lengths[b]; i < longest; i++) row[i] = t->sp.pad;
  }
  return 0;
}

int tok_encode_batch(const Tokenizer *t, const char *const *texts, const size_t *lens, int batch,
                     int max_len, TokBatch *out, char *err, size_t cap) {
  if (!out) { model_fail(err, cap, "tok_encode_batch: NULL output"); return -1; }
  memset(out, 0, sizeof *out);
  if (batch < 0 || (batch > 0 && !texts) || max_len < 2) {
    model_fail(err, cap, "tok_encode_batch: bad arguments (batch %d, max_len %d)", batch, max_len);
    return -1;
  }
  int32_t *tmp = malloc((size_t)(batch ? batch : 1) * (size_t)max_len * sizeof *tmp);
  out->lengths = calloc((size_t)(batch ? batch : 1), sizeof *out->lengths);
  int rc = tmp && out->lengths ? 0 : -1;
  if (rc) model_fail(err, cap, "out of memory");
  for (int b = 0; b < batch && rc == 0; b++) {
    char msg[256];
    size_t len = texts[b] ? (lens ? lens[b] : strlen(texts[b])) : 0;
    int n = 0;
    rc = tok_encode(t, texts[b] ? texts[b] : "", len, max_len, tmp + (size_t)b * (size_t)max_len,
                    &n, msg, sizeof msg);
    if (rc) model_fail(err, cap, "text %d: %s", b, msg);
    out->lengths[b] = n;
  }
  if (rc == 0 && batch_pack(t, tmp, batch, max_len, out)) {
    model_fail(err, cap, "out of memory");
    rc = -1;
  }
  free(tmp);
  if (rc) { tok_batch_free(out); return -1; }
  out->batch = batch;
  return 0;
}
