/* hf_impl.h: what the hf files share (hf.h is the API): the table of config.json's
 * numeric keys, which hf.c reads and checks with and hf_save.c writes from, the path
 * of a config given as a file or its folder, and reading a small file whole. */
#ifndef CRISP_HF_IMPL_H
#define CRISP_HF_IMPL_H

#include "hf.h"

#include <stddef.h>

typedef enum Kind { K_INT, K_FLOAT } Kind;

typedef struct Key {
  const char *distilbert, *bert; /* JSON key per type; NULL: not in that type */
  Kind kind;
  size_t offset;                 /* into ModelConfig */
  double lo, hi;                 /* inclusive range */
} Key;

/* One row per numeric field of ModelConfig (hf.c), hf_n_keys of them. */
extern const Key hf_keys[];
extern const int hf_n_keys;

/* The field's JSON key for the type (NULL: not in that type's config.json). */
const char *hf_key_name(const Key *k, ModelType t);
double hf_key_get(const ModelConfig *c, const Key *k);

/* path/config.json when path is a folder, else path. */
void hf_config_path(const char *path, char *out, size_t n);
/* The whole file (at most 16 MiB), NUL-terminated, in *out (caller frees). */
int hf_slurp(const char *path, char **out, size_t *len, char *err, size_t cap);

#endif
