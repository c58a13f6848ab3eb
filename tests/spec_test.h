/* spec_test.h: what the test_spec suite's files share.
 *
 * test_spec is one program in four files with one tally: test_spec.c (the tally,
 * helpers, main and the order the tests run in), spec_cases.c (good specs parse to
 * the expected fields; bad specs fail with the expected first line), spec_text.c
 * (diagnostics as rendered, -D overrides, canonical text and hash) and
 * spec_fuzz.c (random and mutated input never crashes). */
#ifndef CRISP_SPEC_TEST_H
#define CRISP_SPEC_TEST_H

#include <stdbool.h>
#include <stddef.h>

#include "spec.h"

typedef struct {
  int passed, failed;
} Tally;

bool check(Tally *t, bool ok, const char *file, int line, const char *what);
#define CHECK(t, cond) check((t), (cond), __FILE__, __LINE__, #cond)

/* test_spec.c: helpers */
char *dup_exact(const char *s, size_t n);
int parse_str(const char *text, Spec *s, Diag *d);
char *read_file(const char *path, size_t *len);
const char *first_line(const char *s, char *buf, size_t cap);
bool same_canon(const Spec *a, const Spec *b);
bool round_trips(const Spec *s);
char **list_dir(const char *dir, const char *ext, int *n);
void free_list(char **names, int n);

/* spec_cases.c */
void test_defaults(Tally *t);
void test_good_inline(Tally *t);
void test_good_files(Tally *t, const char *dir);
void test_bad_files(Tally *t, const char *dir);

/* spec_text.c */
void test_diag_render(Tally *t);
void test_overrides(Tally *t);
void test_canonical(Tally *t);

/* spec_fuzz.c */
void test_fuzz_random(Tally *t);
void test_fuzz_mutations(Tally *t);
void test_huge(Tally *t);

#endif
