/* Reading manifests back (see rt_manifest.h). */
#include "rt_manifest.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compiler/diag.h"
#include "fsutil.h"
#include "json_whole.h"

const char *rt_type_name(RtType t) {
  static const char *const names[] = {"i32", "i64", "f32", "f64"};
  return (unsigned)t < 4 ? names[t] : "?";
}

static int parse_type(const char *s, RtType *t) {
  for (int i = 0; i < 4; i++)
    if (!strcmp(s, rt_type_name((RtType)i))) {
      *t = (RtType)i;
      return 0;
    }
  return -1;
}

typedef struct {
  char *err;
  size_t cap;
  const char *where;   /* "kernel NAME" etc., for messages */
} P;

static int fail(P *p, const char *field, const char *what) {
  snprintf(p->err, p->cap, "manifest: %s%s%s: %s", p->where ? p->where : "",
           p->where ? ": " : "", field, what);
  return -1;
}

static int get_string(P *p, const cJSON *obj, const char *key, char *out, size_t cap) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!cJSON_IsString(v) || !v->valuestring)
    return fail(p, key, "missing or not a string");
  if (strlen(v->valuestring) >= cap)
    return fail(p, key, "too long");
  snprintf(out, cap, "%s", v->valuestring);
  return 0;
}

static int get_number(P *p, const cJSON *obj, const char *key, double lo, double hi,
                      double *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!cJSON_IsNumber(v))
    return fail(p, key, "missing or not a number");
  if (!(v->valuedouble >= lo && v->valuedouble <= hi))
    return fail(p, key, "out of range");
  *out = v->valuedouble;
  return 0;
}

static int get_int(P *p, const cJSON *obj, const char *key, double lo, double hi, int64_t *out) {
  double d;
  if (get_number(p, obj, key, lo, hi, &d))
    return -1;
  if (d != floor(d))
    return fail(p, key, "not an integer");
  *out = (int64_t)d;
  return 0;
}

static int get_bool(P *p, const cJSON *obj, const char *key, bool *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!cJSON_IsBool(v))
    return fail(p, key, "missing or not a boolean");
  *out = cJSON_IsTrue(v);
  return 0;
}

static int parse_param(P *p, const cJSON *j, RtParam *out) {
  char type[16], role[16];
  if (!cJSON_IsObject(j))
    return fail(p, "params", "an entry is not an object");
  if (get_string(p, j, "name", out->name, sizeof out->name) ||
      get_string(p, j, "type", type, sizeof type) || get_string(p, j, "role", role, sizeof role))
    return -1;
  size_t n = strlen(type);
  out->is_buf = n > 0 && type[n - 1] == '*';
  if (out->is_buf)
    type[n - 1] = 0;
  if (parse_type(type, &out->type))
    return fail(p, out->name, "unknown type");
  static const char *const roles[] = {"in", "out", "inout", "scalar"};
  int r = -1;
  for (int i = 0; i < 4; i++)
    if (!strcmp(role, roles[i]))
      r = i;
  if (r < 0 || (r == RT_ROLE_SCALAR) == out->is_buf)
    return fail(p, out->name, "bad role for its type");
  out->role = (RtRole)r;
  return 0;
}

static int parse_grid(P *p, const cJSON *j, RtKernelInfo *k) {
  if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 3)
    return fail(p, "grid", "not an array of 3 dimensions");
  for (int d = 0; d < 3; d++) {
    const cJSON *g = cJSON_GetArrayItem(j, d);
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(g, "params");
    int64_t div;
    if (!cJSON_IsArray(names) || cJSON_GetArraySize(names) > 2)
      return fail(p, "grid", "params is not an array of at most 2 names");
    if (get_int(p, g, "div", 1, 1 << 30, &div))
      return -1;
    k->grid_div[d] = (int)div;
    k->grid_params[d][0] = k->grid_params[d][1] = -1;
    for (int i = 0; i < cJSON_GetArraySize(names); i++) {
      const cJSON *nm = cJSON_GetArrayItem(names, i);
      int idx = cJSON_IsString(nm) ? rt_param_index(k, nm->valuestring) : -1;
      if (idx < 0 || k->params[idx].is_buf || k->params[idx].type != RT_T_I32)
        return fail(p, "grid", "a dimension names something that is not an i32 parameter");
      k->grid_params[d][i] = idx;
    }
  }
  return 0;
}

static int parse_kernel(P *p, const cJSON *j, RtKernelInfo *k) {
  int64_t v;
  memset(k, 0, sizeof *k);
  if (!cJSON_IsObject(j))
    return fail(p, "kernels", "an entry is not an object");
  if (get_string(p, j, "name", k->name, sizeof k->name))
    return -1;
  char where[128];
  snprintf(where, sizeof where, "kernel %s", k->name);
  p->where = where;
  if (get_int(p, j, "threads", 32, 1024, &v))
    return -1;
  if (v % 32)
    return fail(p, "threads", "not a multiple of 32");
  k->threads = (int)v;
  if (get_int(p, j, "shared_bytes", 0, 1 << 30, &v))
    return -1;
  k->shared_bytes = v;
  const cJSON *params = cJSON_GetObjectItemCaseSensitive(j, "params");
  if (!cJSON_IsArray(params) || cJSON_GetArraySize(params) > RT_MAX_PARAMS)
    return fail(p, "params", "missing, not an array or too long");
  k->nparams = cJSON_GetArraySize(params);
  for (int i = 0; i < k->nparams; i++)
    if (parse_param(p, cJSON_GetArrayItem(params, i), &k->params[i]))
      return -1;
  if (parse_grid(p, cJSON_GetObjectItemCaseSensitive(j, "grid"), k))
    return -1;
  p->where = NULL;
  return 0;
}

static int parse_spec(P *p, const cJSON *j, Spec *s) {
  spec_defaults(s);
  if (!cJSON_IsObject(j))
    return fail(p, "spec", "missing or not an object");
  p->where = "spec";
  char sel[32], dtype[16];
  int64_t v;
  if (get_string(p, j, "name", s->name, sizeof s->name) ||
      get_string(p, j, "select", sel, sizeof sel) ||
      get_string(p, j, "dtype", dtype, sizeof dtype))
    return -1;
  int found = -1;
  for (int k = SEL_NONE; k <= SEL_LAYER_QUANTILE; k++)
    if (!strcmp(sel, select_name((SelectKind)k)))
      found = k;
  if (found < 0)
    return fail(p, "select", "unknown");
  s->select = (SelectKind)found;
  found = -1;
  for (int k = DTYPE_F32; k <= DTYPE_F16; k++)
    if (!strcmp(dtype, dtype_name((DType)k)))
      found = k;
  if (found < 0)
    return fail(p, "dtype", "unknown");
  s->dtype = (DType)found;
  if (get_int(p, j, "head_dim", 1, 4096, &v))
    return -1;
  s->head_dim = (int)v;
  if (get_int(p, j, "max_seq", 1, 1 << 20, &v))
    return -1;
  s->max_seq = (int)v;
  if (get_int(p, j, "keep_min", 1, 1 << 20, &v))
    return -1;
  s->keep_min = (int)v;
  if (get_number(p, j, "sparsity", 0, 1, &s->sparsity) ||
      get_number(p, j, "dropout", 0, 1, &s->dropout) || get_bool(p, j, "causal", &s->causal) ||
      get_bool(p, j, "backward", &s->backward))
    return -1;
  /* The fields one by one do not make a valid spec (keep_min <= max_seq, dropout < 1,
   * the name an identifier, ...): the spec parser's own rules, run on the spec's
   * canonical text, so an edited manifest cannot hand the compiler (on the CPU) or the
   * checks a spec that crispc would refuse. */
  char text[SPEC_CANONICAL_MAX];
  spec_canonical(s, text, sizeof text);
  Spec again;
  Diag d;
  p->where = NULL;
  if (spec_parse("manifest", text, strlen(text), &again, &d))
    return fail(p, "spec", d.msg);
  p->where = NULL;
  return 0;
}

/* The whole text as one JSON value (json_whole.h); on error "line L, column C: ...". */
static cJSON *parse_whole(P *p, const char *text, size_t len) {
  JsonWhere w;
  cJSON *j = json_whole(text, len, &w);
  if (!j) {
    char where[64];
    snprintf(where, sizeof where, "line %d, column %d", w.line, w.col);
    fail(p, where, w.what);
  }
  return j;
}

int rt_manifest_parse(const char *text, size_t len, RtManifest *out, char *err, size_t cap) {
  P p = {err, cap, NULL};
  memset(out, 0, sizeof *out);
  cJSON *root = parse_whole(&p, text, len);
  if (!root)
    return -1;
  int rc = -1;
  int64_t v;
  const cJSON *kernels = cJSON_GetObjectItemCaseSensitive(root, "kernels");
  const cJSON *tile = cJSON_GetObjectItemCaseSensitive(root, "tile");
  if (!cJSON_IsObject(root)) {
    fail(&p, "text", "not a JSON object");
    goto done;
  }
  if (get_int(&p, root, "format", 1, 1, &v))
    goto done;
  out->format = (int)v;
  if (get_string(&p, root, "compiler", out->compiler, sizeof out->compiler) ||
      get_string(&p, root, "llvm", out->llvm, sizeof out->llvm) ||
      get_string(&p, root, "target", out->target, sizeof out->target) ||
      get_string(&p, root, "spec_hash", out->spec_hash, sizeof out->spec_hash) ||
      parse_spec(&p, cJSON_GetObjectItemCaseSensitive(root, "spec"), &out->spec))
    goto done;
  if (!cJSON_IsObject(tile)) {
    fail(&p, "tile", "missing or not an object");
    goto done;
  }
  if (get_int(&p, tile, "rows", 1, 1024, &v))
    goto done;
  out->tile_rows = (int)v;
  if (get_int(&p, tile, "warps", 1, 32, &v))
    goto done;
  out->tile_warps = (int)v;
  if (!cJSON_IsArray(kernels) || cJSON_GetArraySize(kernels) < 1 ||
      cJSON_GetArraySize(kernels) > RT_MAX_KERNELS) {
    fail(&p, "kernels", "missing, empty or too long");
    goto done;
  }
  out->nkernels = cJSON_GetArraySize(kernels);
  for (int i = 0; i < out->nkernels; i++)
    if (parse_kernel(&p, cJSON_GetArrayItem(kernels, i), &out->kernels[i]))
      goto done;
  rc = 0;
done:
  cJSON_Delete(root);
  return rc;
}

int rt_manifest_load(const char *path, RtManifest *out, char *err, size_t cap) {
  char *text;
  size_t len;
  if (rt_read_file(path, &text, &len, err, cap))
    return -1;
  char inner[512];
  int rc = rt_manifest_parse(text, len, out, inner, sizeof inner);
  if (rc)
    snprintf(err, cap, "%s: %s", path, inner);
  free(text);
  return rc;
}

/* ---- the PTX against its manifest ---- */

/* Bytes of a PTX parameter type (.u64, .s32, .f32, .b64, ...), 0 if not one. */
static int ptx_param_bytes(const char *t) {
  if ((t[0] != 'u' && t[0] != 's' && t[0] != 'f' && t[0] != 'b') || !strchr("0123456789", t[1]))
    return 0;
  int bits = atoi(t + 1);
  return bits == 32 || bits == 64 ? bits / 8 : 0;
}

static int manifest_param_bytes(const RtParam *p) {
  return p->is_buf || p->type == RT_T_I64 || p->type == RT_T_F64 ? 8 : 4;
}

/* One kernel: ".entry NAME(" then ".param .TYPE NAME," ... ")". */
static int check_entry(const RtKernelInfo *k, const char *ptx, char *err, size_t cap) {
  char head[128];
  snprintf(head, sizeof head, ".entry %s(", k->name);
  const char *at = strstr(ptx, head);
  if (!at)
    return snprintf(err, cap, "kernel %s: named in the manifest, not in the PTX", k->name), -1;
  at += strlen(head);
  const char *close = strchr(at, ')');
  int n = 0;
  for (const char *p = strstr(at, ".param"); p && close && p < close; p = strstr(p, ".param")) {
    p += strlen(".param");
    while (*p == ' ' || *p == '\t')
      p++;
    int bytes = *p == '.' ? ptx_param_bytes(p + 1) : 0;
    if (n < k->nparams && bytes != manifest_param_bytes(&k->params[n]))
      return snprintf(err, cap, "kernel %s: parameter %d (%s): %d bytes in the manifest, %.*s "
                      "in the PTX", k->name, n, k->params[n].name,
                      manifest_param_bytes(&k->params[n]), (int)strcspn(p, " \t,)\n"), p), -1;
    n++;
  }
  if (!close || n != k->nparams)
    return snprintf(err, cap, "kernel %s: the manifest lists %d parameters, the PTX %d",
                    k->name, k->nparams, n), -1;
  return 0;
}

int rt_manifest_check_ptx(const RtManifest *m, const char *ptx, size_t len, char *err,
                          size_t cap) {
  if (strnlen(ptx, len) != len)
    return snprintf(err, cap, "PTX: a NUL byte in the text"), -1;
  char *text = malloc(len + 1);   /* NUL-terminated for strstr */
  if (!text)
    return snprintf(err, cap, "out of memory"), -1;
  memcpy(text, ptx, len);
  text[len] = 0;
  int rc = 0;
  for (int i = 0; i < m->nkernels && !rc; i++)
    rc = check_entry(&m->kernels[i], text, err, cap);
  free(text);
  return rc;
}

const RtKernelInfo *rt_manifest_kernel(const RtManifest *m, const char *name) {
  for (int i = 0; i < m->nkernels; i++)
    if (!strcmp(m->kernels[i].name, name))
      return &m->kernels[i];
  return NULL;
}

int rt_param_index(const RtKernelInfo *k, const char *name) {
  for (int i = 0; i < k->nparams; i++)
    if (!strcmp(k->params[i].name, name))
      return i;
  return -1;
}

void rt_grid(const RtKernelInfo *k, void *const *args, int32_t grid[3]) {
  for (int d = 0; d < 3; d++) {
    int64_t n = 1;
    for (int j = 0; j < 2; j++)
      if (k->grid_params[d][j] >= 0)
        n *= *(const int32_t *)args[k->grid_params[d][j]];
    grid[d] = (int32_t)((n + k->grid_div[d] - 1) / k->grid_div[d]);
  }
}
