// shape.h — shapes, strides and the small helpers every op uses to check them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace copper {

using Shape = std::vector<int64_t>;

// "[2,3]"
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);
// Row-major strides for a shape: the last dimension moves fastest.
Shape contiguous_strides(const Shape& s);
// The numpy/PyTorch broadcast of two shapes; throws "[op] cannot broadcast [..] and [..]".
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Turn a possibly negative dim into [0, ndim); throws naming the op.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace copper
