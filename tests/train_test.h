/* train_test.h: what the test_train suite's files share.
 *
 * test_train is one program in five files with one pass/fail count and one
 * temporary folder: test_train.c (AdamW and the schedule, file helpers, main and
 * the order the tests run in), train_budget.c (the sparsity budgets),
 * train_config.c (run configurations, the shipped examples), train_runs.c (whole
 * runs: reproducible, resumed, stopped) and train_checkpoint.c (checkpoint
 * corruption and the parameter block's layout). */
#ifndef CRISP_TRAIN_TEST_H
#define CRISP_TRAIN_TEST_H

#include <stdbool.h>
#include <stddef.h>

/* test_train.c: the run's temporary folder and whole-file helpers */
extern char g_tmp[256];
char *read_all(const char *path, size_t *n);
bool same_file(const char *a, const char *b);

/* train_budget.c */
void test_budget(void);
void test_budget_entropy(void);

/* train_config.c */
void test_config(void);
void test_examples(const char *dir);

/* train_runs.c */
void test_runs(void);
void test_run_dense_entropy(void);
void test_run_not_finite(void);
void test_run_failed(void);

/* train_checkpoint.c */
void test_checkpoint(void);
void test_param_layout(void);

#endif
