/* Token (+ position, + token type) embeddings: see layers.h. */
#include "layers.h"

#include <string.h>

void embedding_forward(float *out, const int32_t *ids, const float *wte, const float *wpe,
                       const float *wtt, int B, int N, int C) {
  for (int b = 0; b < B; b++)
    for (int n = 0; n < N; n++) {
      float *o = out + ((size_t)b * N + n) * C;
      const float *t = wte + (size_t)ids[(size_t)b * N + n] * C;
      const float *p = wpe + (size_t)n * C;
      if (wtt) {
        /* BERT adds inputs + token_type, then position */
        for (int c = 0; c < C; c++)
          o[c] = (t[c] + wtt[c]) + p[c];
      } else {
        for (int c = 0; c < C; c++)
          o[c] = t[c] + p[c];
      }
    }
}

void embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                        const int32_t *ids, const int32_t *lengths, int B, int N, int C,
                        int pad_id) {
  for (int b = 0; b < B; b++) {
    int L = lengths[b] < N ? lengths[b] : N;
    for (int n = 0; n < L; n++) {
      const float *g = dout + ((size_t)b * N + n) * C;
      int32_t id = ids[(size_t)b * N + n];
      if (id != pad_id) {
        float *t = dwte + (size_t)id * C;
        for (int c = 0; c < C; c++)
          t[c] += g[c];
      }
      float *p = dwpe + (size_t)n * C;
      for (int c = 0; c < C; c++)
        p[c] += g[c];
      if (dwtt)
        for (int c = 0; c < C; c++)
          dwtt[c] += g[c];
    }
  }
}
