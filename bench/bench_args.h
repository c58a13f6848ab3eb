/* bench_args.h: the bench programs' command lines, read strictly and all alike. A
 * value is checked where it is read: an unknown flag, a missing value, a value that
 * is not a number (or not all of one: "4x"), out of its range, or not one of the
 * choices ends the program at once with exit status 2, a message naming the flag and
 * the value, and the usage on stderr; so a mistyped flag never starts a benchmark
 * that runs for minutes on defaults. --help or -h prints the usage on stdout and
 * exits 0. A program reads its arguments in one loop:
 *
 *   BenchArgs args = bench_args(argc, argv, "bench_kth", USAGE);
 *   while (bench_next(&args)) {
 *     if (bench_flag(&args, "--quick"))
 *       quick = true;
 *     else if (!bench_int(&args, "--reps", 1, 64, &reps) &&
 *              !bench_list(&args, "--s", 0, 0.999, ss, 8, &ns))
 *       bench_unknown(&args);
 *   }
 *
 * Each bench_<kind> returns false when the current argument is not its flag, true
 * when it is and its value was stored; a bad value does not return. Only what the
 * bench programs parse before they allocate anything may exit from here. */
#ifndef CRISP_BENCH_ARGS_H
#define CRISP_BENCH_ARGS_H

#include <stdbool.h>

typedef struct BenchArgs {
  int argc, i;
  char **argv;
  const char *prog;    /* "bench_kth": the messages' prefix */
  const char *usage;   /* "usage: bench_kth [--m ...] ...\n" */
} BenchArgs;

BenchArgs bench_args(int argc, char **argv, const char *prog, const char *usage);
/* Steps to the next argument: false after the last; --help and -h print the usage
 * and exit 0. */
bool bench_next(BenchArgs *a);
/* The current argument is the flag `name` (which takes no value). */
bool bench_flag(const BenchArgs *a, const char *name);
/* `name VALUE`, any string but an empty one. */
bool bench_str(BenchArgs *a, const char *name, const char **out);
/* `name N`, an integer in lo..hi. */
bool bench_int(BenchArgs *a, const char *name, long lo, long hi, int *out);
/* `name X`, a finite number in [lo, hi]. */
bool bench_num(BenchArgs *a, const char *name, double lo, double hi, double *out);
/* `name X1,X2,...`, 1 to max numbers in [lo, hi], their count in *n. */
bool bench_list(BenchArgs *a, const char *name, double lo, double hi, double *out, int max,
                int *n);
/* The same for integers in lo..hi. */
bool bench_int_list(BenchArgs *a, const char *name, long lo, long hi, int *out, int max,
                    int *n);
/* `name WORD`, one of choices (NULL-terminated); *out is its index. */
bool bench_choice(BenchArgs *a, const char *name, const char *const *choices, int *out);
/* The current argument is none of the program's: exits 2 naming it. */
_Noreturn void bench_unknown(const BenchArgs *a);
/* A check across flags after the loop failed: "PROG: FLAG: message", the usage,
 * exit 2. */
_Noreturn void bench_fail(const BenchArgs *a, const char *flag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
