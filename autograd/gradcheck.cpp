// gradcheck.cpp — finite-difference gradient checks (see gradcheck.h).
#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace copper {

namespace {

// The multi-index of flat row-major element e of a tensor of shape s.
Shape unravel(int64_t e, const Shape& s) {
  Shape idx(s.size());
  for (int64_t d = int64_t(s.size()) - 1; d >= 0; --d) {
    idx[d] = s[d] == 0 ? 0 : e % s[d];
    e = s[d] == 0 ? 0 : e / s[d];
  }
  return idx;
}

// Pointer to element `idx` of an f64 view, following its strides (which may be negative).
double* element_ptr(const Tensor& t, const Shape& idx) {
  int64_t off = 0;
  for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * t.strides()[d];
  return t.data<double>() + off;
}

// L = sum(y * R), in double.
double weighted_sum(const Tensor& y, const std::vector<double>& r) {
  std::vector<double> v = y.to_vector<double>();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * r[i];
  return s;
}

}  // namespace

GradcheckResult gradcheck(std::function<Tensor(const std::vector<Tensor>&)> f, std::vector<Tensor> inputs,
                          double eps, double atol, double rtol) {
  const char* op = "gradcheck";
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    COPPER_CHECK(x.dtype() == DType::f64, op, "input {} is {}; finite differences need f64. HINT: make it with DType::f64",
                 i, x.repr_shape());
    COPPER_CHECK(x.is_leaf(), op, "input {} {} is not a leaf. HINT: pass x.detach().requires_grad_()", i,
                 x.repr_shape());
  }

  // Analytic: one backward of L = sum(y * R).
  for (Tensor& x : inputs)
    if (x.defined() && x.requires_grad()) x.zero_grad();
  Tensor y = f(inputs);
  COPPER_CHECK(y.defined(), op, "the function returned an undefined tensor");
  COPPER_CHECK(y.dtype() == DType::f64, op, "the output is {}; it must be f64", y.repr_shape());
  Generator gen(0x9c4ecc);
  Tensor r = randn(y.shape(), DType::f64, &gen);
  const std::vector<double> rv = r.to_vector<double>();
  if (y.requires_grad()) sum(mul(y, r)).backward();

  // Numeric: perturb one element at a time, without recording a graph.
  NoGradGuard no_grad;
  GradcheckResult res;
  double worst_excess = -1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    const std::vector<double> analytic =
        x.grad().defined() ? x.grad().to_vector<double>() : std::vector<double>(size_t(x.numel()), 0.0);
    for (int64_t e = 0; e < x.numel(); ++e) {
      const Shape idx = unravel(e, x.shape());
      double* p = element_ptr(x, idx);
      const double orig = *p;
      *p = orig + eps;
      const double lp = weighted_sum(f(inputs), rv);
      *p = orig - eps;
      const double lm = weighted_sum(f(inputs), rv);
      *p = orig;
      const double numeric = (lp - lm) / (2 * eps);
      const double a = analytic[size_t(e)];
      const double excess = std::abs(a - numeric) - (atol + rtol * std::abs(numeric));
      ++res.num_checked;
      if (excess > 0 || std::isnan(a) != std::isnan(numeric)) {
        ++res.num_failed;
        if (excess > worst_excess || res.ok) {
          res.ok = false;
          worst_excess = excess;
          res.input = int64_t(i);
          res.element = e;
          res.index = idx;
          res.analytic = a;
          res.numeric = numeric;
        }
      }
    }
  }
  if (!res.ok)
    res.message = fmt::format(
        "gradient mismatch in {} of {} elements; worst: input {} ({}) element {} at {}: analytic {:.9g} vs numeric "
        "{:.9g} (|diff| {:.3g}, allowed {:.3g})",
        res.num_failed, res.num_checked, res.input, inputs[size_t(res.input)].repr_shape(), res.element,
        shape_str(res.index), res.analytic, res.numeric, std::abs(res.analytic - res.numeric),
        atol + rtol * std::abs(res.numeric));
  return res;
}

}  // namespace copper
