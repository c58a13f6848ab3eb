/* safetensors_impl.h: what the safetensors files share (safetensors.h is the API):
 * an open file's state, which safetensors.c maps and serves and safetensors_header.c
 * fills from the header, and the limits and UTF-8 check the writer
 * (safetensors_write.c) applies too. */
#ifndef CRISP_SAFETENSORS_IMPL_H
#define CRISP_SAFETENSORS_IMPL_H

#include "safetensors.h"

#include <stddef.h>
#include <stdint.h>

enum { HEADER_MAX = 100000000 }; /* Hugging Face's MAX_HEADER_SIZE */

typedef struct Entry {
  StTensor t;
  uint64_t begin, end; /* data_offsets, relative to the data section */
} Entry;

typedef struct MetaPair {
  char *key, *value;
} MetaPair;

struct SafeTensors {
  char *path;
  const unsigned char *map;
  size_t size;        /* file size */
  size_t header_len;  /* N */
  size_t data_size;   /* size - 8 - N */
  Entry *e;           /* n entries, sorted by offset */
  int n;
  Entry **by_name;    /* the entries sorted by name */
  MetaPair *meta;
  int n_meta;
};

/* Reads the header of a mapped file whose length check_prefix accepted (map,
 * header_len and data_size set): its text, its JSON, every entry, then that the
 * entries tile the data; fills e (by offset), by_name and meta. 0, or -1 with err. */
int st_read_header(SafeTensors *st, char *err, size_t cap);

/* Offset of the first byte that is not valid UTF-8 text, or n. */
size_t st_utf8_bad_at(const unsigned char *s, size_t n);

#endif
