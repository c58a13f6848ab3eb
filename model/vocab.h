/* WordPiece vocabulary (vocab.txt): one token per line, id = line number from 0.
 * The loader is strict: an empty line, a duplicate token, a carriage return (CRLF
 * file), a NUL byte or invalid UTF-8 is an error "FILE:LINE: ..." and nothing is
 * returned. Lookup of a token's bytes is a hash-table probe. */
#ifndef CRISP_VOCAB_H
#define CRISP_VOCAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct Vocab Vocab;

/* Loads path; on error returns NULL and writes "path:line: message" into err. */
Vocab *vocab_load(const char *path, char *err, size_t cap);

/* Builds a vocabulary from n tokens in id order (same checks; "where" names the
 * source in messages, lines are ids + 1). */
Vocab *vocab_from_tokens(const char *const *tokens, int32_t n, const char *where,
                         char *err, size_t cap);

void vocab_free(Vocab *v);

/* The id of the token whose UTF-8 bytes are s[0..len), or -1. */
int32_t vocab_lookup(const Vocab *v, const char *s, size_t len);

int32_t vocab_size(const Vocab *v);

/* The token for id (NUL-terminated), or NULL when id is out of range. */
const char *vocab_token(const Vocab *v, int32_t id);

/* The longest token in code points, not counting a leading "##". */
int vocab_max_token_chars(const Vocab *v);

/* Strict UTF-8 check (no overlongs, surrogates or code points past U+10FFFF):
 * returns the byte offset of the first invalid sequence, or (size_t)-1. */
size_t utf8_find_invalid(const char *s, size_t len);

/* Reads a whole file into a NUL-terminated buffer; NULL and "path: reason" in
 * err on failure. */
char *read_whole_file(const char *path, size_t *len, char *err, size_t cap);

#endif
