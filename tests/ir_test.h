/* ir_test.h: what the test_ir suite's files share.
 *
 * test_ir is one program in two files with one pass/fail count: test_ir.c
 * (well-formed kernels the verifier accepts, simplify, the golden
 * print, main) and ir_rejects.c (one malformed kernel per verifier rule, each
 * refused with its expected message). */
#ifndef CRISP_IR_TEST_H
#define CRISP_IR_TEST_H

#include <stdbool.h>

#include "expect.h"


/* ir_rejects.c */
void test_rejects(void);

#endif
