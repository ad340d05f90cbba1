// gradcheck.h — compare an op's analytic gradient with central finite differences.
//
// For f(inputs) -> y, gradcheck draws a fixed random tensor R of y's shape and checks
// the gradient of the scalar L = sum(y * R) with respect to every input that requires
// grad. The random weights make non-scalar outputs work, and they stop symmetric
// outputs from hiding a wrong gradient (softmax sums to 1, so plain sum(y) has gradient
// zero whatever the backward does). Numeric derivatives are (L(x+eps) - L(x-eps)) / 2eps,
// so every input that requires grad must be f64: in f32 the rounding error of L is
// larger than the difference being measured.
//
// Inputs may be non-contiguous leaves (transposed, sliced, flipped views made leaves
// with detach().requires_grad_()): elements are perturbed through their strides. They
// must not overlap in memory (no expanded leaves); expand inside f instead.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace copper {

struct GradcheckResult {
  bool ok = true;
  // Where the worst mismatch is (when !ok): input number, flat row-major element index,
  // that element's multi-index, and both derivatives.
  int64_t input = -1;
  int64_t element = -1;
  Shape index;
  double analytic = 0;
  double numeric = 0;
  int64_t num_failed = 0;   // elements out of tolerance, over all inputs
  int64_t num_checked = 0;  // elements compared, over all inputs
  std::string message;      // a readable summary, empty when ok

  explicit operator bool() const { return ok; }
};

// Checks |analytic - numeric| <= atol + rtol * |numeric| for every element of every input
// that requires grad. Leaves the analytic gradients in the inputs' .grad().
// Throws copper::Error if an input that requires grad (or the output) is not f64, or if
// f returns an undefined tensor.
GradcheckResult gradcheck(std::function<Tensor(const std::vector<Tensor>&)> f, std::vector<Tensor> inputs,
                          double eps = 1e-6, double atol = 1e-5, double rtol = 1e-4);

}  // namespace copper
