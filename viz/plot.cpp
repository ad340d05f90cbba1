// plot.cpp — line plots with PLplot's C++ binding (plstream) on the pngcairo device.
//
// PLplot keeps global state (the current stream), so one plot is drawn at a time under a
// mutex, on a stream of its own that its destructor ends (plend1), which writes the file.
#include "viz/plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <limits>
#include <mutex>

#include <plstream.h>

#include "tensor/error.h"
#include "viz/detail.h"

namespace copper::viz {

namespace {
constexpr const char* kOp = "plot";
constexpr const char* kDevice = "pngcairo";

// cmap0 indices: 0 background, 1 ink (axes, text), then the series palette.
constexpr PLINT kBackground = 0, kInk = 1, kFirstSeries = 2;
// The "tab10" palette (matplotlib's default cycle).
constexpr std::array<std::array<int, 3>, 10> kPalette = {{{31, 119, 180},
                                                          {255, 127, 14},
                                                          {44, 160, 44},
                                                          {214, 39, 40},
                                                          {148, 103, 189},
                                                          {140, 86, 75},
                                                          {227, 119, 194},
                                                          {127, 127, 127},
                                                          {188, 189, 34},
                                                          {23, 190, 207}}};
constexpr PLINT kSolid = 1, kDashed = 3;  // PLplot line styles (plsty)
constexpr const char* kMarker = "#(840)"; // Hershey filled circle
constexpr double kLineWidth = 2.0, kMarkerScale = 0.6;
constexpr double kCharScale = 0.9;
// The axes' viewport in normalized device coordinates; the legend goes right of it. The
// right edge moves left for long legend labels, so that the legend fits inside the page.
constexpr double kVpLeft = 0.08, kVpRightMax = 0.72, kVpBottom = 0.11, kVpTop = 0.92;
// The legend's width as a fraction of the page: the line sample and padding, plus one
// character's advance per label character (measured on the 1000-px pngcairo page at
// kCharScale), and the gap from the axes (kLegendGap, in viewport units) plus a margin.
constexpr double kLegendFixed = 0.085, kLegendPerChar = 0.0112, kLegendGap = 0.02, kPageMargin = 0.015;
constexpr double kPadFraction = 0.04;  // room around the data range

std::mutex plplot_mutex;

// PLplot reads '#' as the start of an escape sequence; "##" is a literal '#'.
std::string pl_text(const std::string& s) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == '#') out += '#';
  }
  return out;
}

bool has_device(plstream& pls, const char* name) {
  constexpr int kMaxDevices = 128;
  std::array<const char*, kMaxDevices> menu{}, names{};
  const char** pm = menu.data();
  const char** pn = names.data();
  int n = kMaxDevices;
  pls.gFileDevs(&pm, &pn, &n);
  for (int i = 0; i < n; ++i)
    if (names[size_t(i)] && std::string(names[size_t(i)]) == name) return true;
  return false;
}

// The right edge of the axes that leaves room for the legend of these series.
double viewport_right(const std::vector<Series>& series) {
  size_t chars = 0;
  for (const Series& s : series) chars = std::max(chars, s.name.size());
  const double legend = kLegendFixed + kLegendPerChar * double(chars);
  // The gap is in viewport units: about the viewport's width times kLegendGap of the page.
  const double right = 1.0 - kPageMargin - legend - kLegendGap * (kVpRightMax - kVpLeft);
  return std::clamp(right, kVpLeft + 0.3, kVpRightMax);
}

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) { lo = std::min(lo, v), hi = std::max(hi, v); }
  bool empty() const { return !(lo <= hi); }
  // Widen by a fraction on each side (and to a unit when the range is a point).
  Range padded() const {
    Range r = *this;
    if (r.lo == r.hi) r.lo -= 0.5, r.hi += 0.5;
    double pad = (r.hi - r.lo) * kPadFraction;
    r.lo -= pad, r.hi += pad;
    return r;
  }
};
// Labels of a log y axis: PLplot labels decades only, which leaves a loss curve within one
// decade with one label or none; this writes 1, 2, 5 x 10^k (or 10^k alone over many
// decades) beside the axis, values as plain numbers.
void label_log_axis(plstream& pls, const Range& log_range) {
  constexpr double kDecadesForMantissas = 2.5;
  constexpr double kLabelOffset = 0.8;  // character heights left of the axis
  const bool mantissas = log_range.hi - log_range.lo <= kDecadesForMantissas;
  for (int k = int(std::floor(log_range.lo)); k <= int(std::ceil(log_range.hi)); ++k)
    for (double m : {1.0, 2.0, 5.0}) {
      if (m != 1.0 && !mantissas) continue;
      double v = m * std::pow(10.0, k), lv = std::log10(v);
      if (lv < log_range.lo || lv > log_range.hi) continue;
      double pos = (lv - log_range.lo) / (log_range.hi - log_range.lo);
      pls.mtex("lv", kLabelOffset, pos, 1.0, fmt::format("{:g}", v).c_str());
    }
}
}  // namespace

void line_plot_png(const std::string& path, const std::vector<Series>& series, const std::string& xlabel,
                   const std::string& ylabel, const std::string& title, bool log_y) {
  COPPER_CHECK(!series.empty(), kOp, "no series to plot. HINT: pass at least one series");
  // The drawable points of each series, y as log10 when log_y (PLplot's log axes take logs).
  std::vector<std::vector<std::array<double, 2>>> pts(series.size());
  Range xr, yr;
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    COPPER_CHECK(s.x.size() == s.y.size(), kOp, "series '{}' has {} x but {} y values. HINT: x and y pair up",
                 s.name, s.x.size(), s.y.size());
    for (size_t k = 0; k < s.x.size(); ++k) {
      double x = s.x[k], y = s.y[k];
      bool ok = std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0);
      if (!ok) {
        pts[i].push_back({std::numeric_limits<double>::quiet_NaN(), 0});  // a break in the line
        continue;
      }
      if (log_y) y = std::log10(y);
      pts[i].push_back({x, y});
      xr.add(x), yr.add(y);
    }
  }
  COPPER_CHECK(!xr.empty(), kOp, "no drawable point in {} series. HINT: {}", series.size(),
               log_y ? "a log scale needs positive y values" : "the values are all NaN or infinite");
  xr = xr.padded(), yr = yr.padded();

  const std::string tmp = detail::temp_path_for(path);
  detail::check_writable(kOp, path, tmp);
  std::lock_guard<std::mutex> lock(plplot_mutex);
  {
    plstream pls;
    if (!has_device(pls, kDevice)) {
      std::filesystem::remove(tmp);
      COPPER_THROW(kOp, "PLplot has no '{}' device. HINT: install plplot-driver-cairo (Debian)", kDevice);
    }
    pls.sdev(kDevice);
    pls.sfnam(tmp.c_str());
    pls.setopt("geometry", fmt::format("{}x{}", kPlotWidthPx, kPlotHeightPx).c_str());
    pls.scmap0n(16);
    pls.scol0(kBackground, 255, 255, 255);
    pls.scol0(kInk, 30, 30, 30);
    for (size_t i = 0; i < kPalette.size(); ++i)
      pls.scol0(kFirstSeries + PLINT(i), kPalette[i][0], kPalette[i][1], kPalette[i][2]);
    pls.init();
    pls.schr(0, kCharScale);
    pls.adv(0);
    pls.vpor(kVpLeft, viewport_right(series), kVpBottom, kVpTop);
    pls.wind(xr.lo, xr.hi, yr.lo, yr.hi);
    pls.col0(kInk);
    pls.width(1.0);
    pls.box("bcnst", 0, 0, log_y ? "bcstl" : "bcnstv", 0, 0);
    if (log_y) label_log_axis(pls, yr);
    pls.lab(pl_text(xlabel).c_str(), pl_text(ylabel).c_str(), pl_text(title).c_str());

    std::vector<PLINT> opts, colors, styles, text_colors, symbol_numbers;
    std::vector<PLFLT> widths, symbol_scales;
    std::vector<std::string> names;
    for (size_t i = 0; i < series.size(); ++i) {
      const Series& s = series[i];
      PLINT col = kFirstSeries + PLINT((s.color >= 0 ? size_t(s.color) : i) % kPalette.size());
      pls.col0(col);
      pls.width(kLineWidth);
      pls.lsty(s.dashed ? kDashed : kSolid);
      pls.ssym(0, kMarkerScale);
      // Draw each unbroken run of points as one line.
      std::vector<PLFLT> xs, ys;
      auto flush = [&] {
        if (xs.size() > 1) pls.line(PLINT(xs.size()), xs.data(), ys.data());
        if (s.dashed && !xs.empty()) pls.string(PLINT(xs.size()), xs.data(), ys.data(), kMarker);
        xs.clear(), ys.clear();
      };
      for (const auto& p : pts[i]) {
        if (std::isnan(p[0])) {
          flush();
          continue;
        }
        xs.push_back(p[0]), ys.push_back(p[1]);
      }
      if (xs.size() == 1 && !s.dashed) pls.string(1, xs.data(), ys.data(), kMarker);  // a lone point
      flush();
      opts.push_back(PL_LEGEND_LINE | (s.dashed ? PL_LEGEND_SYMBOL : 0));
      colors.push_back(col);
      styles.push_back(s.dashed ? kDashed : kSolid);
      widths.push_back(kLineWidth);
      text_colors.push_back(kInk);
      symbol_numbers.push_back(3);
      symbol_scales.push_back(kMarkerScale);
      names.push_back(pl_text(s.name));
    }
    pls.lsty(kSolid);
    pls.width(1.0);
    std::vector<const char*> texts, symbols;
    for (const auto& n : names) texts.push_back(n.c_str()), symbols.push_back(kMarker);
    PLFLT lw = 0, lh = 0;
    pls.legend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
               PL_POSITION_OUTSIDE | PL_POSITION_RIGHT, kLegendGap, 0.0, 0.06, kBackground, kInk, 1, 0,
               0, PLINT(names.size()), opts.data(), 1.0, 0.9, 2.0, 0.0, text_colors.data(), texts.data(), nullptr,
               nullptr, nullptr, nullptr, colors.data(), styles.data(), widths.data(), colors.data(),
               symbol_scales.data(), symbol_numbers.data(), symbols.data());
  }  // ~plstream ends the stream: PLplot writes the PNG

  std::error_code ec;
  if (!std::filesystem::exists(tmp, ec) || std::filesystem::file_size(tmp, ec) == 0) {
    std::filesystem::remove(tmp, ec);
    COPPER_THROW(kOp, "PLplot wrote no picture for {}. HINT: run with PLplot's messages on stderr in view; is "
                      "plplot-driver-cairo installed?",
                 path);
  }
  detail::commit_file(kOp, tmp, path);
}

}  // namespace copper::viz
