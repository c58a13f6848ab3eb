/* expect.c: the pass/fail count of the suites that check with expect() (test_ir,
 * test_interp, test_lower): one count per program, however many files its checks
 * are in. */
#include "expect.h"

#include <stdarg.h>
#include <stdio.h>

static int passed, failed;

void expect(bool ok, const char *fmt, ...) {
  if (ok) {
    passed++;
    return;
  }
  failed++;
  va_list ap;
  va_start(ap, fmt);
  fputs("FAIL: ", stdout);
  vprintf(fmt, ap);
  fputc('\n', stdout);
  va_end(ap);
}

int expect_summary(void) {
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
