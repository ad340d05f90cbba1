// detail.h — what the pictures of copper_viz share: the output file protocol (write a
// temporary file beside the target, then rename it over the target, so that a failure never
// leaves a half-written or clobbered picture), colour maps, and checks on PNG writes.
// Internal to viz/: the public API is in heatmap.h, tokens.h and plot.h.
#pragma once
#include <string>

#include <cairo.h>

namespace copper::viz::detail {

// A path beside `path` (same folder, so that the rename is atomic) that no other process
// of this machine picks: "<path>.tmp-<pid>-<counter>".
std::string temp_path_for(const std::string& path);

// Check that the folder of `path` exists and a file can be created in it, by creating
// `tmp` (left empty). Throws copper::Error "[op] cannot write <path>: ... HINT: ...".
void check_writable(const std::string& op, const std::string& path, const std::string& tmp);

// Rename tmp over path; on failure remove tmp and throw.
void commit_file(const std::string& op, const std::string& tmp, const std::string& path);

// Write surface as PNG to path through a temporary file; throws on any cairo error, and
// leaves path untouched then.
void write_png(const std::string& op, cairo_surface_t* surface, const std::string& path);

struct Rgb {
  double r, g, b;  // each in [0, 1]
};

// Viridis (perceptually uniform, dark purple at 0 to yellow at 1), t clamped to [0, 1].
Rgb viridis(double t);

// White at 0 to dark orange-red at 1 (a light, single-hue scale under black text).
Rgb oranges(double t);

// s with what a font cannot show escaped: control bytes as \n, \t, \r or \xNN, bytes
// that are not UTF-8 as \xNN, C1 controls as \u{NN}. Valid printable UTF-8 passes through.
std::string printable(const std::string& s);

// At most max_chars code points of a printable string, the last one "…" when cut.
std::string truncate_chars(const std::string& s, size_t max_chars);

// The font every cairo picture uses (fonts-dejavu-core).
inline constexpr const char* kFontFamily = "DejaVu Sans";

}  // namespace copper::viz::detail
