/* Tests of the GLUE SST-2 TSV loader: small well-formed and malformed files written
 * to a temporary folder (each error must name FILE:LINE and leave nothing loaded),
 * then the real splits' row and label counts when the shared data folder exists.
 * Usage: test_data DATA_DIR (../shared/data; skipped with a message when absent).
 * Prints "N passed, M failed, K skipped" and exits non-zero on failure. */
#include "check.h"
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int skipped;
static char tmpdir[64];

static const char *write_tmp(const char *name, const char *bytes, size_t len) {
  static char path[128];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); exit(2); }
  fwrite(bytes, 1, len, f);
  fclose(f);
  return path;
}

/* Loads bytes as NAME and expects an error containing "NAME:want". */
static void expect_error(const char *name, const char *bytes, size_t len, const char *want) {
  char err[512] = "", needle[256];
  const char *path = write_tmp(name, bytes, len);
  Sst2Set s;
  int rc = sst2_load(path, &s, err, sizeof err);
  snprintf(needle, sizeof needle, "%s:%s", name, want);
  CHECK(rc == -1 && strstr(err, needle), "%s: want '%s', got '%s'", name, needle, err);
  CHECK(s.rows == NULL && s.n == 0 && s.buf_ == NULL, "%s: half-loaded after an error", name);
  unlink(path);
}

#define BAD(name, text, want) expect_error(name, text, sizeof(text) - 1, want)

static void test_malformed(void) {
  BAD("empty.tsv", "", "1: empty file (missing header)");
  BAD("noheader.tsv", "a fine movie \t1\n", "1: missing header");
  BAD("badheader.tsv", "sentence\tlabels\nx\t1\n", "1: missing header");
  BAD("headeronly.tsv", "sentence\tlabel\n", "2: no data rows");
  BAD("crlf.tsv", "sentence\tlabel\r\nx\t1\r\n", "1: carriage return");
  BAD("crlf_row.tsv", "sentence\tlabel\nok\t1\nx\t1\r\n", "3: carriage return at column 4");
  BAD("threecols.tsv", "sentence\tlabel\ngood \t1\nbad\t1\t0\n", "3: expected 2 tab-separated columns, found 3");
  BAD("onecol.tsv", "sentence\tlabel\nno label here\n", "2: expected 2 tab-separated columns, found 1");
  BAD("blank.tsv", "sentence\tlabel\na\t0\n\nb\t1\n", "3: blank line");
  BAD("label2.tsv", "sentence\tlabel\na\t0\nb\t2\n", "3: label '2' is not 0 or 1");
  BAD("labelempty.tsv", "sentence\tlabel\na\t\n", "2: label '' is not 0 or 1");
  BAD("label01.tsv", "sentence\tlabel\na\t01\n", "2: label '01' is not 0 or 1");
  BAD("labelspace.tsv", "sentence\tlabel\na\t1 \n", "2: label '1 ' is not 0 or 1");
  BAD("utf8.tsv", "sentence\tlabel\na\t1\ncaf\xC3\t0\n", "3: invalid UTF-8 at column 4");
  BAD("utf8_overlong.tsv", "sentence\tlabel\n\xC0\xAF\t0\n", "2: invalid UTF-8 at column 1");
  BAD("nul.tsv", "sentence\tlabel\na\0b\t1\n", "2: NUL byte at column 2");
  BAD("emptysent.tsv", "sentence\tlabel\nok\t1\n\t0\n", "3: empty sentence");
  BAD("spacesent.tsv", "sentence\tlabel\n   \t0\n", "2: empty sentence");
  BAD("testindex.tsv", "index\tsentence\n0\tfine\nx1\tbad index\n", "3: index 'x1' is not a non-negative integer");
  BAD("testneg.tsv", "index\tsentence\n-1\tbad\n", "2: index '-1' is not a non-negative integer");
  BAD("testempty.tsv", "index\tsentence\n0\t\n", "2: empty sentence");
  BAD("testcols.tsv", "index\tsentence\n0\ta\tb\n", "2: expected 2 tab-separated columns, found 3");
  char err[512] = "";
  Sst2Set s;
  CHECK(sst2_load("/nonexistent/dev.tsv", &s, err, sizeof err) == -1 &&
            strstr(err, "/nonexistent/dev.tsv: cannot open"), "missing file: '%s'", err);
}

static void test_labeled(void) {
  static const char text[] = "sentence\tlabel\nit 's a charming journey . \t1\ncaf\xC3\xA9 bleak \t0";
  char err[512] = "";
  const char *path = write_tmp("good.tsv", text, sizeof text - 1); /* no final LF */
  Sst2Set s;
  int rc = sst2_load(path, &s, err, sizeof err);
  unlink(path);
  CHECK(rc == 0 && s.n == 2 && s.labeled == 1, "good.tsv: %s", err);
  if (rc) return;
  CHECK(strcmp(s.rows[0].text, "it 's a charming journey . ") == 0 && s.rows[0].len == 27,
        "row 0 text kept as is");
  CHECK(s.rows[0].label == 1 && s.rows[1].label == 0 && s.rows[1].index == 1, "labels");
  CHECK(strcmp(s.rows[1].text, "caf\xC3\xA9 bleak ") == 0, "row 1 text");
  sst2_free(&s);
}

static void test_unlabeled(void) {
  static const char text[] = "index\tsentence\n0\tuneasy mishmash .\n17\tsecond\n";
  char err[512] = "";
  const char *path = write_tmp("test.tsv", text, sizeof text - 1);
  Sst2Set s;
  int rc = sst2_load(path, &s, err, sizeof err);
  unlink(path);
  CHECK(rc == 0 && s.n == 2 && s.labeled == 0, "test.tsv: %s", err);
  if (rc) return;
  CHECK(strcmp(s.rows[0].text, "uneasy mishmash .") == 0 && s.rows[0].label == -1, "test row 0");
  CHECK(strcmp(s.rows[1].text, "second") == 0 && s.rows[1].index == 17, "test row 1");
  sst2_free(&s);
}

/* A real split: its row count and, for labeled ones, the positives. */
static void check_real(const char *data, const char *name, int rows, int positives) {
  char path[512], err[512] = "";
  snprintf(path, sizeof path, "%s/sst2/%s", data, name);
  if (access(path, R_OK) != 0) {
    skipped++;
    printf("SKIP real %s: %s is absent\n", name, path);
    return;
  }
  Sst2Set s;
  int rc = sst2_load(path, &s, err, sizeof err);
  CHECK(rc == 0, "%s", err);
  if (rc) return;
  int pos = 0;
  for (int i = 0; i < s.n; i++) pos += s.rows[i].label == 1;
  CHECK(s.n == rows, "%s: %d rows, want %d", name, s.n, rows);
  CHECK(positives < 0 ? !s.labeled : pos == positives, "%s: %d positive, want %d", name, pos, positives);
  printf("real %s: %d rows, %d positive\n", name, s.n, pos);
  sst2_free(&s);
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]); return 2; }
  snprintf(tmpdir, sizeof tmpdir, "/tmp/crisp_data_XXXXXX");
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }
  test_malformed();
  test_labeled();
  test_unlabeled();
  rmdir(tmpdir);
  check_real(argv[1], "train.tsv", 67349, 37569);
  check_real(argv[1], "dev.tsv", 872, 444);
  check_real(argv[1], "test.tsv", 1821, -1);
  printf("%d passed, %d failed, %d skipped\n", check_passed, check_failed, skipped);
  return check_failed ? 1 : 0;
}
