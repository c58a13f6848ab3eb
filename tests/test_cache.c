/* The kernel cache: entries round-trip; a truncated, bit-flipped or foreign entry
 * is detected, removed and rebuilt; a different key never returns another key's
 * code. Through the compiler: a cold start compiles once, a warm start (a fresh
 * process on the same directory) compiles nothing and runs the cached code, a
 * corrupt entry is rebuilt, and changing the tile, the spec or the target compiles
 * again. Compilations are counted by rt_compile_count(). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../runtime/attn_task.h"
#include "../runtime/compile.h"
#include "../runtime/fsutil.h"
#include "check.h"

static char err[4096];
static char dir[256];

static int count_entries(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/kernels", dir);
  DIR *d = opendir(path);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    n += strstr(e->d_name, ".crk") != NULL && !strstr(e->d_name, ".tmp.");
  if (d)
    closedir(d);
  return n;
}

static void corrupt_file(const char *path, long truncate_to, long flip_at) {
  char *data;
  size_t len;
  if (rt_read_file(path, &data, &len, err, sizeof err)) {
    CHECK(0, "read %s", path);
    return;
  }
  if (flip_at >= 0 && (size_t)flip_at < len)
    data[flip_at] ^= 0x10;
  if (truncate_to >= 0 && (size_t)truncate_to < len)
    len = (size_t)truncate_to;
  FILE *f = fopen(path, "wb");
  fwrite(data, 1, len, f);
  fclose(f);
  free(data);
}

static void test_raw(void) {
  RtCache c;
  CHECK(!rt_cache_open(&c, dir, err, sizeof err), "open: %s", err);
  RtBlob in[2] = {{"code bytes \0 with a NUL", 24}, {"{\"manifest\": 1}", 15}}, out[2];
  char note[1500];
  CHECK(!rt_cache_get(&c, "key A", out, 2, note, sizeof note), "empty cache hit");
  CHECK(!rt_cache_put(&c, "key A", in, 2, err, sizeof err), "put: %s", err);
  CHECK(rt_cache_get(&c, "key A", out, 2, note, sizeof note) == 1 && out[0].len == 24 &&
        !memcmp(out[0].data, in[0].data, 24) && out[1].len == 15 &&
        !memcmp(out[1].data, in[1].data, 15), "round trip");
  CHECK(!note[0], "a hit with a note: %s", note);
  free(out[0].data), free(out[1].data);
  CHECK(!rt_cache_get(&c, "key B", out, 2, note, sizeof note), "other key hit");
  RtBlob out3[3];
  CHECK(!rt_cache_get(&c, "key A", out3, 3, note, sizeof note), "wrong part count hit");
  /* a foreign entry under another key's file name (a hash collision) is a miss */
  char pa[1200], pb[1200];
  rt_cache_path(&c, "key A", pa, sizeof pa);
  rt_cache_path(&c, "key B", pb, sizeof pb);
  CHECK(strcmp(pa, pb), "two keys, one file");
  char cmd[2600];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", pa, pb);
  CHECK(system(cmd) == 0, "cp");
  long corrupt0 = atomic_load(&c.corrupt);
  CHECK(!rt_cache_get(&c, "key B", out, 2, note, sizeof note) && atomic_load(&c.corrupt) == corrupt0 &&
        !note[0], "a collision returned another key's entry or counted as corrupt");
  /* every truncation and a flipped bit anywhere: detected, removed */
  struct stat st;
  stat(pa, &st);
  int missed = 0, kept = 0, unsaid = 0;
  for (long cut = 0; cut < st.st_size; cut += 5) {
    rt_cache_put(&c, "key A", in, 2, err, sizeof err);
    corrupt_file(pa, cut, -1);
    missed += rt_cache_get(&c, "key A", out, 2, note, sizeof note) != 0;
    kept += access(pa, F_OK) == 0;
    /* said, naming the file: a damaged entry hints at a disk or tool problem */
    unsaid += !strstr(note, pa) || !strstr(note, "corrupt entry (") || !strstr(note, "removed");
  }
  CHECK(unsaid == 0, "%d truncated entries were removed without a note (last: '%s')", unsaid,
        note);
  CHECK(missed == 0, "%d truncated entries were returned", missed);
  CHECK(kept == 0, "%d truncated entries were left in place", kept);
  for (long at = 0; at < st.st_size; at += 3) {
    rt_cache_put(&c, "key A", in, 2, err, sizeof err);
    corrupt_file(pa, -1, at);
    missed += rt_cache_get(&c, "key A", out, 2, note, sizeof note) != 0;
    unsaid += !strstr(note, pa);
  }
  CHECK(unsaid == 0, "a bit-flipped entry was removed without a note");
  CHECK(missed == 0, "%d bit-flipped entries were returned", missed);
  CHECK(atomic_load(&c.corrupt) > corrupt0, "corrupt entries not counted");
  unlink(pb);
  /* disabled by the environment */
  setenv("CRISP_NO_CACHE", "1", 1);
  RtCache off;
  rt_cache_open(&off, dir, err, sizeof err);
  CHECK(off.disabled && !rt_cache_get(&off, "key A", out, 2, note, sizeof note), "CRISP_NO_CACHE");
  unsetenv("CRISP_NO_CACHE");
  /* an unusable directory: disabled, with a reason */
  RtCache bad;
  CHECK(rt_cache_open(&bad, "/proc/crisp-no-such-dir", err, sizeof err) == -1 && bad.disabled,
        "bad directory");
}

static Spec spec(void) {
  Spec s;
  spec_defaults(&s);
  snprintf(s.name, sizeof s.name, "cache");
  s.head_dim = 16;
  s.max_seq = 32;
  s.sparsity = 0.5;
  return s;
}

/* Runs the kernel once against the reference. */
static bool runs_right(Backend *b, RtModule *m, const Spec *s) {
  AttnTask t;
  uint64_t rng = 42;
  if (attn_task_init(&t, b, s, 2, 2, 19, s->sparsity, err, sizeof err))
    return false;
  attn_task_fill(&t, &rng, ATTN_FILL_QUANTIZED, true);
  AttnCheck res;
  RtKernel *k = rt_kernel(b, m, "cache_attn_fwd");
  bool ok = k && !attn_task_check(&t, k, &res, err, sizeof err) && attn_check_ok(&res);
  attn_task_free(&t);
  return ok;
}

static void test_compile(void) {
  Backend *b = backend_open("cpu", NULL, err, sizeof err);
  RtCache c;
  rt_cache_open(&c, dir, err, sizeof err);
  Spec s = spec();
  TileConfig t = {8, 2, SCHED_WARP};
  int entries0 = count_entries();

  long n0 = rt_compile_count();
  RtModule *m = NULL;
  CHECK(!rt_compile_load(b, &s, &t, &c, &m, err, sizeof err), "cold: %s", err);
  CHECK(rt_compile_count() == n0 + 1, "cold start compiled %ld times", rt_compile_count() - n0);
  CHECK(count_entries() == entries0 + 1, "cold start stored %d entries", count_entries() - entries0);
  CHECK(m && runs_right(b, m, &s), "cold kernel wrong: %s", err);
  rt_module_unload(b, m);

  /* warm start: a fresh process, same directory */
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    Backend *cb = backend_open("cpu", NULL, err, sizeof err);
    RtCache cc;
    rt_cache_open(&cc, dir, err, sizeof err);
    long before = rt_compile_count();
    RtModule *cm = NULL;
    int rc = rt_compile_load(cb, &s, &t, &cc, &cm, err, sizeof err);
    int status = rc ? 2 : rt_compile_count() != before ? 3 : atomic_load(&cc.hits) != 1 ? 4
                 : !runs_right(cb, cm, &s) ? 5 : 0;
    rt_module_unload(cb, cm);
    backend_close(cb);
    _exit(status);
  }
  int status = -1;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "warm start (2 load failed, 3 compiled, 4 no hit, 5 wrong): status %d",
        WIFEXITED(status) ? WEXITSTATUS(status) : -1);

  /* warm in this process too: the same bytes as the cold compile */
  RtArtifact a1, a2;
  long n1 = rt_compile_count();
  CHECK(!rt_compile_artifact(&s, &t, TARGET_HOST, &c, &a1, err, sizeof err) && a1.cached,
        "warm artifact not from the cache");
  CHECK(rt_compile_count() == n1, "warm start compiled");
  CHECK(!rt_compile_artifact(&s, &t, TARGET_HOST, NULL, &a2, err, sizeof err) && !a2.cached &&
            a1.code_len == a2.code_len && !memcmp(a1.code, a2.code, a1.code_len) &&
            !strcmp(a1.manifest, a2.manifest),
        "the cached object differs from a fresh compile");
  rt_artifact_free(&a1);
  rt_artifact_free(&a2);

  /* a corrupt entry is detected and rebuilt */
  char key[2048], path[1200];
  rt_cache_key(&s, &t, TARGET_HOST, key, sizeof key);
  rt_cache_path(&c, key, path, sizeof path);
  struct stat st;
  CHECK(stat(path, &st) == 0, "entry file %s", path);
  corrupt_file(path, st.st_size / 2, -1);
  long n2 = rt_compile_count(), bad0 = atomic_load(&c.corrupt);
  m = NULL;
  CHECK(!rt_compile_load(b, &s, &t, &c, &m, err, sizeof err), "after truncation: %s", err);
  CHECK(rt_compile_count() == n2 + 1 && atomic_load(&c.corrupt) == bad0 + 1,
        "truncated entry: %ld compiles, %ld corrupt", rt_compile_count() - n2,
        atomic_load(&c.corrupt) - bad0);
  CHECK(m && runs_right(b, m, &s), "rebuilt kernel wrong");
  rt_module_unload(b, m);
  corrupt_file(path, -1, st.st_size - 100);
  m = NULL;
  CHECK(!rt_compile_load(b, &s, &t, &c, &m, err, sizeof err) && rt_compile_count() == n2 + 2 &&
            m && runs_right(b, m, &s),
        "bit-flipped entry not rebuilt");
  rt_module_unload(b, m);
  long n3 = rt_compile_count();
  CHECK(!rt_compile_load(b, &s, &t, &c, &m, err, sizeof err) && rt_compile_count() == n3,
        "the rebuilt entry was not stored");
  rt_module_unload(b, m);

  /* any change of key compiles again, and never returns the old kernel */
  TileConfig t2 = {4, 4, SCHED_WARP};
  Spec s2 = s;
  s2.keep_min = 3;
  Spec s3 = s;
  s3.causal = true;
  RtArtifact a;
  long n4 = rt_compile_count();
  CHECK(!rt_compile_artifact(&s, &t2, TARGET_HOST, &c, &a, err, sizeof err) && !a.cached &&
            strstr(a.manifest, "\"rows\":\t4"),
        "tile change");
  rt_artifact_free(&a);
  CHECK(!rt_compile_artifact(&s2, &t, TARGET_HOST, &c, &a, err, sizeof err) && !a.cached &&
            strstr(a.manifest, "\"keep_min\":\t3"),
        "spec change");
  rt_artifact_free(&a);
  CHECK(!rt_compile_artifact(&s3, &t, TARGET_HOST, &c, &a, err, sizeof err) && !a.cached,
        "causal change");
  rt_artifact_free(&a);
  CHECK(!rt_compile_artifact(&s, &t, TARGET_SM90, &c, &a, err, sizeof err) && !a.cached &&
            strstr(a.code, ".target sm_90") && strstr(a.manifest, "\"sm_90\""),
        "target change");
  rt_artifact_free(&a);
  CHECK(rt_compile_count() == n4 + 4, "key changes compiled %ld times (expected 4)",
        rt_compile_count() - n4);
  CHECK(!rt_compile_artifact(&s, &t, TARGET_SM90, &c, &a, err, sizeof err) && a.cached,
        "PTX entry not cached");
  rt_artifact_free(&a);
  char k1[2048], k2[2048];
  rt_cache_key(&s, &t, TARGET_HOST, k1, sizeof k1);
  rt_cache_key(&s, &t, TARGET_SM80, k2, sizeof k2);
  CHECK(strstr(k1, "llvm ") && strstr(k1, "crisp ") && strstr(k1, "codegen ") &&
            strstr(k1, "host ") && strstr(k1, "tile rows=8 warps=2") && strcmp(k1, k2),
        "key text: %s", k1);
  backend_close(b);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/crisp-test-cache-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_raw();
  test_compile();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd))
    fprintf(stderr, "could not remove %s\n", dir);
  return check_summary();
}
