// cope_interp.h — the interpolation step that CoPE's CPU kernels share (cope.cpp's rows and
// attention.cpp's fused CoPE attention): a counted position is fractional, and its logit is
// read from the integer table between its floor and its ceiling.
#pragma once
#include <cstdint>

namespace copper::cpu {

// The two table indices for a clamped position c >= 0: lo = floor c (a cast, since c >= 0)
// and hi = ceil c = lo + (c > lo), with the weight w = c - lo of the upper entry.
template <class F>
struct CopeInterp {
  int64_t lo, hi;
  F w;
  explicit CopeInterp(F c) : lo(int64_t(c)), hi(lo + (c > F(lo))), w(c - F(lo)) {}
  // The table z read at c: z[lo] + w (z[hi] - z[lo]).
  F at(const F* z) const { return z[lo] + w * (z[hi] - z[lo]); }
};

}  // namespace copper::cpu
