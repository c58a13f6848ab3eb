/* The k-th largest search (templates/attention_kth.c) alone, in a kernel that
 * test_kth checks and bench_kth times: x[r * KTH_COLS + j] for j < m_r, meta[2r] = m_r,
 * meta[2r + 1] = k_r -> tau[r], cnt[r] (params x, meta, tau, cnt, rows). Each warp
 * copies `group` rows into shared memory and searches them: group 1 by
 * attn_row_kth_count (the warp schedule's way), more by attn_rows_kth_count with
 * their maxima (the CPU tile's way, group = 4). */
#ifndef CRISP_KTH_KERNEL_H
#define CRISP_KTH_KERNEL_H

#include "ir.h"

enum { KTH_COLS = 512, KTH_WARPS = 2, KTH_GROUP_MAX = 4 };

Kernel *kth_kernel(const char *name, int group);

#endif
