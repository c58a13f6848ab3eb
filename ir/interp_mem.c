/* The interpreter's memory: buffers, bounds checks, and shadow state for races and
 * uninitialised reads.
 *
 * Global buffers are the caller's memory (bounded by counts[]); shared arrays have
 * one copy per block and local arrays one copy per thread, both fresh ("unwritten")
 * at the start of every block.
 *
 * Races use epochs (see Shadow in interp_impl.h): each element remembers its last
 * writer and a summary of its readers since then. Accesses are made by a thread
 * (in a pfor.block/pfor.lane/lane or block reduce body), or by a whole scope: a
 * load in warp-level code is performed by all 32 lanes of the warp, one in
 * block-level code by all T threads. An access conflicts with an earlier one of
 * another thread unless a barrier (block epoch) or, inside one warp, a warp sync
 * (warp epoch) lies between them. Blocks are unordered on a GPU, so for global
 * buffers a write in one block conflicts with any access from another block.
 * Atomic adds conflict with plain reads and writes as writes do, never with each
 * other (within a block or across blocks). */
#include "interp_impl.h"

#include <stdlib.h>
#include <string.h>

static const Accessors none = {.t1 = -1, .t2 = -1, .warp = -1};
static const Shadow fresh = {.w = -1, .wblock = -1, .rd = {.t1 = -1, .t2 = -1, .warp = -1},
                             .at = {.t1 = -1, .t2 = -1, .warp = -1}, .rblock = -1,
                             .ablock = -1};

static const char *space_name(const Buf *b) {
  static const char *const names[] = {"global", "shared", "local"};
  return names[b->space];
}

static int elem_size(Type t) {
  switch (t) {
  case TY_BOOL: return 1;
  case TY_I32: case TY_F32: return 4;
  default: return 8;
  }
}

static void *alloc(Interp *in, int64_t n, size_t size) {
  void *p = n > 0 ? calloc((size_t)n, size) : NULL;
  if (n > 0 && !p)
    interp_fail(in, NULL, "out of memory (%lld elements)", (long long)n);
  return p;
}

static void reset_shadow(Mem *m) {
  for (int64_t i = 0; i < m->n; i++)
    m->sh[i] = fresh;
}

static void setup_global(Interp *in, Mem *m, void *const *args, const int64_t *counts) {
  Buf *b = m->buf;
  if (!args || !args[b->param] || !counts)
    interp_fail(in, NULL, "no argument or count for buffer parameter %s", b->name);
  m->data = *(char *const *)args[b->param];
  m->n = counts[b->param];
  if (m->n < 0 || (!m->data && m->n > 0))
    interp_fail(in, NULL, "buffer %s: null data or negative count %lld", b->name,
                (long long)m->n);
  if (in->opt.check_races && b->role != ROLE_IN) {
    m->sh = alloc(in, m->n, sizeof(Shadow));
    reset_shadow(m);
  }
}

void mem_setup(Interp *in, void *const *args, const int64_t *counts) {
  for (int i = 0; i < in->k->nbufs; i++) {
    Mem *m = &in->mem[i];
    m->buf = in->k->bufs[i];
    m->esize = elem_size(m->buf->elem);
    if (m->buf->space == SPACE_GLOBAL) {
      setup_global(in, m, args, counts);
      continue;
    }
    m->n = m->buf->size;
    int64_t copies = m->buf->space == SPACE_LOCAL ? in->T : 1;
    m->data = alloc(in, m->n * copies, (size_t)m->esize);
    if (m->buf->space == SPACE_SHARED)
      m->sh = alloc(in, m->n, sizeof(Shadow));
    else if (in->opt.check_uninit)
      m->written = alloc(in, m->n * copies, 1);
  }
}

void mem_block_begin(Interp *in) {
  for (int i = 0; i < in->k->nbufs; i++) {
    Mem *m = &in->mem[i];
    if (m->buf->space == SPACE_GLOBAL)
      continue;
    int64_t copies = m->buf->space == SPACE_LOCAL ? in->T : 1;
    memset(m->data, 0, (size_t)(m->n * copies * m->esize));
    if (m->sh)
      reset_shadow(m);
    if (m->written)
      memset(m->written, 0, (size_t)(m->n * copies));
  }
}

void mem_release(Interp *in) {
  for (int i = 0; i < in->k->nbufs; i++) {
    Mem *m = &in->mem[i];
    free(m->sh);
    if (m->buf && m->buf->space != SPACE_GLOBAL)
      free(m->data);
    free(m->written);
    *m = (Mem){0};
  }
}

/* ---- who accesses: one thread, a warp's lanes, or all threads of the block ---- */

typedef struct {
  int t1, t2;   /* a thread, and another one of the group (-1: a single thread) */
  int warp;     /* the group's warp, -1 if it spans several warps */
} Who;

static Who accessor(const Interp *in) {
  if (in->lvl == LVL_THREAD)
    return (Who){in->tid, -1, in->tid / IR_WARP_SIZE};
  if (in->lvl == LVL_WARP)
    return (Who){IR_WARP_SIZE * in->warp, IR_WARP_SIZE * in->warp + 1, in->warp};
  return (Who){0, 1, in->W == 1 ? 0 : -1};
}

static const char *who_name(const Interp *in, Who g, char *buf, size_t cap) {
  if (g.t2 < 0)
    snprintf(buf, cap, "thread %d", g.t1);
  else if (in->lvl == LVL_WARP)
    snprintf(buf, cap, "warp %d (all lanes)", g.warp);
  else
    snprintf(buf, cap, "block-level code (all threads)");
  return buf;
}

static const char *block_name(const Interp *in, int lin, char *buf, size_t cap) {
  int x = lin % in->grid[0], y = lin / in->grid[0] % in->grid[1];
  int z = lin / in->grid[0] / in->grid[1];
  snprintf(buf, cap, "block (%d,%d,%d)", x, y, z);
  return buf;
}

static const char *gap(int a, int b) {
  return a / IR_WARP_SIZE == b / IR_WARP_SIZE ? "no barrier or warp sync" : "no barrier";
}

/* ---- races within a block ---- */

static bool write_ordered(const Interp *in, const Shadow *s, Who g) {
  if (s->w < 0 || s->wep < in->bepoch)
    return true;
  if (g.t2 < 0 && g.t1 == s->w)
    return true;
  int ww = s->w / IR_WARP_SIZE;
  return g.warp == ww && s->wwep < in->wepoch[ww];
}

/* Every access of the set a is ordered before the present one by g. */
static bool set_ordered(const Interp *in, const Accessors *a, Who g) {
  if (a->t1 < 0 || a->ep < in->bepoch)
    return true;
  if (g.t2 < 0 && a->t2 < 0 && a->t1 == g.t1)
    return true;
  return g.warp >= 0 && a->warp == g.warp && a->wep < in->wepoch[g.warp];
}

static Who one_thread(int t) { return (Who){t, -1, t / IR_WARP_SIZE}; }

/* A thread of the set other than t (the one a conflict is reported with). */
static int other(const Accessors *a, int t) { return a->t1 != t ? a->t1 : a->t2; }

static void note(Interp *in, Accessors *a, Who g) {
  uint32_t we = g.warp >= 0 ? in->wepoch[g.warp] : 0;
  bool stale = a->t1 < 0 || a->ep < in->bepoch ||
               (a->warp >= 0 && a->warp == g.warp && a->wep < we);
  if (stale) {
    a->t1 = g.t1;
    a->t2 = g.t2;
    a->warp = g.warp;
  } else {
    if (a->t2 < 0 && !(g.t2 < 0 && g.t1 == a->t1))
      a->t2 = g.t1 != a->t1 ? g.t1 : g.t2;
    if (a->warp != g.warp)
      a->warp = -1;
  }
  a->ep = in->bepoch;
  a->wep = we;
}

static void check_read(Interp *in, const Op *op, const Mem *m, int64_t idx, Shadow *s) {
  Who g = accessor(in);
  if (!write_ordered(in, s, g)) {
    char who[64];
    int reader = g.t2 < 0 || g.t1 != s->w ? g.t1 : g.t2;
    interp_fail_block(in, op, "race on %s %s[%lld]: written by thread %d, read by %s with %s "
                      "between", space_name(m->buf), m->buf->name, (long long)idx, s->w,
                      who_name(in, g, who, sizeof who), gap(s->w, reader));
  }
  if (!set_ordered(in, &s->at, g)) {
    char who[64];
    int adder = g.t2 < 0 ? other(&s->at, g.t1) : s->at.t1;
    int reader = g.t2 < 0 || g.t1 != adder ? g.t1 : g.t2;
    interp_fail_block(in, op, "race on %s %s[%lld]: atomic add by thread %d, read by %s with "
                      "%s between", space_name(m->buf), m->buf->name, (long long)idx, adder,
                      who_name(in, g, who, sizeof who), gap(adder, reader));
  }
  note(in, &s->rd, g);
}

static void check_write(Interp *in, const Op *op, const Mem *m, int64_t idx, const Shadow *s) {
  int t = in->tid;
  if (!write_ordered(in, s, one_thread(t)))
    interp_fail_block(in, op, "race on %s %s[%lld]: written by thread %d, written by thread %d "
                      "with %s between", space_name(m->buf), m->buf->name, (long long)idx, s->w,
                      t, gap(s->w, t));
  if (!set_ordered(in, &s->rd, one_thread(t))) {
    int r = other(&s->rd, t);
    interp_fail_block(in, op, "race on %s %s[%lld]: read by thread %d, written by thread %d "
                      "with %s between", space_name(m->buf), m->buf->name, (long long)idx, r, t,
                      gap(r, t));
  }
  if (!set_ordered(in, &s->at, one_thread(t))) {
    int a = other(&s->at, t);
    interp_fail_block(in, op, "race on %s %s[%lld]: atomic add by thread %d, written by thread "
                      "%d with %s between", space_name(m->buf), m->buf->name, (long long)idx, a,
                      t, gap(a, t));
  }
}

/* An atomic add by thread t: a write to plain readers and writers. */
static void check_atomic(Interp *in, const Op *op, const Mem *m, int64_t idx, Shadow *s) {
  int t = in->tid;
  if (!write_ordered(in, s, one_thread(t)))
    interp_fail_block(in, op, "race on %s %s[%lld]: written by thread %d, atomic add by thread "
                      "%d with %s between", space_name(m->buf), m->buf->name, (long long)idx,
                      s->w, t, gap(s->w, t));
  if (!set_ordered(in, &s->rd, one_thread(t))) {
    int r = other(&s->rd, t);
    interp_fail_block(in, op, "race on %s %s[%lld]: read by thread %d, atomic add by thread %d "
                      "with %s between", space_name(m->buf), m->buf->name, (long long)idx, r, t,
                      gap(r, t));
  }
  note(in, &s->at, one_thread(t));
}

/* ---- races between blocks (global buffers) ---- */

/* A block summary (-1 none, -2 several) of a kind of access, by another block? */
static bool other_block(const Interp *in, int32_t blocks) {
  return blocks != -1 && blocks != in->blin;
}

static const char *blocks_name(const Interp *in, int32_t blocks, char *buf, size_t cap) {
  if (blocks >= 0)
    return block_name(in, blocks, buf, cap);
  snprintf(buf, cap, "other blocks");
  return buf;
}

static void cross_block_read(Interp *in, const Op *op, const Mem *m, int64_t idx, Shadow *s) {
  char a[48], b[48];
  if (s->wblock >= 0 && s->wblock != in->blin)
    interp_fail_block(in, op, "race on global %s[%lld]: written by %s thread %d, read by %s "
                      "(blocks are unordered)", m->buf->name, (long long)idx,
                      block_name(in, s->wblock, a, sizeof a), s->w,
                      block_name(in, in->blin, b, sizeof b));
  if (other_block(in, s->ablock))
    interp_fail_block(in, op, "race on global %s[%lld]: atomic add by %s, read by %s (blocks "
                      "are unordered)", m->buf->name, (long long)idx,
                      blocks_name(in, s->ablock, a, sizeof a),
                      block_name(in, in->blin, b, sizeof b));
  s->rblock = s->rblock == -1 || s->rblock == in->blin ? in->blin : -2;
}

static void cross_block_write(Interp *in, const Op *op, const Mem *m, int64_t idx, Shadow *s) {
  char a[48], b[48];
  if (s->wblock >= 0 && s->wblock != in->blin)
    interp_fail_block(in, op, "race on global %s[%lld]: written by %s thread %d, written by %s "
                      "thread %d (blocks are unordered)", m->buf->name, (long long)idx,
                      block_name(in, s->wblock, a, sizeof a), s->w,
                      block_name(in, in->blin, b, sizeof b), in->tid);
  if (other_block(in, s->rblock))
    interp_fail_block(in, op, "race on global %s[%lld]: read by %s, written by %s thread %d "
                      "(blocks are unordered)", m->buf->name, (long long)idx,
                      blocks_name(in, s->rblock, a, sizeof a),
                      block_name(in, in->blin, b, sizeof b), in->tid);
  if (other_block(in, s->ablock))
    interp_fail_block(in, op, "race on global %s[%lld]: atomic add by %s, written by %s thread "
                      "%d (blocks are unordered)", m->buf->name, (long long)idx,
                      blocks_name(in, s->ablock, a, sizeof a),
                      block_name(in, in->blin, b, sizeof b), in->tid);
}

static void cross_block_atomic(Interp *in, const Op *op, const Mem *m, int64_t idx, Shadow *s) {
  char a[48], b[48];
  if (s->wblock >= 0 && s->wblock != in->blin)
    interp_fail_block(in, op, "race on global %s[%lld]: written by %s thread %d, atomic add by "
                      "%s thread %d (blocks are unordered)", m->buf->name, (long long)idx,
                      block_name(in, s->wblock, a, sizeof a), s->w,
                      block_name(in, in->blin, b, sizeof b), in->tid);
  if (other_block(in, s->rblock))
    interp_fail_block(in, op, "race on global %s[%lld]: read by %s, atomic add by %s thread %d "
                      "(blocks are unordered)", m->buf->name, (long long)idx,
                      blocks_name(in, s->rblock, a, sizeof a),
                      block_name(in, in->blin, b, sizeof b), in->tid);
  s->ablock = s->ablock == -1 || s->ablock == in->blin ? in->blin : -2;
}

/* ---- element access ---- */

static Val get_elem(const char *p, Type t) {
  Val v = {0};
  int32_t i32;
  switch (t) {
  case TY_BOOL: v.i = *(const uint8_t *)p != 0; break;
  case TY_I32: memcpy(&i32, p, 4); v.i = i32; break;
  case TY_I64: memcpy(&v.i, p, 8); break;
  case TY_F32: memcpy(&v.f, p, 4); break;
  default: memcpy(&v.d, p, 8); break;
  }
  return v;
}

static void put_elem(char *p, Type t, Val v) {
  int32_t i32 = (int32_t)v.i;
  uint8_t b = v.i != 0;
  switch (t) {
  case TY_BOOL: memcpy(p, &b, 1); break;
  case TY_I32: memcpy(p, &i32, 4); break;
  case TY_I64: memcpy(p, &v.i, 8); break;
  case TY_F32: memcpy(p, &v.f, 4); break;
  default: memcpy(p, &v.d, 8); break;
  }
}

static Mem *checked(Interp *in, const Op *op, const Buf *buf, int64_t idx) {
  Mem *m = &in->mem[buf->id];
  if (idx < 0 || idx >= m->n)
    interp_fail(in, op, "index %lld out of bounds of %s[%lld]", (long long)idx, m->buf->name,
                (long long)m->n);
  return m;
}

/* A local array read: the thread's own copy, or in block/warp-level code every
 * thread's copy of the scope, which must all be written and equal. */
static Val load_local(Interp *in, const Op *op, const Mem *m, int64_t idx) {
  int first = in->lvl == LVL_THREAD ? in->tid : in->lvl == LVL_WARP ? IR_WARP_SIZE * in->warp : 0;
  int count = in->lvl == LVL_THREAD ? 1 : in->lvl == LVL_WARP ? IR_WARP_SIZE : in->T;
  const char *p0 = m->data + (first * m->n + idx) * m->esize;
  for (int t = first; t < first + count; t++) {
    if (m->written && !m->written[t * m->n + idx])
      interp_fail(in, op, "read of local %s[%lld] before thread %d wrote it", m->buf->name,
                  (long long)idx, t);
    if (memcmp(p0, m->data + (t * m->n + idx) * m->esize, (size_t)m->esize))
      interp_fail(in, op, "non-uniform read of local %s[%lld]: threads %d and %d hold "
                  "different values", m->buf->name, (long long)idx, first, t);
  }
  return get_elem(p0, m->buf->elem);
}

Val mem_load(Interp *in, const Op *op, int64_t idx) { return mem_load_from(in, op, op->buf, idx); }

Val mem_load_from(Interp *in, const Op *op, const Buf *buf, int64_t idx) {
  Mem *m = checked(in, op, buf, idx);
  if (m->buf->space == SPACE_LOCAL)
    return load_local(in, op, m, idx);
  Shadow *s = m->sh ? &m->sh[idx] : NULL;
  if (s && m->buf->space == SPACE_SHARED && in->opt.check_uninit && s->w < 0)
    interp_fail(in, op, "read of shared %s[%lld] before any thread wrote it", m->buf->name,
                (long long)idx);
  if (s && in->opt.check_races) {
    if (m->buf->space == SPACE_GLOBAL)
      cross_block_read(in, op, m, idx, s);
    check_read(in, op, m, idx, s);
  }
  traffic_note(in, op, m, idx, false);
  return get_elem(m->data + idx * m->esize, m->buf->elem);
}

void mem_store(Interp *in, const Op *op, int64_t idx, Val val) {
  Mem *m = checked(in, op, op->buf, idx);
  if (in->lvl != LVL_THREAD)
    interp_fail(in, op, "store outside a single-thread context");
  if (m->buf->space == SPACE_LOCAL) {
    int64_t at = in->tid * m->n + idx;
    put_elem(m->data + at * m->esize, m->buf->elem, val);
    if (m->written)
      m->written[at] = 1;
    return;
  }
  Shadow *s = m->sh ? &m->sh[idx] : NULL;
  if (s && in->opt.check_races) {
    if (m->buf->space == SPACE_GLOBAL)
      cross_block_write(in, op, m, idx, s);
    check_write(in, op, m, idx, s);
  }
  if (s) {
    s->w = in->tid;
    s->wblock = in->blin;
    s->wep = in->bepoch;
    s->wwep = in->wepoch[in->tid / IR_WARP_SIZE];
    s->rd = s->at = none;
  }
  traffic_note(in, op, m, idx, true);
  put_elem(m->data + idx * m->esize, m->buf->elem, val);
}

/* Sequential execution makes every add atomic; the shadow tells which plain
 * accesses it races with. */
Val mem_atomic_add(Interp *in, const Op *op, int64_t idx, Val val) {
  Mem *m = checked(in, op, op->buf, idx);
  if (in->lvl != LVL_THREAD)
    interp_fail(in, op, "atomic add outside a single-thread context");
  if (m->buf->space == SPACE_LOCAL)
    interp_fail(in, op, "atomic add on local array %s", m->buf->name);
  Shadow *s = m->sh ? &m->sh[idx] : NULL;
  if (s && m->buf->space == SPACE_SHARED && in->opt.check_uninit && s->w < 0)
    interp_fail(in, op, "atomic add on shared %s[%lld] before any thread wrote it",
                m->buf->name, (long long)idx);
  if (s && in->opt.check_races) {
    if (m->buf->space == SPACE_GLOBAL)
      cross_block_atomic(in, op, m, idx, s);
    check_atomic(in, op, m, idx, s);
  }
  traffic_note(in, op, m, idx, true);
  char *p = m->data + idx * m->esize;
  Val old = get_elem(p, m->buf->elem), sum = old;
  if (m->buf->elem == TY_F32)
    sum.f = old.f + val.f;
  else
    sum.i = (int32_t)(uint32_t)((uint64_t)old.i + (uint64_t)val.i);
  put_elem(p, m->buf->elem, sum);
  return old;
}
