// test_viz.cpp — the pictures of copper_viz: each is rendered into a temp folder, decoded
// back with cairo, and checked for its size, for not being blank, and for what it must show
// (mark colours on the marked rows, series colours); then the errors.
#include <gtest/gtest.h>

#include <cairo.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tensor/error.h"
#include "tests/test_util.h"
#include "viz/detail.h"
#include "viz/heatmap.h"
#include "viz/plot.h"
#include "viz/tokens.h"

namespace fs = std::filesystem;
using namespace copper;

namespace {

struct Rgb8 {
  int r, g, b;
};

// A decoded PNG, its pixels as 0xRRGGBB.
struct Png {
  int width = 0, height = 0;
  std::vector<uint32_t> px;
  Rgb8 at(int x, int y) const {
    uint32_t v = px[size_t(y) * size_t(width) + size_t(x)];
    return {int((v >> 16) & 0xFF), int((v >> 8) & 0xFF), int(v & 0xFF)};
  }
  // Standard deviation of the grey level over all pixels.
  double spread() const {
    double s = 0, s2 = 0;
    for (uint32_t v : px) {
      double g = (((v >> 16) & 0xFF) + ((v >> 8) & 0xFF) + (v & 0xFF)) / 3.0;
      s += g, s2 += g * g;
    }
    double n = double(px.size());
    return std::sqrt(std::max(0.0, s2 / n - (s / n) * (s / n)));
  }
  // Pixels within tol (per channel) of c.
  int count(Rgb8 c, int tol) const {
    int n = 0;
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) n += near(at(x, y), c, tol);
    return n;
  }
  static bool near(Rgb8 a, Rgb8 b, int tol) {
    return std::abs(a.r - b.r) <= tol && std::abs(a.g - b.g) <= tol && std::abs(a.b - b.b) <= tol;
  }
};

Png decode(const fs::path& p) {
  std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> s(
      cairo_image_surface_create_from_png(p.c_str()), &cairo_surface_destroy);
  EXPECT_EQ(cairo_surface_status(s.get()), CAIRO_STATUS_SUCCESS) << p;
  Png out;
  if (cairo_surface_status(s.get()) != CAIRO_STATUS_SUCCESS) return out;
  out.width = cairo_image_surface_get_width(s.get());
  out.height = cairo_image_surface_get_height(s.get());
  const unsigned char* data = cairo_image_surface_get_data(s.get());
  int stride = cairo_image_surface_get_stride(s.get());
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x)
      out.px.push_back(reinterpret_cast<const uint32_t*>(data + y * stride)[x] & 0xFFFFFF);
  return out;
}

// Causal attention-like rows: each query spreads over the keys before it, most on itself.
viz::HeatmapSpec causal_spec(int64_t n) {
  viz::HeatmapSpec s;
  s.rows = s.cols = n;
  s.values.assign(size_t(n * n), 0.0f);
  for (int64_t q = 0; q < n; ++q) {
    float total = 0;
    for (int64_t k = 0; k <= q; ++k) total += s.values[size_t(q * n + k)] = std::exp(-0.3f * float(q - k));
    for (int64_t k = 0; k <= q; ++k) s.values[size_t(q * n + k)] /= total;
  }
  s.title = "L0H1 attention";
  return s;
}

// No file but the expected ones in the folder (no temporary files left behind).
size_t files_in(const fs::path& d) {
  size_t n = 0;
  for (auto& e : fs::directory_iterator(d)) n += e.is_regular_file();
  return n;
}

constexpr Rgb8 kParagraph{232, 41, 41}, kSection{255, 61, 240};

}  // namespace

TEST(Viz, HeatmapSizeMarksAndLegend) {
  auto dir = testing_util::fresh_temp_dir("viz_heatmap");
  auto s = causal_spec(40);
  s.marks = {{10, "paragraph", ""}, {25, "section", " = = History = = "}};
  auto path = dir / "attn.png";
  viz::ImageSize size = viz::heatmap_png(path.string(), s);
  viz::ImageSize want = viz::heatmap_size(s);
  EXPECT_EQ(size.width, want.width);
  EXPECT_EQ(size.height, want.height);
  Png png = decode(path);
  ASSERT_EQ(png.width, size.width);
  ASSERT_EQ(png.height, size.height);
  EXPECT_LE(png.width, 1600);
  EXPECT_GT(png.spread(), 10.0);

  // The documented layout: 40 cells of clamp(1200 / 40) = 30 px from the top-left margin.
  const int cell = std::clamp(viz::kMaxGridPx / 40, viz::kMinCellPx, viz::kMaxCellPx);
  EXPECT_EQ(png.width, viz::kMarginLeftPx + std::max(40 * cell, viz::kMinGridWidthPx) + viz::kMarginRightPx);
  auto row_y = [&](int64_t i) { return viz::kMarginTopPx + int((double(i) + 0.5) * cell) - 1; };
  auto col_x = [&](int64_t i) { return viz::kMarginLeftPx + int((double(i) + 0.5) * cell) - 1; };
  const int x_free = col_x(37);  // a column with no mark and no label beside it
  EXPECT_TRUE(Png::near(png.at(x_free, row_y(10)), kParagraph, 12)) << "paragraph row";
  EXPECT_TRUE(Png::near(png.at(x_free, row_y(25)), kSection, 12)) << "section row";
  EXPECT_TRUE(Png::near(png.at(col_x(10), row_y(33)), kParagraph, 12)) << "paragraph column";
  EXPECT_TRUE(Png::near(png.at(col_x(25), row_y(33)), kSection, 12)) << "section column";
  EXPECT_FALSE(Png::near(png.at(x_free, row_y(18)), kParagraph, 40)) << "an unmarked row";
  // The ticks outside the grid (right edge) carry the colours as well.
  const int right_tick_x = viz::kMarginLeftPx + 40 * cell + 6;
  EXPECT_TRUE(Png::near(png.at(right_tick_x, row_y(10)), kParagraph, 12));
  EXPECT_TRUE(Png::near(png.at(right_tick_x, row_y(25)), kSection, 12));
  EXPECT_EQ(files_in(dir), 1u);
}

TEST(Viz, HeatmapTickLabelsAndNaN) {
  auto dir = testing_util::fresh_temp_dir("viz_heatmap_labels");
  auto s = causal_spec(12);
  for (int i = 0; i < 12; ++i) {
    s.row_labels.push_back(i == 3 ? "\n" : "tok" + std::to_string(i));
    s.col_labels.push_back(i == 5 ? std::string("\x01x\xff", 3) : "key" + std::to_string(i));
  }
  s.values[5] = NAN;
  auto path = dir / "labels.png";
  viz::ImageSize size = viz::heatmap_png(path.string(), s);
  Png png = decode(path);
  EXPECT_EQ(png.width, size.width);
  EXPECT_EQ(png.height, size.height);
  EXPECT_EQ(size.height, viz::kMarginTopPx + std::max(12 * viz::kMaxCellPx, viz::kMinGridHeightPx) +
                             viz::kMarginBottomPx + viz::kTickLabelPx);
  EXPECT_GT(png.spread(), 10.0);
}

TEST(Viz, HeatmapMaxPoolsLargeMatrices) {
  auto dir = testing_util::fresh_temp_dir("viz_heatmap_pool");
  viz::HeatmapSpec s;
  s.rows = 2000, s.cols = 1500;
  s.values.assign(size_t(s.rows * s.cols), 0.0f);
  s.values[size_t(1001 * s.cols + 3)] = 1.0f;  // one hot cell must survive pooling
  s.marks = {{1800, "section", "= = End = ="}};
  auto path = dir / "big.png";
  viz::ImageSize size = viz::heatmap_png(path.string(), s);
  Png png = decode(path);
  EXPECT_EQ(png.width, size.width);
  EXPECT_EQ(png.height, size.height);
  EXPECT_LE(png.width, 1600);
  EXPECT_LE(png.height, 1600);
  // Pooled by ceil(2000 / 600) = 4 to 500 x 375 cells of 1200 / 500 = 2 px.
  EXPECT_EQ(png.width, viz::kMarginLeftPx + 375 * 2 + viz::kMarginRightPx);
  EXPECT_EQ(png.height, viz::kMarginTopPx + 500 * 2 + viz::kMarginBottomPx);
  // The hot cell: pooled row 250, column 0, drawn in viridis' yellow.
  auto c = png.at(viz::kMarginLeftPx + 1, viz::kMarginTopPx + 250 * 2 + 1);
  EXPECT_TRUE(Png::near(c, {253, 231, 37}, 10)) << c.r << "," << c.g << "," << c.b;
}

TEST(Viz, HeatmapRejectsBadSpecs) {
  auto dir = testing_util::fresh_temp_dir("viz_heatmap_bad");
  auto s = causal_spec(4);
  s.values.pop_back();
  EXPECT_THROW(viz::heatmap_png((dir / "a.png").string(), s), Error);
  s = causal_spec(4);
  s.marks = {{1, "chapter", ""}};
  try {
    viz::heatmap_png((dir / "a.png").string(), s);
    FAIL() << "an unknown mark kind was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[heatmap]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
  }
  s.marks = {{9, "paragraph", ""}};
  EXPECT_THROW(viz::heatmap_png((dir / "a.png").string(), s), Error);
  EXPECT_EQ(files_in(dir), 0u);
}

TEST(Viz, TokenGates) {
  auto dir = testing_util::fresh_temp_dir("viz_tokens");
  std::vector<std::string> tokens;
  std::vector<float> values;
  for (int i = 0; i < 120; ++i) {
    tokens.push_back(i % 17 == 16 ? "\n" : i % 5 == 0 ? " the" : i == 7 ? std::string("\t\x02") : " word");
    values.push_back(i % 9 == 0 ? 1.0f : float(i % 9) / 9.0f);
  }
  values[4] = NAN;
  auto path = dir / "gates.png";
  viz::ImageSize size = viz::token_gates_png(path.string(), tokens, values, "L0H2 gates, last query");
  Png png = decode(path);
  EXPECT_EQ(png.width, viz::kTokenImageWidthPx);
  EXPECT_EQ(png.width, size.width);
  EXPECT_EQ(png.height, size.height);
  int lines = (png.height - viz::kTokenTopPx - viz::kTokenBottomPx) / viz::kTokenLineHeightPx;
  EXPECT_EQ(viz::kTokenTopPx + lines * viz::kTokenLineHeightPx + viz::kTokenBottomPx, png.height);
  EXPECT_GE(lines, 7);  // 7 newlines
  EXPECT_GT(png.spread(), 10.0);
  EXPECT_GT(png.count({127, 39, 4}, 6), 100) << "no box in the colour of gate value 1";
  EXPECT_EQ(files_in(dir), 1u);
}

TEST(Viz, TokenGatesKeepsTheEndOfLongTexts) {
  auto dir = testing_util::fresh_temp_dir("viz_tokens_long");
  std::vector<std::string> tokens(400, "line\n");
  std::vector<float> values(400, 0.5f);
  viz::ImageSize size = viz::token_gates_png((dir / "long.png").string(), tokens, values, "long");
  EXPECT_EQ(size.height, viz::kTokenTopPx + viz::kTokenMaxLines * viz::kTokenLineHeightPx + viz::kTokenBottomPx);
  EXPECT_THROW(viz::token_gates_png((dir / "bad.png").string(), tokens, {0.5f}, "bad"), Error);
}

TEST(Viz, LinePlotOfTwoSeries) {
  auto dir = testing_util::fresh_temp_dir("viz_plot");
  viz::Series train{"run-a train", {}, {}}, val{"run-a val", {}, {}};
  for (int i = 0; i <= 100; ++i) {
    train.x.push_back(i * 1000.0);
    train.y.push_back(3.0 * std::exp(-i / 30.0) + 0.5);
  }
  for (int i = 0; i <= 100; i += 20) {
    val.x.push_back(i * 1000.0);
    val.y.push_back(3.2 * std::exp(-i / 30.0) + 0.6);
  }
  val.color = 1;
  val.dashed = true;
  for (bool log_y : {false, true}) {
    auto path = dir / (log_y ? "log.png" : "lin.png");
    viz::line_plot_png(path.string(), {train, val}, "tokens seen", "loss", "two # series", log_y);
    Png png = decode(path);
    EXPECT_EQ(png.width, viz::kPlotWidthPx);
    EXPECT_EQ(png.height, viz::kPlotHeightPx);
    EXPECT_GT(png.spread(), 5.0);
    EXPECT_GT(png.count({31, 119, 180}, 30), 50) << "first series colour";
    EXPECT_GT(png.count({255, 127, 14}, 30), 50) << "second series colour";
  }
  EXPECT_EQ(files_in(dir), 2u);
}

TEST(Viz, LinePlotLegendOfLongNamesFitsThePage) {
  auto dir = testing_util::fresh_temp_dir("viz_plot_legend");
  std::vector<viz::Series> runs;
  for (const char* name : {"abs-seed0 train", "cope+rel-seed0 train", "cope+rope-seed12 valid"}) {
    viz::Series s{name, {}, {}};
    for (int i = 0; i <= 10; ++i) s.x.push_back(i), s.y.push_back(5.0 - 0.1 * i + 0.01 * double(runs.size()));
    runs.push_back(s);
  }
  auto path = dir / "legend.png";
  viz::line_plot_png(path.string(), runs, "tokens seen", "loss", "legend");
  Png png = decode(path);
  ASSERT_EQ(png.width, viz::kPlotWidthPx);
  // The legend's frame ends before the page does: the last columns are background on every row.
  for (int x = png.width - 4; x < png.width; ++x)
    for (int y = 0; y < png.height; ++y)
      ASSERT_TRUE(Png::near(png.at(x, y), {255, 255, 255}, 8)) << "column " << x << " row " << y;
}

TEST(Viz, LinePlotErrorsLeaveNoFile) {
  auto dir = testing_util::fresh_temp_dir("viz_plot_err");
  viz::Series s{"s", {0, 1, 2}, {1, 2, 3}};
  try {
    viz::line_plot_png((dir / "no-such-folder" / "p.png").string(), {s}, "x", "y", "t");
    FAIL() << "an unwritable path was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[plot] cannot write"), std::string::npos) << e.what();
  }
  EXPECT_THROW(viz::heatmap_png((dir / "no-such-folder" / "h.png").string(), causal_spec(3)), Error);
  EXPECT_THROW(viz::line_plot_png((dir / "p.png").string(), {}, "x", "y", "t"), Error);
  viz::Series bad{"bad", {0, 1}, {1}};
  EXPECT_THROW(viz::line_plot_png((dir / "p.png").string(), {bad}, "x", "y", "t"), Error);
  viz::Series negative{"neg", {0, 1}, {-1, 0}};
  EXPECT_THROW(viz::line_plot_png((dir / "p.png").string(), {negative}, "x", "y", "t", true), Error);

  // A failed plot leaves an existing picture as it was.
  auto keep = dir / "keep.png";
  { std::ofstream(keep) << "old"; }
  EXPECT_THROW(viz::line_plot_png(keep.string(), {bad}, "x", "y", "t"), Error);
  std::ifstream in(keep);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "old");
  EXPECT_EQ(files_in(dir), 1u);
}

TEST(Viz, UnprintableBytesAreEscaped) {
  using viz::detail::printable;
  EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x96\x81x"), "caf\xc3\xa9 \xe2\x96\x81x");  // UTF-8 passes through
  EXPECT_EQ(printable("a\tb\r\n"), "a\\tb\\r\\n");
  EXPECT_EQ(printable(std::string("\x01\x7f", 2)), "\\x01\\x7F");
  EXPECT_EQ(printable("\xff\xc3"), "\\xFF\\xC3");  // not UTF-8, and a cut sequence
  EXPECT_EQ(printable("\xc2\x85"), "\\u{85}");     // a C1 control
  EXPECT_EQ(viz::detail::truncate_chars("abcdef", 4), "abc\xe2\x80\xa6");
  EXPECT_EQ(viz::detail::truncate_chars("abcd", 4), "abcd");
}
