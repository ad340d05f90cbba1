// detail.cpp — output files and colour maps shared by the pictures of copper_viz.
#include "viz/detail.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "tensor/error.h"

namespace copper::viz::detail {

namespace {
constexpr const char* kWriteHint = "check that the folder exists and is writable";

Rgb lerp(const Rgb& a, const Rgb& b, double t) {
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}

// Piecewise-linear interpolation through N evenly spaced stops.
template <size_t N>
Rgb from_stops(const std::array<Rgb, N>& stops, double t) {
  if (!(t > 0)) return stops.front();  // also NaN
  if (t >= 1) return stops.back();
  double pos = t * double(N - 1);
  size_t i = std::min(size_t(pos), N - 2);
  return lerp(stops[i], stops[i + 1], pos - double(i));
}

// Viridis sampled at 0, 1/8, ..., 1 (matplotlib's table).
constexpr std::array<Rgb, 9> kViridis = {{{0.267, 0.005, 0.329},
                                          {0.278, 0.175, 0.483},
                                          {0.229, 0.322, 0.546},
                                          {0.173, 0.448, 0.558},
                                          {0.128, 0.567, 0.551},
                                          {0.153, 0.682, 0.504},
                                          {0.361, 0.787, 0.388},
                                          {0.668, 0.862, 0.196},
                                          {0.993, 0.906, 0.144}}};

// ColorBrewer "Oranges" from white.
constexpr std::array<Rgb, 5> kOranges = {
    {{1.0, 1.0, 1.0}, {0.992, 0.816, 0.635}, {0.992, 0.553, 0.235}, {0.851, 0.282, 0.004}, {0.498, 0.153, 0.016}}};
}  // namespace

std::string temp_path_for(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

void check_writable(const std::string& op, const std::string& path, const std::string& tmp) {
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) COPPER_THROW(op, "cannot write {}: {}. HINT: {}", path, std::strerror(errno), kWriteHint);
  std::fclose(f);
}

void commit_file(const std::string& op, const std::string& tmp, const std::string& path) {
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    COPPER_THROW(op, "cannot move the picture to {}: {}. HINT: {}", path, ec.message(), kWriteHint);
  }
}

void write_png(const std::string& op, cairo_surface_t* surface, const std::string& path) {
  cairo_status_t st = cairo_surface_status(surface);
  COPPER_CHECK(st == CAIRO_STATUS_SUCCESS, op, "drawing {} failed: {}. HINT: the picture may be too large", path,
               cairo_status_to_string(st));
  std::string tmp = temp_path_for(path);
  check_writable(op, path, tmp);
  st = cairo_surface_write_to_png(surface, tmp.c_str());
  if (st != CAIRO_STATUS_SUCCESS) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    COPPER_THROW(op, "cannot write {}: {}. HINT: {}", path, cairo_status_to_string(st), kWriteHint);
  }
  commit_file(op, tmp, path);
}

namespace {
// Length of the UTF-8 sequence starting at s[i] when valid (1..4), else 0.
size_t utf8_len(const std::string& s, size_t i) {
  auto b = static_cast<unsigned char>(s[i]);
  size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
  if (n == 2 && b < 0xC2) return 0;  // overlong
  return n;
}
}  // namespace

std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    size_t n = utf8_len(s, i);
    if (b == '\n') out += "\\n";
    else if (b == '\t') out += "\\t";
    else if (b == '\r') out += "\\r";
    else if (n == 0 || b < 0x20 || b == 0x7F) out += fmt::format("\\x{:02X}", b);
    else if (n == 2 && b == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0)
      out += fmt::format("\\u{{{:02X}}}", static_cast<unsigned char>(s[i + 1]));
    else out.append(s, i, n);
    i += n == 0 || b < 0x80 ? 1 : n;
  }
  return out;
}

std::string truncate_chars(const std::string& s, size_t max_chars) {
  size_t chars = 0, i = 0, cut = 0;
  while (i < s.size()) {
    size_t n = std::max<size_t>(1, utf8_len(s, i));
    if (chars + 1 == max_chars) cut = i;
    ++chars;
    i += n;
  }
  if (chars <= max_chars || max_chars == 0) return chars <= max_chars ? s : std::string();
  return s.substr(0, cut) + "\u2026";
}

Rgb viridis(double t) { return from_stops(kViridis, t); }
Rgb oranges(double t) { return from_stops(kOranges, t); }

}  // namespace copper::viz::detail
