/* rng.h: splitmix64, the one pseudo-random generator of model/: the shuffle of each
 * epoch (train_data.c), the initial weights (hf_params.c) and the synthetic data
 * (synth.c) all draw from it, so a seed means the same stream everywhere. Inline:
 * weight initialisation calls it per element. */
#ifndef CRISP_MODEL_RNG_H
#define CRISP_MODEL_RNG_H

#include <stdint.h>

/* Advances *s and returns the next 64 random bits. */
static inline uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

#endif
