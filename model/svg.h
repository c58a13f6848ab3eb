/* svg.h: just enough SVG to draw the report's figures from C, with no outside tool.
 *
 * An Svg is a growing text buffer; every drawing call appends one element. Text is
 * XML-escaped; a coordinate that is not finite drops its element (a polyline breaks
 * there), so the file never holds "nan" or "inf". An allocation failure is sticky:
 * svg_take then returns NULL.
 *
 * A Plot maps data coordinates into a pixel box (y grows upwards in data, downwards in
 * SVG) and draws its frame, grid, ticks and labels; the range is widened to "nice" tick
 * values (1, 2, 5 x 10^k). */
#ifndef CRISP_SVG_H
#define CRISP_SVG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct Svg {
  char *buf;
  size_t len, cap;
  bool oom;
} Svg;

/* Appends formatted text as is (also the report's string builder: start from (Svg){0}). */
void svg_printf(Svg *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void svg_begin(Svg *s, double width, double height, const char *title);
/* Closes the document (appends "</svg>"); the text is the caller's (malloc'd), or NULL
 * after a failed allocation. The Svg is empty afterwards. */
char *svg_end(Svg *s, size_t *len);
void svg_free(Svg *s);
/* The text so far without closing anything (malloc'd, or NULL after a failed
 * allocation); the Svg is empty afterwards. */
char *svg_take(Svg *s, size_t *len);

/* anchor: "start", "middle" or "end"; rotate in degrees about (x, y); bold 0/1. */
void svg_text(Svg *s, double x, double y, const char *anchor, double size, double rotate,
              bool bold, const char *text);
void svg_line(Svg *s, double x1, double y1, double x2, double y2, const char *color, double width,
              const char *dash);
void svg_rect(Svg *s, double x, double y, double w, double h, const char *fill,
              const char *stroke);
void svg_circle(Svg *s, double x, double y, double r, const char *fill, const char *stroke);
/* Pixel coordinates; a non-finite point splits the line. */
void svg_polyline(Svg *s, const double *x, const double *y, int n, const char *color, double width,
                  const char *dash);

/* The i-th colour of a palette readable on white and by most colour-blind readers. */
const char *svg_color(int i);

typedef struct Plot {
  double px, py, pw, ph;            /* pixel box of the data area */
  double xmin, xmax, ymin, ymax;    /* data range */
  double xstep, ystep;              /* tick spacing; 0: categorical axis */
} Plot;

/* Fits [lo, hi] (widened if empty) to nice ticks: *lo, *hi become multiples of the
 * returned step, about `target` intervals. */
double svg_nice_range(double *lo, double *hi, int target);

/* A plot over [xmin, xmax] x [ymin, ymax] in the pixel box; nice_x / nice_y round the
 * range outward to ticks (otherwise the range is kept and ticks fall inside it). */
void plot_init(Plot *p, double px, double py, double pw, double ph, double xmin, double xmax,
               double ymin, double ymax, bool nice_x, bool nice_y);
double plot_x(const Plot *p, double x);
double plot_y(const Plot *p, double y);
/* Frame, grid lines, tick labels, axis labels and a title above. xcat (n_cat names)
 * labels x = 0..n_cat-1 instead of numeric ticks. */
void plot_axes(Svg *s, const Plot *p, const char *xlabel, const char *ylabel, const char *title,
               const char *const *xcat, int n_cat);
/* A data-space line (markers: circles of radius r if r > 0). */
void plot_line(Svg *s, const Plot *p, const double *x, const double *y, int n, const char *color,
               double width, const char *dash, double r);
/* Width in pixels of plot_legend's box for these names. */
double plot_legend_width(const char *const *names, int n);
/* A legend box at pixel (x, y): one row per name, a line swatch (and a dot). */
void plot_legend(Svg *s, double x, double y, const char *const *names, const char *const *colors,
                 int n);

#endif
