/* checkpoint.c: a run's resumable state in one file, written atomically.
 *
 * Layout (little-endian, as the host writes it; the magic's version bump guards
 * layout changes):
 *     "CRISPCK2" | u64 header fields (see put_state) | u64 n_floats | params[n]
 *     | AdamW: i64 t, m[n], v[n] | u64 checksum of everything before
 * params, m and v are the model's parameter block as it lies in memory (model.c's
 * place_params). Format 2: each encoder block's q, k, v weights adjacent, then their
 * biases (the fused q/k/v projection); format 1 ("CRISPCK1") had them in hf_params
 * order, and is refused by name rather than loaded into the wrong places.
 * The checksum is a 64-bit multiply-xor hash over 8-byte words. A load first reads
 * the whole file through the hash (so a short, altered or foreign file is refused
 * before anything is applied), then reads it again into place. */
#include "train.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char MAGIC[8] = {'C', 'R', 'I', 'S', 'P', 'C', 'K', '2'};
static const char MAGIC_V1[8] = {'C', 'R', 'I', 'S', 'P', 'C', 'K', '1'};

typedef struct Hash {
  uint64_t h;
  unsigned char pend[8];
  int npend;
} Hash;

static void hash_word(Hash *s, uint64_t w) {
  s->h ^= w;
  s->h *= 0x9E3779B97F4A7C15ull;
  s->h ^= s->h >> 29;
}

static void hash_bytes(Hash *s, const void *data, size_t n) {
  const unsigned char *p = data;
  while (n && s->npend) {
    s->pend[s->npend++] = *p++, n--;
    if (s->npend == 8) {
      uint64_t w;
      memcpy(&w, s->pend, 8);
      hash_word(s, w);
      s->npend = 0;
    }
  }
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    hash_word(s, w);
  }
  while (n)
    s->pend[s->npend++] = *p++, n--;
}

static uint64_t hash_final(Hash *s) {
  uint64_t h = s->h;
  if (s->npend) {
    uint64_t w = 0;
    memcpy(&w, s->pend, (size_t)s->npend);
    h ^= w + 0x51ull * (uint64_t)s->npend;
    h *= 0x9E3779B97F4A7C15ull;
  }
  return h ^ (h >> 31);
}

/* ---- writing ---------------------------------------------------------------------- */

typedef struct W {
  FILE *f;
  Hash h;
  bool bad;
} W;

static void put(W *w, const void *p, size_t n) {
  if (w->bad || n == 0)
    return;
  hash_bytes(&w->h, p, n);
  if (fwrite(p, 1, n, w->f) != n)
    w->bad = true;
}
static void put_u64(W *w, uint64_t v) { put(w, &v, 8); }
static void put_i64(W *w, int64_t v) { put(w, &v, 8); }
static void put_f64(W *w, double v) { put(w, &v, 8); }

/* The state, field by field (so struct padding never reaches the file); the budget's
 * configuration comes from the run's config, not from here. */
static void put_state(W *w, const TrainState *st) {
  put_u64(w, st->config_hash);
  put_i64(w, st->opt_step);
  put_i64(w, st->micro);
  put_i64(w, st->epoch);
  put_i64(w, st->epoch_pos);
  put_i64(w, st->metrics_bytes);
  put_f64(w, st->train_seconds);
  put_i64(w, st->tokens);
  put_f64(w, st->best_accuracy);
  put_i64(w, st->best_step);
  const Budget *b = &st->budget;
  put_i64(w, b->layers);
  put_i64(w, b->updates);
  for (int l = 0; l < MODEL_MAX_LAYERS; l++) {
    put_f64(w, b->s[l]);
    put_f64(w, b->c_ema[l]);
    put_f64(w, b->c_last[l]);
  }
}

static int fsync_dir_of(const char *path) {
  char *copy = strdup(path);
  if (!copy)
    return -1;
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
  free(copy);
  if (fd < 0)
    return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

int checkpoint_save(const char *path, const TrainState *st, const Model *m, const AdamW *o,
                    char *err, size_t cap) {
  char tmp[1400];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  W w = {.f = fopen(tmp, "wb")};
  if (!w.f) {
    snprintf(err, cap, "%s: %s", tmp, strerror(errno));
    return -1;
  }
  size_t n = m->n_param_floats;
  if (o->n != n) {
    fclose(w.f);
    unlink(tmp);
    snprintf(err, cap, "%s: optimizer holds %zu floats, model %zu", path, o->n, n);
    return -1;
  }
  put(&w, MAGIC, 8);
  put_state(&w, st);
  put_u64(&w, n);
  put(&w, m->params_mem, n * sizeof(float));
  put_i64(&w, o->t);
  put(&w, o->m, n * sizeof(float));
  put(&w, o->v, n * sizeof(float));
  uint64_t sum = hash_final(&w.h);
  if (!w.bad && fwrite(&sum, 8, 1, w.f) != 1)
    w.bad = true;
  int e = errno;
  if (!w.bad && (fflush(w.f) || fsync(fileno(w.f))))
    w.bad = true, e = errno;
  if (fclose(w.f))
    w.bad = true, e = errno;
  if (w.bad) {
    unlink(tmp);
    snprintf(err, cap, "%s: write failed: %s", tmp, strerror(e));
    return -1;
  }
  if (rename(tmp, path)) {
    e = errno;
    unlink(tmp);
    snprintf(err, cap, "%s: rename from %s failed: %s", path, tmp, strerror(e));
    return -1;
  }
  fsync_dir_of(path);
  return 0;
}

/* ---- reading ---------------------------------------------------------------------- */

typedef struct R {
  FILE *f;
  Hash h;
  bool bad;
  bool hash_only;   /* pass 1: read through scratch, only hashing */
  char *scratch;
  size_t scratch_cap;
} R;

static void get(R *r, void *p, size_t n) {
  if (r->bad || n == 0)
    return;
  if (fread(p, 1, n, r->f) != n) {
    r->bad = true;
    return;
  }
  hash_bytes(&r->h, p, n);
}

/* Reads n bytes into dst, or (pass 1, dst NULL) through the scratch buffer. */
static void get_big(R *r, void *dst, size_t n) {
  if (dst) {
    get(r, dst, n);
    return;
  }
  while (n && !r->bad) {
    size_t k = n < r->scratch_cap ? n : r->scratch_cap;
    get(r, r->scratch, k);
    n -= k;
  }
}
static uint64_t get_u64(R *r) {
  uint64_t v = 0;
  get(r, &v, 8);
  return v;
}
static int64_t get_i64(R *r) { return (int64_t)get_u64(r); }
static double get_f64(R *r) {
  double v = 0;
  get(r, &v, 8);
  return v;
}

static void get_state(R *r, TrainState *st) {
  st->config_hash = get_u64(r);
  st->opt_step = get_i64(r);
  st->micro = get_i64(r);
  st->epoch = get_i64(r);
  st->epoch_pos = get_i64(r);
  st->metrics_bytes = get_i64(r);
  st->train_seconds = get_f64(r);
  st->tokens = get_i64(r);
  st->best_accuracy = get_f64(r);
  st->best_step = get_i64(r);
  Budget *b = &st->budget;
  b->layers = (int)get_i64(r);
  b->updates = get_i64(r);
  for (int l = 0; l < MODEL_MAX_LAYERS; l++) {
    b->s[l] = get_f64(r);
    b->c_ema[l] = get_f64(r);
    b->c_last[l] = get_f64(r);
  }
}

/* One pass; dst_* NULL on the hashing pass. */
static int read_pass(const char *path, R *r, TrainState *st, size_t n_expect, float *params,
                     float *mom_m, float *mom_v, int64_t *t, char *err, size_t cap) {
  char magic[8];
  get(r, magic, 8);
  if (!r->bad && !memcmp(magic, MAGIC_V1, 8)) {
    snprintf(err, cap, "%s: a checkpoint in format 1 (an older crisp, whose parameter block "
             "had another order); this crisp reads format 2: resume with the crisp that wrote "
             "it, or start the run again", path);
    return -1;
  }
  if (r->bad || memcmp(magic, MAGIC, 8)) {
    snprintf(err, cap, "%s: not a crisp checkpoint (bad magic)", path);
    return -1;
  }
  get_state(r, st);
  uint64_t n = get_u64(r);
  if (r->bad) {
    snprintf(err, cap, "%s: truncated (in the header)", path);
    return -1;
  }
  if (n != n_expect) {
    snprintf(err, cap, "%s: holds %llu parameters, the model has %zu (another model?)", path,
             (unsigned long long)n, n_expect);
    return -1;
  }
  get_big(r, params, n * sizeof(float));
  *t = get_i64(r);
  get_big(r, mom_m, n * sizeof(float));
  get_big(r, mom_v, n * sizeof(float));
  uint64_t want = hash_final(&r->h), got = 0;
  if (r->bad || fread(&got, 8, 1, r->f) != 1) {
    snprintf(err, cap, "%s: truncated", path);
    return -1;
  }
  if (got != want) {
    snprintf(err, cap, "%s: checksum mismatch (the file is corrupt)", path);
    return -1;
  }
  if (fgetc(r->f) != EOF) {
    snprintf(err, cap, "%s: trailing bytes after the checksum", path);
    return -1;
  }
  return 0;
}

int checkpoint_load(const char *path, TrainState *st, Model *m, AdamW *o, char *err,
                    size_t cap) {
  size_t n = m->n_param_floats;
  if (o->n != n) {
    snprintf(err, cap, "%s: optimizer holds %zu floats, model %zu", path, o->n, n);
    return -1;
  }
  for (int pass = 0; pass < 2; pass++) {
    R r = {.f = fopen(path, "rb")};
    if (!r.f) {
      snprintf(err, cap, "%s: %s", path, strerror(errno));
      return -1;
    }
    TrainState tmp = *st;   /* keeps st->budget.cfg */
    int64_t t = 0;
    int rc;
    if (pass == 0) {
      r.scratch_cap = 1 << 20;
      r.scratch = malloc(r.scratch_cap);
      if (!r.scratch) {
        fclose(r.f);
        snprintf(err, cap, "%s: out of memory", path);
        return -1;
      }
      rc = read_pass(path, &r, &tmp, n, NULL, NULL, NULL, &t, err, cap);
      free(r.scratch);
    } else {
      rc = read_pass(path, &r, &tmp, n, m->params_mem, o->m, o->v, &t, err, cap);
      if (rc == 0)
        *st = tmp, o->t = t;
    }
    fclose(r.f);
    if (rc)
      return -1;
  }
  return 0;
}
