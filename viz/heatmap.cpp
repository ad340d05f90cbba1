// heatmap.cpp — heat maps with cairo: the matrix as an image scaled up without smoothing,
// tick labels, paragraph/section marks on both axes, a colour bar, a legend and a note.
#include "viz/heatmap.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include <fmt/format.h>

#include "tensor/error.h"
#include "viz/detail.h"

namespace copper::viz {

namespace {
using detail::Rgb;

constexpr const char* kOp = "heatmap";
constexpr Rgb kParagraphColour{0.91, 0.16, 0.16};  // red: paragraph breaks
constexpr Rgb kSectionColour{1.0, 0.24, 0.94};     // magenta: section headings
constexpr Rgb kNanColour{0.6, 0.6, 0.6};
constexpr Rgb kInk{0.1, 0.1, 0.1};
constexpr double kTitleFontPx = 16, kAxisFontPx = 13, kTickFontPx = 10, kNoteFontPx = 11;
constexpr double kTickSpacingPx = 12;      // tick labels at least this far apart
constexpr double kNumberSpacingPx = 50;    // numeric ticks at least this far apart
constexpr size_t kMaxTickChars = 14;       // tick labels cut to this many characters
constexpr double kMarkTickPx = 10;         // mark ticks outside the grid (top and right)
constexpr double kColourBarGapPx = 28, kColourBarWidthPx = 18;
constexpr int kColourBarStops = 32;  // gradient stops along the colour bar

struct Layout {
  int64_t pool = 1;          // max-pooling factor on both axes
  int64_t rows = 0, cols = 0;  // after pooling
  int cell = 0;
  int grid_w = 0, grid_h = 0;
  int width = 0, height = 0;
  int area_h = 0;            // the grid's layout height (at least kMinGridHeightPx)
};

std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> surface_ptr(cairo_surface_t* s) {
  return {s, &cairo_surface_destroy};
}
std::unique_ptr<cairo_t, decltype(&cairo_destroy)> context_ptr(cairo_t* c) { return {c, &cairo_destroy}; }

const Rgb& mark_colour(const std::string& kind) {
  if (kind == "paragraph") return kParagraphColour;
  if (kind == "section") return kSectionColour;
  COPPER_THROW(kOp, "unknown mark kind '{}'. HINT: use \"paragraph\" or \"section\"", kind);
}

void check_spec(const HeatmapSpec& s) {
  COPPER_CHECK(s.rows > 0 && s.cols > 0, kOp, "empty matrix {}x{}. HINT: rows and cols must be positive", s.rows,
               s.cols);
  COPPER_CHECK(int64_t(s.values.size()) == s.rows * s.cols, kOp,
               "{} values for a {}x{} matrix. HINT: values holds rows*cols numbers, row-major", s.values.size(),
               s.rows, s.cols);
  COPPER_CHECK(s.row_labels.empty() || int64_t(s.row_labels.size()) == s.rows, kOp,
               "{} row labels for {} rows. HINT: give one per row or none", s.row_labels.size(), s.rows);
  COPPER_CHECK(s.col_labels.empty() || int64_t(s.col_labels.size()) == s.cols, kOp,
               "{} column labels for {} columns. HINT: give one per column or none", s.col_labels.size(), s.cols);
  for (const auto& m : s.marks) {
    mark_colour(m.kind);
    COPPER_CHECK(m.index >= 0 && (m.index < s.rows || m.index < s.cols), kOp,
                 "mark '{}' at {} lies outside the {}x{} matrix. HINT: marks index rows/columns from 0", m.kind,
                 m.index, s.rows, s.cols);
  }
}

Layout layout_of(const HeatmapSpec& s) {
  check_spec(s);
  Layout L;
  int64_t n = std::max(s.rows, s.cols);
  if (n > kMaxCells) L.pool = (n + kMaxCells - 1) / kMaxCells;
  L.rows = (s.rows + L.pool - 1) / L.pool;
  L.cols = (s.cols + L.pool - 1) / L.pool;
  int64_t pn = std::max(L.rows, L.cols);
  L.cell = int(std::clamp<int64_t>(kMaxGridPx / pn, kMinCellPx, kMaxCellPx));
  L.grid_w = int(L.cols) * L.cell;
  L.grid_h = int(L.rows) * L.cell;
  L.area_h = std::max(L.grid_h, kMinGridHeightPx);
  L.width = kMarginLeftPx + std::max(L.grid_w, kMinGridWidthPx) + kMarginRightPx;
  L.height = kMarginTopPx + L.area_h + kMarginBottomPx + (s.col_labels.empty() ? 0 : kTickLabelPx);
  return L;
}

// The pooled matrix: each cell the max of its pool x pool block (NaN when all are NaN).
std::vector<float> pooled(const HeatmapSpec& s, const Layout& L) {
  if (L.pool == 1) return s.values;
  std::vector<float> out(size_t(L.rows * L.cols), std::numeric_limits<float>::quiet_NaN());
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t c = 0; c < s.cols; ++c) {
      float v = s.values[size_t(r * s.cols + c)];
      float& o = out[size_t((r / L.pool) * L.cols + c / L.pool)];
      if (!std::isnan(v) && (std::isnan(o) || v > o)) o = v;
    }
  return out;
}

void set_rgb(cairo_t* cr, const Rgb& c, double alpha = 1.0) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }

void font(cairo_t* cr, double px, bool bold = false) {
  cairo_select_font_face(cr, detail::kFontFamily, CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, px);
}

// Text with its reference point at (x, y): halign 0 left, 0.5 centre, 1 right; baseline at
// y + valign-adjusted height (valign 0.5 centres the text vertically on y).
void text(cairo_t* cr, double x, double y, const std::string& s, double halign, double valign = 0.5) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  cairo_move_to(cr, x - e.x_advance * halign, y + (-e.y_bearing) * valign);
  cairo_show_text(cr, s.c_str());
}

// The smallest 1, 2, 5 x 10^k step of indices whose ticks lie min_px apart at px_per_index.
int64_t nice_step(double px_per_index, double min_px) {
  for (int64_t base = 1;; base *= 10)
    for (int64_t m : {1, 2, 5})
      if (double(base * m) * px_per_index >= min_px) return base * m;
}

std::string number(double v) { return fmt::format("{:.3g}", v); }
}  // namespace

ImageSize heatmap_size(const HeatmapSpec& spec) {
  Layout L = layout_of(spec);
  return {L.width, L.height};
}

ImageSize heatmap_png(const std::string& path, const HeatmapSpec& spec) {
  const Layout L = layout_of(spec);
  const std::vector<float> m = pooled(spec, L);

  float lo = spec.lo, hi = spec.hi;
  if (!(lo < hi)) {
    lo = std::numeric_limits<float>::infinity();
    hi = -lo;
    for (float v : spec.values)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    if (!(lo <= hi)) lo = 0, hi = 1;  // no finite value
    if (lo == hi) hi = lo + 1;
  }

  auto surface = surface_ptr(cairo_image_surface_create(CAIRO_FORMAT_RGB24, L.width, L.height));
  auto cr_owner = context_ptr(cairo_create(surface.get()));
  cairo_t* cr = cr_owner.get();
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);

  const double gx0 = kMarginLeftPx, gy0 = kMarginTopPx;
  const double gx1 = gx0 + L.grid_w, gy1 = gy0 + L.grid_h;
  const double px_per_index = double(L.cell) / double(L.pool);  // along either axis

  // Title, centred over the grid's layout area.
  set_rgb(cr, kInk);
  font(cr, kTitleFontPx, true);
  text(cr, gx0 + std::max(L.grid_w, kMinGridWidthPx) / 2.0, kMarginTopPx / 2.0 - 4, spec.title, 0.5);

  // The cells: one pixel per (pooled) cell, scaled up by `cell` with nearest-neighbour filtering.
  {
    auto cells = surface_ptr(cairo_image_surface_create(CAIRO_FORMAT_RGB24, int(L.cols), int(L.rows)));
    cairo_surface_flush(cells.get());
    unsigned char* data = cairo_image_surface_get_data(cells.get());
    int stride = cairo_image_surface_get_stride(cells.get());
    COPPER_CHECK(data != nullptr, kOp, "cannot allocate a {}x{} image. HINT: out of memory?", L.cols, L.rows);
    for (int64_t r = 0; r < L.rows; ++r) {
      auto* row = reinterpret_cast<uint32_t*>(data + r * stride);
      for (int64_t c = 0; c < L.cols; ++c) {
        float v = m[size_t(r * L.cols + c)];
        Rgb col = std::isnan(v) ? kNanColour : detail::viridis((double(v) - lo) / (double(hi) - lo));
        row[c] = (uint32_t(std::lround(col.r * 255)) << 16) | (uint32_t(std::lround(col.g * 255)) << 8) |
                 uint32_t(std::lround(col.b * 255));
      }
    }
    cairo_surface_mark_dirty(cells.get());
    cairo_save(cr);
    cairo_translate(cr, gx0, gy0);
    cairo_scale(cr, L.cell, L.cell);
    cairo_set_source_surface(cr, cells.get(), 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
    cairo_paint(cr);
    cairo_restore(cr);
  }
  set_rgb(cr, kInk);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, gx0 - 0.5, gy0 - 0.5, L.grid_w + 1, L.grid_h + 1);
  cairo_stroke(cr);

  // Ticks: the given labels where they fit, else index numbers.
  font(cr, kTickFontPx);
  const double tick_len = 4;
  auto centre = [&](int64_t index) { return (double(index / L.pool) + 0.5) * L.cell; };
  {
    bool labels = !spec.row_labels.empty();
    int64_t step = labels ? nice_step(px_per_index, kTickSpacingPx) : nice_step(px_per_index, kNumberSpacingPx);
    if (labels && L.pool > 1) step = std::max(step, L.pool);
    for (int64_t r = 0; r < spec.rows; r += step) {
      double y = gy0 + centre(r);
      cairo_move_to(cr, gx0 - tick_len, y);
      cairo_line_to(cr, gx0, y);
      cairo_stroke(cr);
      std::string s = labels ? detail::truncate_chars(detail::printable(spec.row_labels[size_t(r)]), kMaxTickChars)
                             : std::to_string(r);
      text(cr, gx0 - tick_len - 2, y, s, 1.0);
    }
  }
  double col_label_px = 0;  // how far the rotated column labels reach below the grid
  {
    bool labels = !spec.col_labels.empty();
    int64_t step = labels ? nice_step(px_per_index, kTickSpacingPx) : nice_step(px_per_index, kNumberSpacingPx);
    if (labels && L.pool > 1) step = std::max(step, L.pool);
    for (int64_t c = 0; c < spec.cols; c += step) {
      double x = gx0 + centre(c);
      cairo_move_to(cr, x, gy1);
      cairo_line_to(cr, x, gy1 + tick_len);
      cairo_stroke(cr);
      if (labels) {
        cairo_save(cr);
        cairo_translate(cr, x, gy1 + tick_len + 2);
        cairo_rotate(cr, -M_PI / 2);
        std::string s = detail::truncate_chars(detail::printable(spec.col_labels[size_t(c)]), kMaxTickChars);
        cairo_text_extents_t e;
        cairo_text_extents(cr, s.c_str(), &e);
        col_label_px = std::max(col_label_px, e.x_advance + tick_len + 2);
        text(cr, 0, 0, s, 1.0);
        cairo_restore(cr);
      } else {
        text(cr, x, gy1 + tick_len + 8, std::to_string(c), 0.5);
      }
    }
  }
  const double xlabel_y = gy0 + L.area_h + std::min(col_label_px, double(kTickLabelPx)) + 34;

  // Axis labels.
  font(cr, kAxisFontPx);
  text(cr, gx0 + L.grid_w / 2.0, xlabel_y, spec.xlabel, 0.5);
  cairo_save(cr);
  cairo_translate(cr, 18, gy0 + L.grid_h / 2.0);
  cairo_rotate(cr, -M_PI / 2);
  text(cr, 0, 0, spec.ylabel, 0.5);
  cairo_restore(cr);

  // Marks: a line across the grid through the marked row and column, and a tick outside the
  // grid on the top and right edges; labels beside the row line.
  const double mark_line = std::clamp(L.cell / 4.0, 1.0, 2.0);
  bool has_kind[2] = {false, false};
  for (const auto& mk : spec.marks) {
    const Rgb& col = mark_colour(mk.kind);
    has_kind[mk.kind == "section"] = true;
    set_rgb(cr, col);
    if (mk.index < spec.rows) {
      double y = gy0 + centre(mk.index);
      cairo_set_line_width(cr, mark_line);
      cairo_move_to(cr, gx0, y);
      cairo_line_to(cr, gx1, y);
      cairo_stroke(cr);
      cairo_set_line_width(cr, 3);
      cairo_move_to(cr, gx1 + 2, y);
      cairo_line_to(cr, gx1 + 2 + kMarkTickPx, y);
      cairo_stroke(cr);
    }
    if (mk.index < spec.cols) {
      double x = gx0 + centre(mk.index);
      cairo_set_line_width(cr, mark_line);
      cairo_move_to(cr, x, gy0);
      cairo_line_to(cr, x, gy1);
      cairo_stroke(cr);
      cairo_set_line_width(cr, 3);
      cairo_move_to(cr, x, gy0 - 2);
      cairo_line_to(cr, x, gy0 - 2 - kMarkTickPx);
      cairo_stroke(cr);
    }
  }
  font(cr, kTickFontPx);
  for (const auto& mk : spec.marks) {
    if (mk.label.empty() || mk.index >= spec.rows) continue;
    std::string s = detail::truncate_chars(detail::printable(mk.label), 40);
    cairo_text_extents_t e;
    cairo_text_extents(cr, s.c_str(), &e);
    // Above the line, or below it when that would leave the grid (a mark on the first rows).
    double y = gy0 + centre(mk.index) - 3;
    if (y - kTickFontPx < gy0) y += kTickFontPx + 6;
    cairo_set_source_rgba(cr, 1, 1, 1, 0.75);
    cairo_rectangle(cr, gx0 + 2, y - kTickFontPx, e.x_advance + 4, kTickFontPx + 2);
    cairo_fill(cr);
    set_rgb(cr, mark_colour(mk.kind));
    cairo_move_to(cr, gx0 + 4, y - 1);
    cairo_show_text(cr, s.c_str());
  }

  // Colour bar beside the grid.
  {
    const double bx = gx1 + kColourBarGapPx, bh = L.area_h;
    std::unique_ptr<cairo_pattern_t, decltype(&cairo_pattern_destroy)> grad(
        cairo_pattern_create_linear(0, gy0 + bh, 0, gy0), &cairo_pattern_destroy);
    for (int i = 0; i <= kColourBarStops; ++i) {
      double t = double(i) / kColourBarStops;
      Rgb c = detail::viridis(t);
      cairo_pattern_add_color_stop_rgb(grad.get(), t, c.r, c.g, c.b);
    }
    cairo_set_source(cr, grad.get());
    cairo_rectangle(cr, bx, gy0, kColourBarWidthPx, bh);
    cairo_fill(cr);
    set_rgb(cr, kInk);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, bx - 0.5, gy0 - 0.5, kColourBarWidthPx + 1, bh + 1);
    cairo_stroke(cr);
    font(cr, kTickFontPx);
    for (double t : {0.0, 0.25, 0.5, 0.75, 1.0}) {
      double y = gy0 + (1 - t) * bh;
      cairo_move_to(cr, bx + kColourBarWidthPx, y);
      cairo_line_to(cr, bx + kColourBarWidthPx + 4, y);
      cairo_stroke(cr);
      text(cr, bx + kColourBarWidthPx + 6, y, number(lo + t * (double(hi) - lo)), 0);
    }
  }

  // Legend of the mark kinds present, then the pooling note.
  font(cr, kNoteFontPx);
  double lx = gx0, ly = xlabel_y + 28;
  const std::pair<const char*, const Rgb*> kinds[2] = {{"paragraph break", &kParagraphColour},
                                                       {"section heading", &kSectionColour}};
  for (int k = 0; k < 2; ++k) {
    if (!has_kind[k]) continue;
    set_rgb(cr, *kinds[k].second);
    cairo_set_line_width(cr, 3);
    cairo_move_to(cr, lx, ly);
    cairo_line_to(cr, lx + 22, ly);
    cairo_stroke(cr);
    set_rgb(cr, kInk);
    cairo_text_extents_t e;
    cairo_text_extents(cr, kinds[k].first, &e);
    text(cr, lx + 28, ly, kinds[k].first, 0);
    lx += 28 + e.x_advance + 24;
  }
  if (L.pool > 1) {
    set_rgb(cr, kInk);
    text(cr, gx0, ly + 22,
         fmt::format("note: {}x{} max-pooled by {} to {}x{} cells", spec.rows, spec.cols, L.pool, L.rows, L.cols), 0);
  }

  cairo_surface_flush(surface.get());
  detail::write_png(kOp, surface.get(), path);
  return {L.width, L.height};
}

}  // namespace copper::viz
