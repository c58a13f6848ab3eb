/* layers_test.h: what the test_layers suite's files share.
 *
 * test_layers is one program in four files, with one pass/fail count (check.h's
 * shared counters) and one random stream, so each check sees the same inputs it
 * saw when the suite was one file: test_layers.c (the random numbers, finite
 * differences and main), layers_each.c (each layer on its own), layers_attn.c (the
 * float attention reference) and layers_model.c (the whole tiny model, and the
 * crisp kernels inside it). */
#ifndef CRISP_LAYERS_TEST_H
#define CRISP_LAYERS_TEST_H

#define CHECK_SHARED
#include "check.h"

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "model.h"

/* Tolerances and the whole model's step (test_layers.c says why these values). */
extern const double TOL_LAYER, TOL_MODEL;
extern const float FD_H;

/* test_layers.c: one seeded stream for the whole program */
uint64_t rnd(void);
double unif(void);
float qrand(double a);
void fill(float *x, size_t n, double a);
void fill_away(float *x, size_t n, double a);
float *fnew(size_t n);
double dot_w(const float *out, const float *w, size_t n);

typedef double (*LossFn)(void *ctx);
double fd(LossFn f, void *ctx, float *x, size_t n, const float *v, size_t i, float h);
double fd_err(LossFn f, void *ctx, float *x, const float *g, size_t n, float h,
              size_t samples);

/* layers_each.c */
void test_linear(Backend *be);
void test_layernorm(void);
void test_activations(void);
void test_dropout(void);
void test_embedding(void);
void test_crossentropy(void);

/* layers_attn.c */
void test_attention_fd(void);
void test_attention_ref(void);

/* layers_model.c */
void test_model(Backend *be, ModelType type, bool train, SelectKind sel);
void test_model_errors(Backend *be);
void test_crisp_path(Backend *be);

#endif
