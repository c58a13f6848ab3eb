/* The error convention of model/: a message into a caller's buffer, -1 back. */
#ifndef CRISP_MODEL_ERRF_H
#define CRISP_MODEL_ERRF_H

#include <stddef.h>

/* Formats into err (cap bytes; nothing when err is NULL or cap 0). Returns -1, so
 * `return model_fail(err, cap, "...", ...);` reports and fails in one line. */
int model_fail(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
