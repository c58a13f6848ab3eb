/* kth_kernel.h's kernel, built with the IR builder. */
#include "kth_kernel.h"

#include "../templates/attention_common.h"

Kernel *kth_kernel(const char *name, int group) {
  Kernel *k = ir_kernel_new(name, KTH_WARPS);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN), *meta = ir_param_buf(k, "meta", TY_I32, ROLE_IN);
  Buf *tau = ir_param_buf(k, "tau", TY_F32, ROLE_OUT),
      *cnt = ir_param_buf(k, "cnt", TY_I32, ROLE_OUT);
  Op *rows = ir_param_scalar(k, "rows", TY_I32);
  Buf *sh = ir_shared(k, "rowbuf", TY_F32, KTH_WARPS * KTH_GROUP_MAX * KTH_COLS);
  ir_set_grid(k, 0, 4, -1, KTH_WARPS * group);
  Builder B = ir_builder(k), wb, lane, out;
  Op *w = ir_pfor(&B, AXIS_WARP, attn_i32(&B, KTH_WARPS), "w", &wb)->index;
  Op *r0 =
      attn_mul(&wb, attn_add(&wb, attn_mul(&wb, ir_block_id(&wb, 0), attn_i32(&wb, KTH_WARPS)), w),
               attn_i32(&wb, group));
  AttnRow row[KTH_GROUP_MAX];
  Op *kk[KTH_GROUP_MAX], *t[KTH_GROUP_MAX], *c[KTH_GROUP_MAX], *mx[KTH_GROUP_MAX],
      *r[KTH_GROUP_MAX];
  for (int g = 0; g < group; g++) {
    r[g] = attn_add(&wb, r0, attn_i32(&wb, g));
    Op *valid = ir_cmp(&wb, CMP_LT, r[g], rows);
    Op *safe = ir_select(&wb, valid, r[g], attn_i32(&wb, 0));
    Op *m = ir_select(&wb, valid, ir_load(&wb, meta, attn_mul(&wb, safe, attn_i32(&wb, 2))),
                      attn_i32(&wb, 0));
    kk[g] = ir_select(
        &wb, valid,
        ir_load(&wb, meta, attn_add(&wb, attn_mul(&wb, safe, attn_i32(&wb, 2)), attn_i32(&wb, 1))),
        attn_i32(&wb, 1));
    Op *base = attn_mul(
        &wb, attn_add(&wb, attn_mul(&wb, w, attn_i32(&wb, KTH_GROUP_MAX)), attn_i32(&wb, g)),
        attn_i32(&wb, KTH_COLS));
    row[g] = (AttnRow){sh, base, m};
    Op *j = ir_pfor(&wb, AXIS_LANE, m, "j", &lane)->index;
    ir_store(
        &lane, sh, attn_add(&lane, base, j),
        ir_load(&lane, x, attn_add(&lane, attn_mul(&lane, safe, attn_i32(&lane, KTH_COLS)), j)));
  }
  if (group == 1)
    t[0] = attn_row_kth_count(&wb, &row[0], kk[0], &c[0]);
  else {
    for (int g = 0; g < group; g++)
      mx[g] = attn_row_max(&wb, &row[g]);
    attn_rows_kth_count(&wb, row, group, kk, mx, t, c);
  }
  ir_pfor(&wb, AXIS_LANE, attn_i32(&wb, 1), "one", &out);
  for (int g = 0; g < group; g++) {
    Builder then;
    ir_if(&out, ir_cmp(&out, CMP_LT, r[g], rows), &then, NULL);
    ir_store(&then, tau, r[g], t[g]);
    ir_store(&then, cnt, r[g], c[g]);
  }
  return k;
}
