// tokens.h — text as a PNG with each token's background shaded by a value in [0, 1] (cairo),
// e.g. the gate value of one CoPE head for the last query over the text it sees.
//
//   viz::token_gates_png("gates.png", {"The", " cat", "\n", "sat"}, {0.1, 0.9, 1.0, 0.3},
//                        "L1H2 gates, last query");
//
// Tokens are laid out left to right in wrapped lines of a fixed width; a "\n" inside a token
// ends the line (drawn as "↵" so its value stays visible); unprintable bytes are shown
// escaped (\t, \x01, ...). Values are clamped to [0, 1]; NaN is grey. A colour scale is drawn
// under the text.
//
// Size: width kTokenImageWidthPx; height = kTokenTopPx + lines * kTokenLineHeightPx +
// kTokenBottomPx, lines at most kTokenMaxLines: a longer text keeps its last kTokenMaxLines
// lines (the end, where the query is) and a note says how many tokens were left out.
#pragma once
#include <string>
#include <vector>

#include "viz/heatmap.h"  // ImageSize

namespace copper::viz {

inline constexpr int kTokenImageWidthPx = 1000;
inline constexpr int kTokenTopPx = 50;
inline constexpr int kTokenLineHeightPx = 22;
inline constexpr int kTokenBottomPx = 80;
inline constexpr int kTokenMaxLines = 60;

// Throws copper::Error "[tokens] ..." when values and tokens differ in count, there are no
// tokens, or path cannot be written (the file at path is then left as it was).
ImageSize token_gates_png(const std::string& path, const std::vector<std::string>& tokens,
                          const std::vector<float>& values, const std::string& title);

}  // namespace copper::viz
