// heatmap.h — a matrix as a PNG heat map (cairo), e.g. attention probabilities, queries x keys,
// with paragraph breaks and section headings marked on both axes as in the CoPE paper's
// attention figures.
//
//   viz::HeatmapSpec s;
//   s.rows = T; s.cols = T; s.values = probs;            // row-major, rows x cols
//   s.title = "L0H3 attention";                          // axes default to "key" (x), "query" (y)
//   s.marks = {{120, "paragraph", ""}, {300, "section", "= = History = ="}};
//   viz::ImageSize size = viz::heatmap_png("attn.png", s);
//
// Layout and size (deterministic from the spec; heatmap_size() returns it without drawing):
//   n = max(rows, cols). When n > kMaxCells the matrix is max-pooled by f = ceil(n / kMaxCells)
//   on both axes (a note under the picture says so) and n becomes ceil(n / f).
//   cell = clamp(kMaxGridPx / n, kMinCellPx, kMaxCellPx) pixels; grid = (cols*cell) x (rows*cell).
//   width  = kMarginLeftPx + max(grid width, kMinGridWidthPx) + kMarginRightPx      (<= 1460)
//   height = kMarginTopPx + max(grid height, kMinGridHeightPx) + kMarginBottomPx
//            (+ kTickLabelPx when column tick labels are given)                  (<= 1440)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace copper::viz {

struct ImageSize {
  int width = 0, height = 0;
};

// A position marked on both axes: a line across the grid at row `index` and at column
// `index` (where those exist) and a tick outside it. kind is "paragraph" (a paragraph break)
// or "section" (a section heading such as " = = History = = "); the two kinds have their own
// colours and a legend entry. A non-empty label is written beside the row line.
struct HeatmapMark {
  int64_t index = 0;
  std::string kind;
  std::string label;
};

struct HeatmapSpec {
  int64_t rows = 0, cols = 0;
  std::vector<float> values;  // rows*cols, row-major; NaN cells are grey
  std::string title;
  std::string xlabel = "key";
  std::string ylabel = "query";
  std::vector<std::string> row_labels;  // optional: empty or one per row (e.g. query tokens)
  std::vector<std::string> col_labels;  // optional: empty or one per column (e.g. key tokens)
  std::vector<HeatmapMark> marks;
  // The value range of the colour scale; when lo >= hi it is the data's finite min..max.
  float lo = 0, hi = 0;
};

inline constexpr int kMaxCells = 600;    // rows/cols drawn before max-pooling
inline constexpr int kMaxGridPx = 1200;  // the grid's longer side at most
inline constexpr int kMinGridWidthPx = 360;   // room kept for title, legend and note
inline constexpr int kMinGridHeightPx = 180;  // room kept for the colour bar
inline constexpr int kMinCellPx = 2;
inline constexpr int kMaxCellPx = 32;
inline constexpr int kMarginLeftPx = 130;
inline constexpr int kMarginRightPx = 130;  // colour bar and its labels
inline constexpr int kMarginTopPx = 50;     // title
inline constexpr int kMarginBottomPx = 110; // x ticks, x label, legend, note
inline constexpr int kTickLabelPx = 80;     // extra room for rotated column labels

// The size heatmap_png will give this spec (checks the spec like heatmap_png).
ImageSize heatmap_size(const HeatmapSpec& spec);

// Draw the heat map and write it to `path` as PNG (through a temporary file: on failure the
// file at `path` is left as it was). Throws copper::Error "[heatmap] ..." on a bad spec
// (values.size() != rows*cols, label counts, unknown mark kind) or an unwritable path.
ImageSize heatmap_png(const std::string& path, const HeatmapSpec& spec);

}  // namespace copper::viz
