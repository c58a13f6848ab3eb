/* svg.c: SVG text for the report's figures (see svg.h). */
#include "svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define put svg_printf

void svg_printf(Svg *s, const char *fmt, ...) {
  if (s->oom)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = s->cap - s->len;
    int n = vsnprintf(s->buf ? s->buf + s->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
      s->oom = true;
      return;
    }
    if ((size_t)n < room) {
      s->len += (size_t)n;
      return;
    }
    size_t cap = s->cap ? s->cap : 4096;
    while (cap - s->len <= (size_t)n)
      cap *= 2;
    char *b = realloc(s->buf, cap);
    if (!b) {
      s->oom = true;
      return;
    }
    s->buf = b, s->cap = cap;
  }
}

/* Appends text with the five XML specials escaped. */
static void put_escaped(Svg *s, const char *t) {
  for (; *t; t++) {
    switch (*t) {
    case '&': put(s, "&amp;"); break;
    case '<': put(s, "&lt;"); break;
    case '>': put(s, "&gt;"); break;
    case '"': put(s, "&quot;"); break;
    case '\'': put(s, "&apos;"); break;
    default:
      /* control characters are not allowed in XML 1.0 */
      put(s, "%c", (unsigned char)*t < 0x20 ? ' ' : *t);
    }
  }
}

static bool fin(double a, double b) { return isfinite(a) && isfinite(b); }

void svg_begin(Svg *s, double width, double height, const char *title) {
  *s = (Svg){0};
  put(s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
  put(s,
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "viewBox=\"0 0 %.0f %.0f\" font-family=\"Helvetica, Arial, sans-serif\">\n",
      width, height, width, height);
  put(s, "<title>");
  put_escaped(s, title);
  put(s, "</title>\n");
  svg_rect(s, 0, 0, width, height, "white", NULL);
}

char *svg_end(Svg *s, size_t *len) {
  put(s, "</svg>\n");
  return svg_take(s, len);
}

char *svg_take(Svg *s, size_t *len) {
  if (!s->buf)
    put(s, "%s", "");
  char *out = s->oom ? NULL : s->buf;
  if (len)
    *len = out ? s->len : 0;
  if (!out)
    free(s->buf);
  *s = (Svg){0};
  return out;
}

void svg_free(Svg *s) {
  free(s->buf);
  *s = (Svg){0};
}

void svg_text(Svg *s, double x, double y, const char *anchor, double size, double rotate,
              bool bold, const char *text) {
  if (!fin(x, y))
    return;
  put(s, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%.1f\" text-anchor=\"%s\"", x, y, size, anchor);
  if (bold)
    put(s, " font-weight=\"bold\"");
  if (rotate != 0)
    put(s, " transform=\"rotate(%.1f %.2f %.2f)\"", rotate, x, y);
  put(s, ">");
  put_escaped(s, text);
  put(s, "</text>\n");
}

void svg_line(Svg *s, double x1, double y1, double x2, double y2, const char *color, double width,
              const char *dash) {
  if (!fin(x1, y1) || !fin(x2, y2))
    return;
  put(s,
      "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
      "stroke-width=\"%.2f\"",
      x1, y1, x2, y2, color, width);
  if (dash)
    put(s, " stroke-dasharray=\"%s\"", dash);
  put(s, "/>\n");
}

void svg_rect(Svg *s, double x, double y, double w, double h, const char *fill,
              const char *stroke) {
  if (!fin(x, y) || !fin(w, h))
    return;
  put(s, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"", x, y,
      w < 0 ? 0 : w, h < 0 ? 0 : h, fill ? fill : "none");
  if (stroke)
    put(s, " stroke=\"%s\"", stroke);
  put(s, "/>\n");
}

void svg_circle(Svg *s, double x, double y, double r, const char *fill, const char *stroke) {
  if (!fin(x, y) || !isfinite(r))
    return;
  put(s, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\" fill=\"%s\"", x, y, r, fill ? fill : "none");
  if (stroke)
    put(s, " stroke=\"%s\"", stroke);
  put(s, "/>\n");
}

void svg_polyline(Svg *s, const double *x, const double *y, int n, const char *color, double width,
                  const char *dash) {
  int i = 0;
  while (i < n) {
    while (i < n && !fin(x[i], y[i]))
      i++;
    int j = i;
    while (j < n && fin(x[j], y[j]))
      j++;
    if (j - i >= 2) {
      put(s, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.2f\"", color, width);
      if (dash)
        put(s, " stroke-dasharray=\"%s\"", dash);
      put(s, " points=\"");
      for (int k = i; k < j; k++)
        put(s, "%s%.2f,%.2f", k > i ? " " : "", x[k], y[k]);
      put(s, "\"/>\n");
    }
    i = j;
  }
}

const char *svg_color(int i) {
  /* Okabe-Ito, black last */
  static const char *const pal[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                    "#E69F00", "#56B4E9", "#F0E442", "#000000"};
  return pal[(i % 8 + 8) % 8];
}

double svg_nice_range(double *lo, double *hi, int target) {
  if (!isfinite(*lo) || !isfinite(*hi))
    *lo = 0, *hi = 1;
  if (*hi < *lo) {
    double t = *lo;
    *lo = *hi, *hi = t;
  }
  if (*hi - *lo < 1e-12 * (fabs(*lo) + fabs(*hi)) || *hi == *lo) {
    double pad = *lo == 0 ? 1 : fabs(*lo) * 0.1;
    *lo -= pad, *hi += pad;
  }
  double raw = (*hi - *lo) / (target > 0 ? target : 5);
  double mag = pow(10, floor(log10(raw)));
  double f = raw / mag;
  double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  *lo = floor(*lo / step + 1e-9) * step;
  *hi = ceil(*hi / step - 1e-9) * step;
  return step;
}

void plot_init(Plot *p, double px, double py, double pw, double ph, double xmin, double xmax,
               double ymin, double ymax, bool nice_x, bool nice_y) {
  *p = (Plot){px, py, pw, ph, xmin, xmax, ymin, ymax, 0, 0};
  double a = xmin, b = xmax;
  p->xstep = svg_nice_range(&a, &b, 6);
  if (nice_x)
    p->xmin = a, p->xmax = b;
  a = ymin, b = ymax;
  p->ystep = svg_nice_range(&a, &b, 5);
  if (nice_y)
    p->ymin = a, p->ymax = b;
  if (!(p->xmax > p->xmin))
    p->xmin -= 0.5, p->xmax += 0.5;
  if (!(p->ymax > p->ymin))
    p->ymin -= 0.5, p->ymax += 0.5;
}

double plot_x(const Plot *p, double x) {
  return p->px + (x - p->xmin) / (p->xmax - p->xmin) * p->pw;
}

double plot_y(const Plot *p, double y) {
  return p->py + p->ph - (y - p->ymin) / (p->ymax - p->ymin) * p->ph;
}

/* A tick label with as many decimals as the step needs. */
static void tick_label(char *buf, size_t cap, double v, double step) {
  int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
  if (dec > 6)
    dec = 6;
  if (fabs(v) < step * 1e-9)
    v = 0;
  snprintf(buf, cap, "%.*f", dec, v);
}

void plot_axes(Svg *s, const Plot *p, const char *xlabel, const char *ylabel, const char *title,
               const char *const *xcat, int n_cat) {
  const char *grid = "#e0e0e0", *ink = "#333333";
  char lab[64];
  double bottom = p->py + p->ph;
  double y0 = ceil(p->ymin / p->ystep - 1e-9);
  for (double k = y0; k * p->ystep <= p->ymax + p->ystep * 1e-9; k++) {
    double v = k * p->ystep, y = plot_y(p, v);
    svg_line(s, p->px, y, p->px + p->pw, y, grid, 1, NULL);
    tick_label(lab, sizeof lab, v, p->ystep);
    svg_text(s, p->px - 6, y + 4, "end", 11, 0, false, lab);
  }
  if (xcat) {
    for (int i = 0; i < n_cat; i++) {
      double x = plot_x(p, i);
      svg_line(s, x, bottom, x, bottom + 4, ink, 1, NULL);
      svg_text(s, x, bottom + 17, "middle", 11, 0, false, xcat[i]);
    }
  } else {
    double x0 = ceil(p->xmin / p->xstep - 1e-9);
    for (double k = x0; k * p->xstep <= p->xmax + p->xstep * 1e-9; k++) {
      double v = k * p->xstep, x = plot_x(p, v);
      svg_line(s, x, p->py, x, bottom, grid, 1, NULL);
      tick_label(lab, sizeof lab, v, p->xstep);
      svg_text(s, x, bottom + 17, "middle", 11, 0, false, lab);
    }
  }
  svg_rect(s, p->px, p->py, p->pw, p->ph, NULL, ink);
  if (xlabel)
    svg_text(s, p->px + p->pw / 2, bottom + 36, "middle", 12, 0, false, xlabel);
  if (ylabel)
    svg_text(s, p->px - 44, p->py + p->ph / 2, "middle", 12, -90, false, ylabel);
  if (title)
    svg_text(s, p->px + p->pw / 2, p->py - 10, "middle", 13, 0, true, title);
}

void plot_line(Svg *s, const Plot *p, const double *x, const double *y, int n, const char *color,
               double width, const char *dash, double r) {
  double *px = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
  double *py = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
  if (!px || !py) {
    s->oom = true;
    free(px), free(py);
    return;
  }
  for (int i = 0; i < n; i++)
    px[i] = plot_x(p, x[i]), py[i] = plot_y(p, y[i]);
  if (width > 0)
    svg_polyline(s, px, py, n, color, width, dash);
  if (r > 0)
    for (int i = 0; i < n; i++)
      svg_circle(s, px[i], py[i], r, color, "white");
  free(px), free(py);
}

double plot_legend_width(const char *const *names, int n) {
  size_t longest = 0;
  for (int i = 0; i < n; i++)
    longest = strlen(names[i]) > longest ? strlen(names[i]) : longest;
  return 34 + 6.6 * (double)longest;
}

void plot_legend(Svg *s, double x, double y, const char *const *names, const char *const *colors,
                 int n) {
  if (n <= 0)
    return;
  double w = plot_legend_width(names, n), h = 8 + 17.0 * n;
  svg_rect(s, x, y, w, h, "white", "#999999");
  for (int i = 0; i < n; i++) {
    double cy = y + 13 + 17.0 * i;
    svg_line(s, x + 6, cy, x + 24, cy, colors[i], 2, NULL);
    svg_circle(s, x + 15, cy, 3, colors[i], "white");
    svg_text(s, x + 30, cy + 4, "start", 11, 0, false, names[i]);
  }
}
