// tokens.cpp — shaded token text with cairo: measure, wrap into lines, keep the last lines
// that fit, draw the boxes and the text, then the colour scale.
#include "viz/tokens.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include <fmt/format.h>

#include "tensor/error.h"
#include "viz/detail.h"

namespace copper::viz {

namespace {
using detail::Rgb;

constexpr const char* kOp = "tokens";
constexpr double kMarginPx = 20;
constexpr double kFontPx = 14, kTitleFontPx = 16, kNoteFontPx = 11;
constexpr double kPadPx = 2;          // inside a token's box, left and right
constexpr double kGapPx = 1;          // between neighbouring boxes
constexpr double kBoxHeightPx = 19;
constexpr double kDarkText = 0.65;    // values above this get white text
constexpr const char* kNewlineGlyph = "\u21b5";
constexpr Rgb kNanColour{0.75, 0.75, 0.75};
constexpr double kScaleWidthPx = 300, kScaleHeightPx = 14;
constexpr int kScaleStops = 16;  // gradient stops along the scale

// One drawn piece: a token's text up to a newline (or the newline glyph), on one line.
struct Piece {
  std::string text;
  float value;
  int line;
  double x, w;
};

void font(cairo_t* cr, double px, bool bold = false) {
  cairo_select_font_face(cr, detail::kFontFamily, CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, px);
}

double advance(cairo_t* cr, const std::string& s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}

// Lay the tokens out; returns the pieces and the number of lines.
std::vector<Piece> layout(cairo_t* cr, const std::vector<std::string>& tokens, const std::vector<float>& values,
                          int& lines) {
  const double x0 = kMarginPx, x1 = kTokenImageWidthPx - kMarginPx;
  std::vector<Piece> out;
  int line = 0;
  double x = x0;
  auto place = [&](const std::string& text, float v) {
    double w = advance(cr, text) + 2 * kPadPx;
    if (x > x0 && x + w > x1) ++line, x = x0;
    out.push_back({text, v, line, x, std::min(w, x1 - x0)});
    x += w + kGapPx;
  };
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    size_t start = 0;
    while (true) {
      size_t nl = t.find('\n', start);
      std::string part = detail::printable(t.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
      if (!part.empty()) place(part, values[i]);
      if (nl == std::string::npos) break;
      place(kNewlineGlyph, values[i]);
      ++line, x = x0;
      start = nl + 1;
    }
  }
  lines = out.empty() ? 1 : out.back().line + 1;
  return out;
}

void set_rgb(cairo_t* cr, const Rgb& c) { cairo_set_source_rgb(cr, c.r, c.g, c.b); }
}  // namespace

ImageSize token_gates_png(const std::string& path, const std::vector<std::string>& tokens,
                          const std::vector<float>& values, const std::string& title) {
  COPPER_CHECK(!tokens.empty(), kOp, "no tokens to draw. HINT: pass the text's tokens");
  COPPER_CHECK(tokens.size() == values.size(), kOp, "{} tokens but {} values. HINT: give one value per token",
               tokens.size(), values.size());

  // Measure on a scratch surface, then size the picture.
  auto scratch = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>(
      cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1), &cairo_surface_destroy);
  auto mcr = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>(cairo_create(scratch.get()), &cairo_destroy);
  font(mcr.get(), kFontPx);
  int lines = 0;
  std::vector<Piece> pieces = layout(mcr.get(), tokens, values, lines);
  const int first_line = std::max(0, lines - kTokenMaxLines);
  const int shown = lines - first_line;
  size_t hidden_pieces = 0;
  for (const auto& p : pieces) hidden_pieces += p.line < first_line;

  const int width = kTokenImageWidthPx;
  const int height = kTokenTopPx + shown * kTokenLineHeightPx + kTokenBottomPx;
  auto surface = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>(
      cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height), &cairo_surface_destroy);
  auto owner = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>(cairo_create(surface.get()), &cairo_destroy);
  cairo_t* cr = owner.get();
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);

  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  font(cr, kTitleFontPx, true);
  cairo_move_to(cr, kMarginPx, kTokenTopPx / 2.0 + 4);
  cairo_show_text(cr, title.c_str());

  font(cr, kFontPx);
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  for (const auto& p : pieces) {
    if (p.line < first_line) continue;
    double top = kTokenTopPx + (p.line - first_line) * kTokenLineHeightPx;
    bool nan = std::isnan(p.value);
    double v = nan ? 0 : std::clamp(double(p.value), 0.0, 1.0);
    set_rgb(cr, nan ? kNanColour : detail::oranges(v));
    cairo_rectangle(cr, p.x, top, p.w, kBoxHeightPx);
    cairo_fill(cr);
    cairo_save(cr);
    cairo_rectangle(cr, p.x, top, p.w, kBoxHeightPx);
    cairo_clip(cr);
    double shade = !nan && v > kDarkText ? 1.0 : 0.0;
    cairo_set_source_rgb(cr, shade, shade, shade);
    cairo_move_to(cr, p.x + kPadPx, top + (kBoxHeightPx + fe.ascent - fe.descent) / 2);
    cairo_show_text(cr, p.text.c_str());
    cairo_restore(cr);
  }

  // The colour scale, then the note on left-out tokens.
  const double sy = kTokenTopPx + shown * kTokenLineHeightPx + 22;
  {
    std::unique_ptr<cairo_pattern_t, decltype(&cairo_pattern_destroy)> grad(
        cairo_pattern_create_linear(kMarginPx, 0, kMarginPx + kScaleWidthPx, 0), &cairo_pattern_destroy);
    for (int i = 0; i <= kScaleStops; ++i) {
      double t = double(i) / kScaleStops;
      Rgb c = detail::oranges(t);
      cairo_pattern_add_color_stop_rgb(grad.get(), t, c.r, c.g, c.b);
    }
    cairo_set_source(cr, grad.get());
    cairo_rectangle(cr, kMarginPx, sy, kScaleWidthPx, kScaleHeightPx);
    cairo_fill(cr);
  }
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, kMarginPx - 0.5, sy - 0.5, kScaleWidthPx + 1, kScaleHeightPx + 1);
  cairo_stroke(cr);
  font(cr, kNoteFontPx);
  for (double t : {0.0, 0.5, 1.0}) {
    std::string s = fmt::format("{:g}", t);
    cairo_move_to(cr, kMarginPx + t * kScaleWidthPx - advance(cr, s) * t, sy + kScaleHeightPx + 13);
    cairo_show_text(cr, s.c_str());
  }
  cairo_move_to(cr, kMarginPx + kScaleWidthPx + 12, sy + kScaleHeightPx - 2);
  cairo_show_text(cr, "gate value");
  if (hidden_pieces > 0) {
    std::string note = fmt::format("note: the first {} lines ({} pieces of text) are not shown", first_line,
                                   hidden_pieces);
    cairo_move_to(cr, kMarginPx + kScaleWidthPx + 110, sy + kScaleHeightPx - 2);
    cairo_show_text(cr, note.c_str());
  }

  cairo_surface_flush(surface.get());
  detail::write_png(kOp, surface.get(), path);
  return {width, height};
}

}  // namespace copper::viz
