// backend_ops.h — which unary, binary and reduce op a Backend kernel applies.
//
// Kept apart from backend.h, and free of includes, so that the CUDA kernels (cuda/*.cu),
// which never include the Tensor headers, can name the ops too.
#pragma once

namespace copper {

enum class UnaryOp {
  neg, exp, log, sqrt, rsqrt, pow, square, sin, cos, tanh, sigmoid, relu,
  gelu_erf, gelu_tanh, silu, abs, clamp, floor, ceil,
};
enum class BinaryOp { add, sub, mul, div, maximum, minimum, eq, ne, lt, le, gt, ge };
enum class ReduceOp { sum, max, min, argmax };

}  // namespace copper
