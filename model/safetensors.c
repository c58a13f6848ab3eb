/* safetensors.c: opening a safetensors file (mmap, the 8-byte header length) and
 * serving it: tensors in data order or by name, metadata, dtypes, and conversion of
 * float data to F32 (see safetensors.h). The header's JSON is checked in
 * safetensors_header.c, files are written by safetensors_write.c. */
#include "safetensors_impl.h"
#include "errf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
  const char *name;
  size_t size;
} DTYPES[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2}, [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4}, [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},   [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(StDtype d) {
  return (unsigned)d < ST_DTYPE_COUNT ? DTYPES[d].name : "?";
}

size_t st_dtype_size(StDtype d) {
  return (unsigned)d < ST_DTYPE_COUNT ? DTYPES[d].size : 0;
}

StDtype st_dtype_parse(const char *name) {
  for (int d = 0; d < ST_DTYPE_COUNT; d++)
    if (strcmp(DTYPES[d].name, name) == 0) return (StDtype)d;
  return ST_DTYPE_COUNT;
}

/* ---- open and the fixed-size prefix --------------------------------------- */

static int map_file(SafeTensors *st, char *err, size_t cap) {
  int fd = open(st->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return model_fail(err, cap, "%s: cannot open: %s", st->path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return model_fail(err, cap, "%s: not a regular file", st->path);
  }
  st->size = (size_t)sb.st_size;
  if (st->size < 8) {
    close(fd);
    return model_fail(err, cap,
                "%s: byte 0: file is %zu bytes, too short for the 8-byte header length%s",
                st->path, st->size, st->size == 0 ? " (empty file)" : "");
  }
  void *m = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return model_fail(err, cap, "%s: cannot map: %s", st->path, strerror(errno));
  st->map = m;
  return 0;
}

static int check_prefix(SafeTensors *st, char *err, size_t cap) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | st->map[i];
  if (n > HEADER_MAX)
    return model_fail(err, cap, "%s: byte 0: header length %llu exceeds the limit of %d bytes",
                st->path, (unsigned long long)n, HEADER_MAX);
  if (n > st->size - 8)
    return model_fail(err, cap,
                "%s: byte 0: header length %llu runs past the end of the file "
                "(%zu bytes, so at most %zu)",
                st->path, (unsigned long long)n, st->size, st->size - 8);
  if (n < 2)
    return model_fail(err, cap, "%s: byte 0: header length %llu is too short for a JSON object",
                st->path, (unsigned long long)n);
  st->header_len = (size_t)n;
  st->data_size = st->size - 8 - st->header_len;
  return 0;
}

/* ---- public reader -------------------------------------------------------- */

void st_close(SafeTensors *st) {
  if (!st) return;
  for (int i = 0; i < st->n; i++) free((char *)st->e[i].t.name);
  for (int i = 0; i < st->n_meta; i++) {
    free(st->meta[i].key);
    free(st->meta[i].value);
  }
  free(st->meta);
  free(st->e);
  free(st->by_name);
  if (st->map) munmap((void *)st->map, st->size);
  free(st->path);
  free(st);
}

static int load(SafeTensors *st, char *err, size_t cap) {
  if (map_file(st, err, cap) || check_prefix(st, err, cap)) return -1;
  return st_read_header(st, err, cap);
}

SafeTensors *st_open(const char *path, char *err, size_t cap) {
  SafeTensors *st = calloc(1, sizeof *st);
  if (!st || !(st->path = strdup(path))) {
    free(st);
    model_fail(err, cap, "%s: out of memory", path);
    return NULL;
  }
  if (load(st, err, cap)) {
    st_close(st);
    return NULL;
  }
  return st;
}

int st_count(const SafeTensors *st) { return st->n; }

const StTensor *st_tensor(const SafeTensors *st, int i) {
  return i >= 0 && i < st->n ? &st->e[i].t : NULL;
}

static const StTensor *find_exact(const SafeTensors *st, const char *name) {
  int lo = 0, hi = st->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    const StTensor *t = &st->by_name[mid]->t;
    int c = strcmp(t->name, name);
    if (c == 0) return t;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

static const char *const PREFIXES[] = {"distilbert.", "bert."};

const StTensor *st_find(const SafeTensors *st, const char *name) {
  const StTensor *t = find_exact(st, name);
  if (t) return t;
  for (size_t i = 0; i < sizeof PREFIXES / sizeof *PREFIXES; i++) {
    size_t len = strlen(PREFIXES[i]);
    if (strncmp(name, PREFIXES[i], len) == 0) return find_exact(st, name + len);
  }
  char buf[512];
  for (size_t i = 0; i < sizeof PREFIXES / sizeof *PREFIXES; i++) {
    int k = snprintf(buf, sizeof buf, "%s%s", PREFIXES[i], name);
    if (k > 0 && (size_t)k < sizeof buf && (t = find_exact(st, buf))) return t;
  }
  return NULL;
}

const char *st_metadata(const SafeTensors *st, const char *key) {
  for (int i = 0; i < st->n_meta; i++)
    if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
  return NULL;
}

/* ---- conversion ------------------------------------------------------------ */

static float bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

float st_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (mant << 13)); /* inf, nan */
  if (exp == 0) {                                                           /* 0, subnormal */
    float v = ldexpf((float)mant, -24);
    return sign ? -v : v;
  }
  return bits_to_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

float st_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

static uint64_t load_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

int st_read_f32(const StTensor *t, float *dst, size_t count, char *err, size_t cap) {
  if (count != t->numel)
    return model_fail(err, cap, "%s: tensor \"%s\": asked for %zu values, it holds %zu", t->file,
                t->name, count, t->numel);
  const unsigned char *p = t->data;
  switch (t->dtype) {
  case ST_F32:
    for (size_t i = 0; i < count; i++) dst[i] = bits_to_f32((uint32_t)load_le(p + 4 * i, 4));
    return 0;
  case ST_F16:
    for (size_t i = 0; i < count; i++) dst[i] = st_f16_to_f32((uint16_t)load_le(p + 2 * i, 2));
    return 0;
  case ST_BF16:
    for (size_t i = 0; i < count; i++) dst[i] = st_bf16_to_f32((uint16_t)load_le(p + 2 * i, 2));
    return 0;
  case ST_F64:
    for (size_t i = 0; i < count; i++) {
      uint64_t u = load_le(p + 8 * i, 8);
      double d;
      memcpy(&d, &u, sizeof d);
      dst[i] = (float)d;
    }
    return 0;
  default:
    return model_fail(err, cap, "%s: tensor \"%s\": dtype %s is not a floating-point type (F32, F16, "
                "BF16, F64)", t->file, t->name, st_dtype_name(t->dtype));
  }
}
