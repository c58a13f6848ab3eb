/* expect.h: count one check; on failure print "FAIL: " and the message to stdout.
 * expect_summary() prints "N passed, M failed" and returns main's exit status. */
#ifndef CRISP_EXPECT_H
#define CRISP_EXPECT_H

#include <stdbool.h>

void expect(bool ok, const char *fmt, ...);
int expect_summary(void);

#endif
