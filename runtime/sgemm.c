/* crisp's packed sgemm (see sgemm.h): pack op(B) into column panels on the pool,
 * then workers take blocks of C and, per k slab, run the register-tile kernel over
 * every (slice of op(A), panel) pair of their block; a row-major A is read in place,
 * a transposed one is packed per block and slab. */
#include "sgemm.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SGEMM_X86 1
#endif

enum { MAX_WORKERS = 64, MAX_BLOCK_PANELS = 11, MAX_BLOCK_SLICES = 32, TASKS_PER_WORKER = 8 };

/* MR x kc slice of op(A), element (r, p) at a[r * ars + p * aks], times the kc x NR
 * panel b of op(B), into C (MR x NR, stride ldc): C = alpha acc + beta C, where
 * beta == 0 means C is not read. A packed slice has ars = 1, aks = MR; a row-major
 * A is read in place (ars = lda, aks = 1): its 8 rows are 8 sequential streams. */
typedef void (*TileKernel)(int kc, const float *a, int64_t ars, int64_t aks, const float *b,
                           float *c, int64_t ldc, float alpha, float beta);

struct Sgemm {
  TileKernel kernel;
  float *bpack;                 /* op(B): panels of NR columns, k rows each */
  size_t bcap;                  /* floats */
  float *apack[MAX_WORKERS];    /* per worker: a block's packed slices of op(A) */
};

/* ---- the register tile ---- */

/* The reference kernel: any CPU, the same packed layout. */
static void tile_generic(int kc, const float *a, int64_t ars, int64_t aks, const float *b,
                         float *c, int64_t ldc, float alpha, float beta) {
  float acc[SGEMM_MR][SGEMM_NR] = {{0}};
  for (int p = 0; p < kc; p++, b += SGEMM_NR)
    for (int r = 0; r < SGEMM_MR; r++)
      for (int j = 0; j < SGEMM_NR; j++)
        acc[r][j] = fmaf(a[r * ars + p * aks], b[j], acc[r][j]);
  for (int r = 0; r < SGEMM_MR; r++)
    for (int j = 0; j < SGEMM_NR; j++) {
      float *cp = c + r * ldc + j;
      *cp = beta == 0 ? alpha * acc[r][j] : fmaf(beta, *cp, alpha * acc[r][j]);
    }
}

#ifdef SGEMM_X86
/* 8 rows x 3 zmm: 24 accumulators, 3 loads of B and 8 broadcasts of A per k. The
 * same arithmetic as tile_generic (one fma per k, then alpha, then beta), so the
 * two give the same bits. */
__attribute__((target("avx512f"))) static void
tile_avx512(int kc, const float *a, int64_t ars, int64_t aks, const float *b, float *c,
            int64_t ldc, float alpha, float beta) {
  __m512 acc[SGEMM_MR][3];
  const float *row[SGEMM_MR];
  for (int r = 0; r < SGEMM_MR; r++) {
    acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_ps();
    row[r] = a + r * ars;
  }
  for (int64_t p = 0, at = 0; p < kc; p++, at += aks, b += SGEMM_NR) {
    __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16), b2 = _mm512_load_ps(b + 32);
#pragma GCC unroll 8
    for (int r = 0; r < SGEMM_MR; r++) {
      __m512 ar = _mm512_set1_ps(row[r][at]);
      acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(ar, b2, acc[r][2]);
    }
  }
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int r = 0; r < SGEMM_MR; r++)
    for (int v = 0; v < 3; v++) {
      float *cp = c + r * ldc + 16 * v;
      __m512 x = _mm512_mul_ps(va, acc[r][v]);
      if (beta != 0)
        x = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cp), x);
      _mm512_storeu_ps(cp, x);
    }
}
#endif

bool sgemm_supported(void) {
#ifdef SGEMM_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

/* A partial tile (past m or n): the kernel into a scratch tile, then the valid part. */
static void tile_edge(TileKernel kernel, int kc, const float *a, int64_t ars, int64_t aks,
                      const float *b, float *c, int64_t ldc, int h, int w, float alpha,
                      float beta) {
  _Alignas(64) float t[SGEMM_MR * SGEMM_NR];
  kernel(kc, a, ars, aks, b, t, SGEMM_NR, 1.0f, 0.0f);
  for (int r = 0; r < h; r++)
    for (int j = 0; j < w; j++) {
      float *cp = c + r * ldc + j, x = alpha * t[r * SGEMM_NR + j];
      *cp = beta == 0 ? x : fmaf(beta, *cp, x);
    }
}

/* ---- packing ---- */

typedef struct {
  Sgemm *s;
  const RtGemm *g;
  const float *A, *B;
  float *C;
  int panels;                   /* of op(B) */
  int mc, nc;                   /* a block of C: rows, columns (multiples of MR, NR) */
  int mblocks, nblocks;
  atomic_int next;              /* the next block to take */
} Call;

/* Panel q of op(B): k rows of NR floats, columns past n zero. */
static void pack_b_panel(const Call *x, int q, float *dst) {
  const RtGemm *g = x->g;
  int j0 = q * SGEMM_NR, w = g->n - j0 < SGEMM_NR ? g->n - j0 : SGEMM_NR;
  if (w < SGEMM_NR)
    memset(dst, 0, (size_t)g->k * SGEMM_NR * sizeof *dst);
  if (!g->tb) {
    for (int p = 0; p < g->k; p++)
      memcpy(dst + (int64_t)p * SGEMM_NR, x->B + (int64_t)p * g->ldb + j0, (size_t)w * 4);
    return;
  }
  for (int j = 0; j < w; j++) {
    const float *src = x->B + (int64_t)(j0 + j) * g->ldb;
    for (int p = 0; p < g->k; p++)
      dst[(int64_t)p * SGEMM_NR + j] = src[p];
  }
}

static void pack_b(void *ctx, int64_t first, int64_t last) {
  const Call *x = ctx;
  for (int64_t q = first; q < last; q++)
    pack_b_panel(x, (int)q, x->s->bpack + q * x->g->k * SGEMM_NR);
}

/* Rows i0 .. i0 + h - 1 of a row-major A, columns p0 .. p0 + kc - 1, as kc groups of MR
 * floats (rows past h zero). */
static void pack_a_slice(const Call *x, int i0, int h, int p0, int kc, float *dst) {
  const RtGemm *g = x->g;
  if (h < SGEMM_MR)
    memset(dst, 0, (size_t)kc * SGEMM_MR * sizeof *dst);
  for (int r = 0; r < h; r++) {
    const float *src = x->A + (int64_t)(i0 + r) * g->lda + p0;
    for (int p = 0; p < kc; p++)
      dst[p * SGEMM_MR + r] = src[p];
  }
}

/* All slices of rows i0 .. i_end - 1 of a transposed A (stored k x m) at once, k by
 * k: each k reads one contiguous run of the block's columns of A, so every cache
 * line is read whole once (slice by slice, each k touched a line for 8 floats). */
static void pack_a_block_t(const Call *x, int i0, int i_end, int p0, int kc, float *dst) {
  const RtGemm *g = x->g;
  int rows = i_end - i0, full = rows / SGEMM_MR * SGEMM_MR;
  if (full < rows)   /* the short last slice: zero past its rows */
    memset(dst + (int64_t)full * kc, 0, (size_t)kc * SGEMM_MR * sizeof *dst);
  const float *src = x->A + (int64_t)p0 * g->lda + i0;
  for (int p = 0; p < kc; p++, src += g->lda) {
    float *d = dst + p * SGEMM_MR;
    int r = 0;
    for (; r < full; r += SGEMM_MR, d += (int64_t)kc * SGEMM_MR)
      memcpy(d, src + r, SGEMM_MR * sizeof *src);
    if (r < rows)
      memcpy(d, src + r, (size_t)(rows - r) * sizeof *src);
  }
}

/* ---- blocks of C ---- */

/* Block (bi, bj) of C over one k slab: every tile, each slice of op(A) against
 * every panel while the slice is hot in L1. A row-major A is read in place (a short
 * last slice is packed); a transposed one (strided by lda along k) is packed for the
 * whole block first. */
static void run_slab(const Call *x, float *apack, int bi, int bj, int p0) {
  const RtGemm *g = x->g;
  int kc = g->k - p0 < SGEMM_KC ? g->k - p0 : SGEMM_KC;
  float beta = p0 == 0 ? g->beta : 1.0f;
  int i_begin = bi * x->mc, i_end = (bi + 1) * x->mc < g->m ? (bi + 1) * x->mc : g->m;
  int j_end = (bj + 1) * x->nc < g->n ? (bj + 1) * x->nc : g->n;
  if (g->ta)
    pack_a_block_t(x, i_begin, i_end, p0, kc, apack);
  for (int i0 = i_begin; i0 < i_end; i0 += SGEMM_MR) {
    int h = i_end - i0 < SGEMM_MR ? i_end - i0 : SGEMM_MR;
    const float *a = x->A + (int64_t)i0 * g->lda + p0;
    int64_t ars = g->lda, aks = 1;
    if (g->ta) {
      a = apack + (int64_t)(i0 - i_begin) * kc, ars = 1, aks = SGEMM_MR;
    } else if (h < SGEMM_MR) {
      pack_a_slice(x, i0, h, p0, kc, apack);
      a = apack, ars = 1, aks = SGEMM_MR;
    }
    for (int j0 = bj * x->nc; j0 < j_end; j0 += SGEMM_NR) {
      int w = j_end - j0 < SGEMM_NR ? j_end - j0 : SGEMM_NR;
      const float *b = x->s->bpack + ((int64_t)(j0 / SGEMM_NR) * g->k + p0) * SGEMM_NR;
      float *c = x->C + (int64_t)i0 * g->ldc + j0;
      if (h == SGEMM_MR && w == SGEMM_NR)
        x->s->kernel(kc, a, ars, aks, b, c, g->ldc, g->alpha, beta);
      else
        tile_edge(x->s->kernel, kc, a, ars, aks, b, c, g->ldc, h, w, g->alpha, beta);
    }
  }
}

/* Worker w: blocks from the shared counter until none is left. */
static void work(void *ctx, int64_t first, int64_t last) {
  Call *x = ctx;
  for (int64_t w = first; w < last; w++)
    for (;;) {
      int t = atomic_fetch_add(&x->next, 1);
      if (t >= x->mblocks * x->nblocks)
        break;
      for (int p0 = 0; p0 < x->g->k; p0 += SGEMM_KC)
        run_slab(x, x->s->apack[w], t / x->nblocks, t % x->nblocks, p0);
    }
}

/* Blocks of at most MAX_BLOCK_PANELS panels (so a slab's panels of a block stay in
 * L2) and enough row blocks for about TASKS_PER_WORKER blocks per worker. */
static void plan_blocks(Call *x, int workers) {
  const RtGemm *g = x->g;
  int slices = (g->m + SGEMM_MR - 1) / SGEMM_MR;
  x->nblocks = (x->panels + MAX_BLOCK_PANELS - 1) / MAX_BLOCK_PANELS;
  int per = (x->panels + x->nblocks - 1) / x->nblocks;
  x->nc = per * SGEMM_NR;
  int want = (TASKS_PER_WORKER * workers + x->nblocks - 1) / x->nblocks;
  int spb = (slices + want - 1) / want;
  if (spb > MAX_BLOCK_SLICES)
    spb = MAX_BLOCK_SLICES;
  x->mc = spb * SGEMM_MR;
  x->mblocks = (g->m + x->mc - 1) / x->mc;
}

static int grow(float **p, size_t *cap, size_t need) {
  if (need <= *cap)
    return 0;
  float *q = aligned_alloc(64, (need * sizeof *q + 63) / 64 * 64);
  if (!q)
    return -1;
  free(*p);
  *p = q;
  *cap = need;
  return 0;
}

static void scale_c(const RtGemm *g, float *C) {
  for (int i = 0; i < g->m; i++)
    for (int j = 0; j < g->n; j++) {
      float *c = C + (int64_t)i * g->ldc + j;
      *c = g->beta == 0 ? 0.0f : g->beta * *c;
    }
}

static int run_one(Sgemm *s, RtPool *pool, const RtGemm *g, const float *A, const float *B,
                   float *C) {
  if (g->m <= 0 || g->n <= 0)
    return 0;
  if (g->k <= 0) {
    scale_c(g, C);
    return 0;
  }
  Call x = {.s = s, .g = g, .A = A, .B = B, .C = C};
  x.panels = (g->n + SGEMM_NR - 1) / SGEMM_NR;
  int threads = pool ? rt_pool_threads(pool) : 1;
  int workers = threads < MAX_WORKERS ? threads : MAX_WORKERS;
  plan_blocks(&x, workers);
  if (workers > x.mblocks * x.nblocks)
    workers = x.mblocks * x.nblocks;
  if (grow(&s->bpack, &s->bcap, (size_t)x.panels * g->k * SGEMM_NR))
    return -1;
  for (int w = 0; w < workers; w++)
    if (!s->apack[w] &&
        !(s->apack[w] = aligned_alloc(64, (size_t)MAX_BLOCK_SLICES * SGEMM_MR * SGEMM_KC *
                                             sizeof(float))))
      return -1;
  atomic_init(&x.next, 0);
  if (pool) {
    rt_pool_run(pool, x.panels, 1, pack_b, &x);
    rt_pool_run(pool, workers, 1, work, &x);
  } else {
    pack_b(&x, 0, x.panels);
    work(&x, 0, 1);
  }
  return 0;
}

int sgemm_run(Sgemm *s, RtPool *pool, const RtGemm *g, const float *A, const float *B,
              float *C) {
  int batch = g->batch > 1 ? g->batch : 1;
  for (int i = 0; i < batch; i++)
    if (run_one(s, pool, g, A + i * g->stride_a, B + i * g->stride_b, C + i * g->stride_c))
      return -1;
  return 0;
}

Sgemm *sgemm_new(SgemmKernel which) {
  Sgemm *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->kernel = tile_generic;
#ifdef SGEMM_X86
  if (which == SGEMM_FAST && sgemm_supported())
    s->kernel = tile_avx512;
#else
  (void)which;
#endif
  return s;
}

void sgemm_free(Sgemm *s) {
  if (!s)
    return;
  free(s->bpack);
  for (int w = 0; w < MAX_WORKERS; w++)
    free(s->apack[w]);
  free(s);
}
