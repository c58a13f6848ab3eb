/* train_log.c: what a run tells the console while it trains: log lines, and on a
 * terminal one progress line rewritten in place (step, epoch, loss, learning rate,
 * throughput, ETA). Kept apart so the loop reads as steps, not formatting. */
#include "train_impl.h"

#include "../runtime/fsutil.h"

#include <stdarg.h>

/* A log line on stderr (clearing an open progress line first). */
void run_say(Run *r, const char *fmt, ...) {
  if (r->opt->quiet)
    return;
  if (r->line_open)
    fputs("\r\033[K", stderr), r->line_open = false;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

void train_fmt_time(double s, char *buf, size_t cap) {
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else
    snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
}

void run_progress(Run *r, int64_t total, double loss, double lr, double tps, double eta) {
  if (r->opt->quiet || !r->tty)
    return;
  double now = rt_now();
  if (now - r->last_line < 0.1 && r->st.opt_step < total)
    return;
  r->last_line = now;
  char t[32];
  train_fmt_time(eta, t, sizeof t);
  fprintf(stderr, "\r\033[Kstep %lld/%lld  epoch %lld/%d  loss %.4f  lr %.2e  %.0f tok/s  ETA %s",
          (long long)r->st.opt_step, (long long)total, (long long)r->st.epoch + 1, r->c->epochs,
          loss, lr, tps, t);
  r->line_open = true;
}

