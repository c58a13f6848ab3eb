/* The interpreter's traffic model: how many warp-wide memory requests the GPU
 * mapping of a kernel makes, and how many 32-byte sectors (global) or bank
 * wavefronts (shared) they cost (InterpTraffic in interp.h).
 *
 * Why here: the machines this project is built on have no GPU, and the GPU schedule's
 * speed is decided mostly by coalescing and bank conflicts, which follow from the
 * addresses alone. The interpreter already runs every thread with the mapping's
 * indices, so it can group the lanes' accesses the way SIMT hardware does.
 *
 * Grouping: inside a lane- or thread-parallel region (pfor.lane, pfor.block, the lane
 * and block reductions, transpose16) the lanes run one after another here, so each
 * access is recorded with (op, warp, n), n counting that op's accesses by that thread
 * since the region began; at the region's end, records with equal (op, warp, n) form
 * one request. That is SIMT lockstep for uniform control flow; divergent branches
 * pair accesses by position instead, which a GPU would serialise anyway. */
#include "interp_impl.h"

#include <stdlib.h>

typedef struct Rec {
  int32_t op, warp, n;   /* op: its slot (below) */
  uint8_t space, store, esize;
  int64_t addr;   /* byte offset in the buffer */
} Rec;

/* Per memory op (stores have no value id, so ops are found by address in an
 * open-addressing table): the thread-region stamp its count belongs to, and the
 * accesses the current thread made in that region. */
typedef struct Slot {
  const Op *op;
  uint32_t stamp;
  int32_t count;
} Slot;

struct InterpTrafficState {
  Rec *rec;
  int64_t nrec, cap;
  Slot *slot;
  int32_t nslot;     /* a power of two, over twice the kernel's memory ops */
  uint8_t *seen[32]; /* by buffer id: a bit per 32-byte sector of a global buffer loaded */
  uint32_t now;      /* bumped whenever a thread (re)enters a region */
};

static int32_t count_mem_ops(const Block *blk) {
  int32_t n = 0;
  for (int i = 0; i < blk->n; i++) {
    const Op *op = blk->ops[i];
    n += op->kind == OP_LOAD || op->kind == OP_STORE || op->kind == OP_ATOMIC_ADD ||
         op->kind == OP_TRANSPOSE;
    n += count_mem_ops(&op->body) + count_mem_ops(&op->els);
  }
  return n;
}

void traffic_begin(Interp *in) {
  if (!in->traffic)
    return;
  InterpTrafficState *t = calloc(1, sizeof *t);
  in->tr = t;
  if (!t)
    interp_fail(in, NULL, "out of memory (traffic model)");
  int32_t need = 2 * count_mem_ops(&in->k->body) + 2;
  for (t->nslot = 16; t->nslot < need; t->nslot *= 2)
    ;
  t->slot = calloc((size_t)t->nslot, sizeof *t->slot);
  if (!t->slot)
    interp_fail(in, NULL, "out of memory (traffic model)");
}

void traffic_release(Interp *in) {
  InterpTrafficState *t = in->tr;
  if (!t)
    return;
  free(t->rec);
  free(t->slot);
  for (int i = 0; i < 32; i++)
    free(t->seen[i]);
  free(t);
  in->tr = NULL;
}

static Slot *slot_of(InterpTrafficState *t, const Op *op) {
  uint32_t h = (uint32_t)(((uintptr_t)op >> 4) * 2654435761u);
  for (int32_t i = (int32_t)(h & (uint32_t)(t->nslot - 1));; i = (i + 1) & (t->nslot - 1)) {
    if (t->slot[i].op == op)
      return &t->slot[i];
    if (!t->slot[i].op) {
      t->slot[i].op = op;
      return &t->slot[i];
    }
  }
}

void traffic_thread(Interp *in) {
  if (in->tr)
    in->tr->now++;
}

static void add_uniform(InterpTraffic *tr, const Mem *m, bool store, int64_t requests) {
  if (m->buf->space == SPACE_SHARED) {
    tr->shared_requests += requests;
    tr->shared_wavefronts += requests;
  } else if (store) {
    tr->store_requests += requests, tr->store_sectors += requests;
    tr->store_bytes += requests * m->esize;
  } else {
    tr->load_requests += requests, tr->load_sectors += requests;
    tr->load_bytes += requests * m->esize;
  }
}

/* The first load of a sector counts in load_unique_sectors. */
static void mark_seen(Interp *in, const Op *op, const Mem *m, int64_t idx) {
  InterpTrafficState *t = in->tr;
  uint8_t **bits = &t->seen[m->buf->id];
  if (!*bits && !(*bits = calloc((size_t)(m->n * m->esize / 32 / 8 + 1), 1)))
    interp_fail(in, op, "out of memory (traffic model)");
  int64_t sec = idx * m->esize / 32;
  if (!((*bits)[sec / 8] >> (sec % 8) & 1)) {
    (*bits)[sec / 8] |= (uint8_t)(1u << (sec % 8));
    in->traffic->load_unique_sectors++;
  }
}

void traffic_note(Interp *in, const Op *op, const Mem *m, int64_t idx, bool store) {
  InterpTrafficState *t = in->tr;
  if (!t || m->buf->space == SPACE_LOCAL)
    return;
  if (m->buf->space == SPACE_GLOBAL && !store)
    mark_seen(in, op, m, idx);
  if (in->lvl != LVL_THREAD) {   /* every lane asks for one address: a broadcast */
    add_uniform(in->traffic, m, store, in->lvl == LVL_BLOCK ? in->W : 1);
    return;
  }
  Slot *sl = slot_of(t, op);
  if (sl->stamp != t->now) {
    sl->stamp = t->now;
    sl->count = 0;
  }
  if (t->nrec == t->cap) {
    int64_t cap = t->cap ? 2 * t->cap : 4096;
    Rec *r = realloc(t->rec, (size_t)cap * sizeof *r);
    if (!r)
      interp_fail(in, op, "out of memory (traffic model)");
    t->rec = r, t->cap = cap;
  }
  t->rec[t->nrec++] = (Rec){(int32_t)(sl - t->slot), in->tid / IR_WARP_SIZE, sl->count++,
                            (uint8_t)m->buf->space, store, (uint8_t)m->esize,
                            idx * m->esize};
}

/* Shared: by bank, then word, so a request's words of one bank are adjacent. */
static int64_t sort_key(const Rec *r) {
  if (r->space != SPACE_SHARED)
    return r->addr;
  int64_t word = r->addr / 4;
  return (word % IR_WARP_SIZE) << 40 | word;
}

static int cmp_rec(const void *pa, const void *pb) {
  const Rec *a = pa, *b = pb;
  if (a->op != b->op) return a->op < b->op ? -1 : 1;
  if (a->store != b->store) return a->store < b->store ? -1 : 1;
  if (a->warp != b->warp) return a->warp < b->warp ? -1 : 1;
  if (a->n != b->n) return a->n < b->n ? -1 : 1;
  int64_t ka = sort_key(a), kb = sort_key(b);
  return ka < kb ? -1 : ka > kb;
}

static bool same_request(const Rec *a, const Rec *b) {
  return a->op == b->op && a->store == b->store && a->warp == b->warp && a->n == b->n;
}

/* One request: records r[0..n), sorted. */
static void count_request(InterpTraffic *tr, const Rec *r, int64_t n) {
  if (r->space == SPACE_SHARED) {
    int64_t most = 0, run = 0;
    for (int64_t i = 0; i < n; i++) {
      int64_t w = r[i].addr / 4;
      bool new_bank = i == 0 || w % IR_WARP_SIZE != (r[i - 1].addr / 4) % IR_WARP_SIZE;
      run = new_bank ? 1 : run + (w != r[i - 1].addr / 4);
      most = run > most ? run : most;
    }
    tr->shared_requests++;
    tr->shared_wavefronts += most;
    return;
  }
  int64_t sectors = 0, bytes = 0;
  for (int64_t i = 0; i < n; i++) {
    sectors += i == 0 || r[i].addr / 32 != r[i - 1].addr / 32;
    bytes += i == 0 || r[i].addr != r[i - 1].addr ? r[i].esize : 0;
  }
  int64_t *req = r->store ? &tr->store_requests : &tr->load_requests;
  int64_t *sec = r->store ? &tr->store_sectors : &tr->load_sectors;
  int64_t *byt = r->store ? &tr->store_bytes : &tr->load_bytes;
  (*req)++, *sec += sectors, *byt += bytes;
}

void traffic_flush(Interp *in) {
  InterpTrafficState *t = in->tr;
  if (!t || !t->nrec)
    return;
  qsort(t->rec, (size_t)t->nrec, sizeof *t->rec, cmp_rec);
  for (int64_t i = 0, j; i < t->nrec; i = j) {
    for (j = i + 1; j < t->nrec && same_request(&t->rec[i], &t->rec[j]); j++)
      ;
    count_request(in->traffic, &t->rec[i], j - i);
  }
  t->nrec = 0;
}
