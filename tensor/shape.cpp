// shape.cpp — shape helpers.
#include "tensor/shape.h"

#include "tensor/error.h"

namespace copper {

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ",")); }

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = int64_t(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    COPPER_CHECK(da == db || da == 1 || db == 1, op,
                 "cannot broadcast shapes {} and {}: dimension {} is {} vs {}. HINT: sizes must match or one of them be 1",
                 shape_str(a), shape_str(b), i, da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t lo = -std::max<int64_t>(ndim, 1), hi = std::max<int64_t>(ndim, 1) - 1;
  COPPER_CHECK(dim >= lo && dim <= hi, op, "dimension {} out of range for a tensor with {} dims. HINT: use a dim in [{}, {}]",
               dim, ndim, lo, hi);
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

}  // namespace copper
