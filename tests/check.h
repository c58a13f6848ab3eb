/* A minimal test harness: CHECK records a failure and goes on; check_summary
 * prints the closing line ctest logs ("N passed, M failed") and the exit status. */
#ifndef CRISP_CHECK_H
#define CRISP_CHECK_H

#include <stdio.h>

/* A suite split over several files shares one count: every file defines
 * CHECK_SHARED before including this, and the one with main() also CHECK_OWNER. */
#if defined(CHECK_SHARED) && defined(CHECK_OWNER)
int check_passed, check_failed;
#elif defined(CHECK_SHARED)
extern int check_passed, check_failed;
#else
static int check_passed, check_failed;
#endif

#define CHECK(cond, ...)                                              \
  do {                                                                \
    if (cond) {                                                       \
      check_passed++;                                                 \
    } else {                                                          \
      check_failed++;                                                 \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);            \
      fprintf(stderr, __VA_ARGS__);                                   \
      fputc('\n', stderr);                                            \
    }                                                                 \
  } while (0)

static inline int check_summary(void) {
  printf("%d passed, %d failed\n", check_passed, check_failed);
  return check_failed ? 1 : 0;
}

#endif
