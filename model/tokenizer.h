/* BERT uncased WordPiece tokenizer, matching Hugging Face's Python BertTokenizer
 * (BasicTokenizer with do_lower_case=True, tokenize_chinese_chars=True,
 * strip_accents=None; WordpieceTokenizer with max_input_chars_per_word=100;
 * special tokens written in the text kept whole) id for id. Unicode data comes
 * from utf8proc. Input must be valid UTF-8: anything else is an error naming the
 * byte offset. See docs/tokenizer.md for the pipeline and the known divergences. */
#ifndef CRISP_TOKENIZER_H
#define CRISP_TOKENIZER_H

#include "vocab.h"

#include <stddef.h>
#include <stdint.h>

typedef struct Tokenizer Tokenizer;

typedef struct {
  int32_t pad, unk, cls, sep, mask; /* ids of [PAD] [UNK] [CLS] [SEP] [MASK] */
} TokSpecialIds;

/* Loads vocab_path (see vocab.h) and looks the special tokens up by name; NULL and
 * a message in err on failure. */
Tokenizer *tok_load(const char *vocab_path, char *err, size_t cap);

/* Same from a vocabulary already built; the tokenizer takes ownership of vocab
 * (freed here on failure too). */
Tokenizer *tok_new(Vocab *vocab, char *err, size_t cap);

void tok_free(Tokenizer *t);

const Vocab *tok_vocab(const Tokenizer *t);
TokSpecialIds tok_special_ids(const Tokenizer *t);

/* Encodes text[0..len) as [CLS] pieces... [SEP] into ids (room for max_len ids,
 * max_len >= 2); word pieces past max_len - 2 are dropped, [SEP] is kept. Sets *n
 * to the count. Returns 0, or -1 with a message in err ("invalid UTF-8 at byte
 * offset N", a bad max_len, out of memory). Thread-safe for a shared t. */
int tok_encode(const Tokenizer *t, const char *text, size_t len, int max_len, int32_t *ids,
               int *n, char *err, size_t cap);

/* A batch padded to its longest sequence ("dynamic padding"). */
typedef struct {
  int batch;        /* rows */
  int seq_len;      /* the longest row's length; every row is padded to it */
  int32_t *ids;     /* batch x seq_len, row-major; [PAD] after each row's length */
  int32_t *lengths; /* tokens in each row, [CLS] and [SEP] included: the attention
                       length (positions [0, lengths[b]) are attended) */
} TokBatch;

/* Encodes texts[0..batch) (lens[i] bytes each; lens NULL = NUL-terminated) with
 * tok_encode's rules. Returns 0, or -1 with "text I: ..." in err and *out zeroed. */
int tok_encode_batch(const Tokenizer *t, const char *const *texts, const size_t *lens, int batch,
                     int max_len, TokBatch *out, char *err, size_t cap);

void tok_batch_free(TokBatch *b);

#endif
