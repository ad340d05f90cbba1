// plot.h — line plots as PNG with PLplot (its pngcairo device; no display needed).
//
//   std::vector<viz::Series> s = {{"cope train", steps, loss}, {"cope val", vsteps, vloss}};
//   s[1].color = 0; s[1].dashed = true;                       // same colour, dashed with markers
//   viz::line_plot_png("curves.png", s, "step", "loss", "flipflop", /*log_y=*/true);
//
// The picture is kPlotWidthPx x kPlotHeightPx with the legend to the right of the axes.
// Non-finite points (and, with log_y, points with y <= 0) are skipped and break the line.
#pragma once
#include <string>
#include <vector>

namespace copper::viz {

inline constexpr int kPlotWidthPx = 1000;
inline constexpr int kPlotHeightPx = 600;

struct Series {
  std::string name;          // legend text
  std::vector<double> x, y;  // same length
  int color = -1;            // index into a 10-colour palette; -1: the series' position
  bool dashed = false;       // dashed line with a marker at each point (e.g. validation)
};

// Throws copper::Error "[plot] ..." when there is nothing to draw (no series, x/y lengths
// differ, no drawable point) or path cannot be written; the file at path is then left as it
// was (PLplot writes a temporary file beside it, renamed over path when complete).
void line_plot_png(const std::string& path, const std::vector<Series>& series, const std::string& xlabel,
                   const std::string& ylabel, const std::string& title, bool log_y = false);

}  // namespace copper::viz
