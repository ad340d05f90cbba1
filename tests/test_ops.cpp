// test_ops.cpp — the op harness: every op of tensor/ops.h (and every view of tensor.h)
// enrolls here, once, as one or more rows of the table in all_cases().
//
// A row says: the op's name, the input shapes, a lambda that applies the op, a naive
// reference written as plain loops in double (where practical), whether the op is
// differentiable, and what the inputs must satisfy (positive for log/sqrt, away from
// kinks for relu/abs/clamp). For every row the harness
//   1. checks the forward value against the reference, in f64 and in f32;
//   2. gradchecks the op in f64 (autograd/gradcheck.h);
//   3. repeats 1 and 2 with the inputs laid out differently: transposed, sliced with a
//      step, flipped (negative strides), and expanded from a size-1 dim (stride 0), so
//      that every kernel meets non-contiguous and broadcast inputs.
// The coverage test at the end reads tensor/ops.h and tensor/tensor.h and fails naming
// any op that has no row here and is not in the commented list of exceptions.
// Small hand-computed examples per op family follow the harness.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <numbers>
#include <regex>
#include <set>
#include <tuple>

#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "tensor/autocast.h"
#include "tensor/backend.h"
#include "tensor/ops.h"
#include "tensor/philox.h"
#include "tensor/random.h"

using namespace copper;

namespace {

using Inputs = std::vector<Tensor>;
using Fn = std::function<Tensor(const Inputs&)>;

// ============================ naive references ============================
// A reference reads its inputs as plain row-major double arrays and loops.

struct Arr {
  Shape shape;
  std::vector<double> v;
};
Arr arr(const Tensor& t) { return {t.shape(), t.to_vector<double>()}; }
Tensor tensor_of(const Arr& a) { return from_vector(a.v, {int64_t(a.v.size())}).reshape(a.shape); }

// RoPE's tables for positions 0..n-1 with p pairs: angle(j, m) = j · 10000^(-m/p).
std::pair<Tensor, Tensor> rope_like_tables(int64_t n, int64_t p, DType t) {
  std::vector<double> a(size_t(n * p));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t m = 0; m < p; ++m) a[size_t(j * p + m)] = double(j) * std::pow(10000.0, -double(m) / double(p));
  const Tensor angles = from_vector(a, {n, p});
  return {cos(angles).to(t), sin(angles).to(t)};
}

// x [.., t, 2p] with its pairs turned in double: row r by table row first_row + r (sign -1:
// by minus the angles). The reference for rotate_pairs and for q and k in the rotary attention.
Tensor turned_pairs(const Tensor& x, const Tensor& cs, const Tensor& sn, int64_t first_row, double sign = 1) {
  Arr a = arr(x), c = arr(cs), s = arr(sn);
  const size_t Dh = size_t(a.shape.back()), T = size_t(a.shape[a.shape.size() - 2]), p = Dh / 2;
  for (size_t e = 0; e < a.v.size(); e += 2) {
    const size_t row = size_t(first_row) + (e / Dh) % T, m = (e % Dh) / 2;
    const double cv = c.v[row * p + m], sv = sign * s.v[row * p + m], x0 = a.v[e], x1 = a.v[e + 1];
    a.v[e] = x0 * cv - x1 * sv;
    a.v[e + 1] = x0 * sv + x1 * cv;
  }
  return tensor_of(a);
}

Shape unravel(int64_t e, const Shape& s) {
  Shape idx(s.size());
  for (int64_t d = int64_t(s.size()) - 1; d >= 0; --d) {
    idx[d] = e % s[d];
    e /= s[d];
  }
  return idx;
}
int64_t ravel(const Shape& idx, const Shape& s) {
  int64_t e = 0;
  for (size_t d = 0; d < s.size(); ++d) e = e * s[d] + idx[d];
  return e;
}
// Flat index into an input of shape s of the broadcast output element `idx`.
int64_t broadcast_index(const Shape& idx, const Shape& s) {
  const size_t lead = idx.size() - s.size();
  int64_t e = 0;
  for (size_t d = 0; d < s.size(); ++d) e = e * s[d] + (s[d] == 1 ? 0 : idx[d + lead]);
  return e;
}

// out = f(x0, x1, ...) elementwise, inputs broadcast together (numpy rules).
Tensor ref_map(const Inputs& xs, const std::function<double(const std::vector<double>&)>& f) {
  std::vector<Arr> a;
  Shape out;
  for (const Tensor& x : xs) {
    a.push_back(arr(x));
    out = broadcast_shapes(out, x.shape(), "ref");
  }
  Arr r{out, std::vector<double>(size_t(shape_numel(out)))};
  std::vector<double> vals(a.size());
  for (int64_t e = 0; e < shape_numel(out); ++e) {
    Shape idx = unravel(e, out);
    for (size_t k = 0; k < a.size(); ++k) vals[k] = a[k].v[size_t(broadcast_index(idx, a[k].shape))];
    r.v[size_t(e)] = f(vals);
  }
  return tensor_of(r);
}
Fn unary_ref(double (*f)(double)) {
  return [f](const Inputs& x) { return ref_map(x, [f](const std::vector<double>& v) { return f(v[0]); }); };
}
template <class F>
Fn map_ref(F f) {
  return [f](const Inputs& x) { return ref_map(x, f); };
}

// Reduce the given dims (all if empty) with `combine`, starting from the first element met.
Tensor ref_reduce(const Tensor& x, Shape dims, bool keepdim,
                  const std::function<double(double, double)>& combine, double scale = 1) {
  Arr a = arr(x);
  const int64_t nd = int64_t(a.shape.size());
  if (dims.empty())
    for (int64_t d = 0; d < nd; ++d) dims.push_back(d);
  for (int64_t& d : dims) d = d < 0 ? d + nd : d;
  Shape kept = a.shape;
  for (int64_t d : dims) kept[d] = 1;
  std::vector<double> acc(size_t(shape_numel(kept)));
  std::vector<bool> seen(acc.size(), false);
  for (int64_t e = 0; e < shape_numel(a.shape); ++e) {
    Shape idx = unravel(e, a.shape);
    for (int64_t d : dims) idx[d] = 0;
    size_t o = size_t(ravel(idx, kept));
    acc[o] = seen[o] ? combine(acc[o], a.v[size_t(e)]) : a.v[size_t(e)];
    seen[o] = true;
  }
  for (double& v : acc) v *= scale;
  Shape out;
  for (int64_t d = 0; d < nd; ++d)
    if (std::find(dims.begin(), dims.end(), d) == dims.end()) out.push_back(a.shape[d]);
    else if (keepdim) out.push_back(1);
  return tensor_of({out, acc});
}

// Apply `f` to every line of x along dim d (softmax, cumsum, norms).
Tensor ref_along(const Tensor& x, int64_t d, const std::function<std::vector<double>(const std::vector<double>&)>& f) {
  Arr a = arr(x);
  d = d < 0 ? d + int64_t(a.shape.size()) : d;
  Arr r{a.shape, a.v};
  Shape lines = a.shape;
  lines[d] = 1;
  for (int64_t e = 0; e < shape_numel(lines); ++e) {
    Shape idx = unravel(e, lines);
    std::vector<double> line;
    for (int64_t i = 0; i < a.shape[d]; ++i) {
      idx[d] = i;
      line.push_back(a.v[size_t(ravel(idx, a.shape))]);
    }
    std::vector<double> out = f(line);
    for (int64_t i = 0; i < a.shape[d]; ++i) {
      idx[d] = i;
      r.v[size_t(ravel(idx, a.shape))] = out[size_t(i)];
    }
  }
  return tensor_of(r);
}

std::vector<double> softmax_line(const std::vector<double>& v) {
  double mx = *std::max_element(v.begin(), v.end()), s = 0;
  std::vector<double> o;
  for (double x : v) s += std::exp(x - mx);
  for (double x : v) o.push_back(std::exp(x - mx) / s);
  return o;
}
// q_r·k_j · scale for the keys query row r of batch·head b sees (j <= r + Tk - Tq), from
// q [.., Tq, Dh] and k [.., Tk, Dh] flattened over the leading dims.
std::vector<double> visible_scores(const Arr& q, const Arr& k, int64_t b, int64_t r, double scale) {
  const int64_t Dh = q.shape.back(), Tq = q.shape[q.shape.size() - 2], Tk = k.shape[k.shape.size() - 2];
  std::vector<double> s(static_cast<size_t>(r + (Tk - Tq) + 1));
  for (size_t j = 0; j < s.size(); ++j) {
    double d = 0;
    for (int64_t c = 0; c < Dh; ++c) d += q.v[size_t((b * Tq + r) * Dh + c)] * k.v[size_t((b * Tk + int64_t(j)) * Dh + c)];
    s[j] = d * scale;
  }
  return s;
}

std::vector<double> log_softmax_line(const std::vector<double>& v) {
  double mx = *std::max_element(v.begin(), v.end()), s = 0;
  std::vector<double> o;
  for (double x : v) s += std::exp(x - mx);
  for (double x : v) o.push_back(x - mx - std::log(s));
  return o;
}

// Plain triple loop with numpy's rules: 1-d operands gain a dim, batch dims broadcast.
Tensor ref_matmul(const Tensor& a0, const Tensor& b0) {
  Arr a = arr(a0), b = arr(b0);
  const bool a1 = a.shape.size() == 1, b1 = b.shape.size() == 1;
  if (a1) a.shape.insert(a.shape.begin(), 1);
  if (b1) b.shape.push_back(1);
  const int64_t n = a.shape[a.shape.size() - 2], k = a.shape.back(), m = b.shape.back();
  Shape ba(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "ref");
  Shape out = batch;
  if (!a1) out.push_back(n);
  if (!b1) out.push_back(m);
  std::vector<double> r;
  for (int64_t e = 0; e < shape_numel(batch); ++e) {
    Shape idx = unravel(e, batch);
    const int64_t ia = broadcast_index(idx, ba) * n * k, ib = broadcast_index(idx, bb) * k * m;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < m; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += a.v[size_t(ia + i * k + p)] * b.v[size_t(ib + p * m + j)];
        r.push_back(s);
      }
  }
  return tensor_of({out, r});
}

// ============================ the table ============================

enum class Domain {
  any,       // standard normal
  positive,  // in [0.5, 3): for log, sqrt, rsqrt, pow with a fractional exponent, div
};

struct OpCase {
  std::string op;       // the name in ops.h / tensor.h; the coverage test matches it
  std::string variant;  // what this row exercises
  std::vector<Shape> shapes;
  Fn fn;
  Fn ref;  // naive reference; empty where the op is checked by the hand-computed tests below
  bool differentiable = true;
  Domain domain = Domain::any;
  std::vector<double> kinks;  // where the derivative jumps: inputs are kept 0.05 away
  bool layouts = true;        // also run on non-contiguous and expanded inputs
  bool f32 = true;            // also check the f32 forward against the reference
  double eps = 1e-6, atol = 1e-5, rtol = 1e-4;

  // chained setters keep the table readable
  OpCase& with_ref(Fn r) { ref = std::move(r); return *this; }
  OpCase& no_grad() { differentiable = false; return *this; }
  OpCase& positive() { domain = Domain::positive; return *this; }
  OpCase& avoid(std::vector<double> k) { kinks = std::move(k); return *this; }
  OpCase& contiguous_only() { layouts = false; return *this; }
  OpCase& no_f32() { f32 = false; return *this; }
  OpCase& tol(double e, double a) { eps = e; atol = a; return *this; }
};

OpCase C(std::string op, std::string variant, std::vector<Shape> shapes, Fn fn) {
  OpCase c;
  c.op = std::move(op);
  c.variant = std::move(variant);
  c.shapes = std::move(shapes);
  c.fn = std::move(fn);
  return c;
}

Tensor i64s(std::vector<int64_t> v, Shape s = {}) { return from_vector(v, s); }
Tensor f64s(std::vector<double> v, Shape s = {}) { return from_vector(v, s); }

std::vector<OpCase> all_cases() {
  std::vector<OpCase> cs;
  auto add_case = [&](OpCase c) { cs.push_back(std::move(c)); };

  // ---- elementwise binary, with broadcasting ----
  struct Bin {
    const char* name;
    Tensor (*op)(const Tensor&, const Tensor&);
    double (*ref)(double, double);
    bool positive;
  };
  const Bin bins[] = {
      {"add", add, [](double a, double b) { return a + b; }, false},
      {"sub", sub, [](double a, double b) { return a - b; }, false},
      {"mul", mul, [](double a, double b) { return a * b; }, false},
      {"div", div, [](double a, double b) { return a / b; }, true},
      {"maximum", maximum, [](double a, double b) { return std::max(a, b); }, false},
      {"minimum", minimum, [](double a, double b) { return std::min(a, b); }, false},
  };
  const std::vector<std::pair<std::string, std::vector<Shape>>> bshapes = {
      {"same shape", {{3, 4}, {3, 4}}},
      {"row broadcast", {{3, 4}, {4}}},
      {"both broadcast", {{2, 1, 4}, {3, 1}}},
      {"0-d operand", {{3, 4}, {}}},
  };
  for (const Bin& b : bins)
    for (const auto& [variant, shapes] : bshapes) {
      auto op = b.op;
      auto rf = b.ref;
      OpCase c = C(b.name, variant, shapes, [op](const Inputs& x) { return op(x[0], x[1]); })
                     .with_ref(map_ref([rf](const std::vector<double>& v) { return rf(v[0], v[1]); }));
      if (b.positive) c.positive();
      add_case(c);
    }
  // scalar forms (the scalar takes the tensor's dtype and gets no gradient)
  add_case(C("add", "scalar", {{3, 4}}, [](const Inputs& x) { return add(x[0], 2.5); })
               .with_ref(map_ref([](const std::vector<double>& v) { return v[0] + 2.5; })));
  add_case(C("sub", "scalar", {{3, 4}}, [](const Inputs& x) { return sub(x[0], 1.5); })
               .with_ref(map_ref([](const std::vector<double>& v) { return v[0] - 1.5; })));
  add_case(C("mul", "scalar", {{3, 4}}, [](const Inputs& x) { return mul(x[0], -3.0); })
               .with_ref(map_ref([](const std::vector<double>& v) { return v[0] * -3.0; })));
  add_case(C("div", "scalar", {{3, 4}}, [](const Inputs& x) { return div(x[0], 4.0); })
               .with_ref(map_ref([](const std::vector<double>& v) { return v[0] / 4.0; })));
  add_case(C("rsub", "2 - x", {{3, 4}}, [](const Inputs& x) { return rsub(2.0, x[0]); })
               .with_ref(map_ref([](const std::vector<double>& v) { return 2.0 - v[0]; })));
  add_case(C("rdiv", "2 / x", {{3, 4}}, [](const Inputs& x) { return rdiv(2.0, x[0]); })
               .with_ref(map_ref([](const std::vector<double>& v) { return 2.0 / v[0]; }))
               .positive());
  // comparisons: 1 or 0, no gradient. Inputs are floored so that ties happen.
  struct Cmp {
    const char* name;
    Tensor (*op)(const Tensor&, const Tensor&);
    double (*ref)(double, double);
  };
  const Cmp cmps[] = {
      {"eq", eq, [](double a, double b) { return double(a == b); }},
      {"ne", ne, [](double a, double b) { return double(a != b); }},
      {"lt", lt, [](double a, double b) { return double(a < b); }},
      {"le", le, [](double a, double b) { return double(a <= b); }},
      {"gt", gt, [](double a, double b) { return double(a > b); }},
      {"ge", ge, [](double a, double b) { return double(a >= b); }},
  };
  for (const Cmp& c : cmps) {
    auto op = c.op;
    auto rf = c.ref;
    add_case(C(c.name, "floored, broadcast", {{3, 4}, {4}},
               [op](const Inputs& x) { return op(floor(x[0]), floor(x[1])); })
                 .with_ref(map_ref([rf](const std::vector<double>& v) { return rf(std::floor(v[0]), std::floor(v[1])); }))
                 .no_grad());
  }

  // ---- elementwise unary ----
  struct Un {
    const char* name;
    const char* variant;
    Fn fn;
    double (*ref)(double);
    bool positive;
    std::vector<double> kinks;
  };
  const std::vector<Un> uns = {
      {"neg", "", [](const Inputs& x) { return neg(x[0]); }, [](double v) { return -v; }, false, {}},
      {"exp", "", [](const Inputs& x) { return exp(x[0]); }, [](double v) { return std::exp(v); }, false, {}},
      {"log", "", [](const Inputs& x) { return log(x[0]); }, [](double v) { return std::log(v); }, true, {}},
      {"sqrt", "", [](const Inputs& x) { return sqrt(x[0]); }, [](double v) { return std::sqrt(v); }, true, {}},
      {"rsqrt", "", [](const Inputs& x) { return rsqrt(x[0]); }, [](double v) { return 1 / std::sqrt(v); }, true, {}},
      {"pow", "x^2.5", [](const Inputs& x) { return pow(x[0], 2.5); }, [](double v) { return std::pow(v, 2.5); }, true, {}},
      {"pow", "x^-1.5", [](const Inputs& x) { return pow(x[0], -1.5); }, [](double v) { return std::pow(v, -1.5); }, true, {}},
      {"pow", "x^3 (negative x)", [](const Inputs& x) { return pow(x[0], 3.0); }, [](double v) { return v * v * v; }, false, {}},
      {"square", "", [](const Inputs& x) { return square(x[0]); }, [](double v) { return v * v; }, false, {}},
      {"sin", "", [](const Inputs& x) { return sin(x[0]); }, [](double v) { return std::sin(v); }, false, {}},
      {"cos", "", [](const Inputs& x) { return cos(x[0]); }, [](double v) { return std::cos(v); }, false, {}},
      {"tanh", "", [](const Inputs& x) { return tanh(x[0]); }, [](double v) { return std::tanh(v); }, false, {}},
      {"sigmoid", "", [](const Inputs& x) { return sigmoid(x[0]); }, [](double v) { return 1 / (1 + std::exp(-v)); }, false, {}},
      {"relu", "", [](const Inputs& x) { return relu(x[0]); }, [](double v) { return v > 0 ? v : 0; }, false, {0}},
      {"gelu", "erf", [](const Inputs& x) { return gelu(x[0]); },
       [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }, false, {}},
      {"gelu", "tanh approximation", [](const Inputs& x) { return gelu(x[0], true); },
       [](double v) { return 0.5 * v * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v))); }, false, {}},
      {"silu", "", [](const Inputs& x) { return silu(x[0]); }, [](double v) { return v / (1 + std::exp(-v)); }, false, {}},
      {"abs", "", [](const Inputs& x) { return abs(x[0]); }, [](double v) { return std::abs(v); }, false, {0}},
      {"clamp", "[-0.5, 0.5]", [](const Inputs& x) { return clamp(x[0], -0.5, 0.5); },
       [](double v) { return std::clamp(v, -0.5, 0.5); }, false, {-0.5, 0.5}},
      {"clamp", "lower bound only", [](const Inputs& x) { return clamp(x[0], -0.3, std::nullopt); },
       [](double v) { return std::max(v, -0.3); }, false, {-0.3}},
      {"clamp", "upper bound only", [](const Inputs& x) { return clamp(x[0], std::nullopt, 0.2); },
       [](double v) { return std::min(v, 0.2); }, false, {0.2}},
  };
  for (const Un& u : uns) {
    OpCase c = C(u.name, u.variant, {{3, 4}}, u.fn).with_ref(unary_ref(u.ref)).avoid(u.kinks);
    if (u.positive) c.positive();
    add_case(c);
  }
  // piecewise constant: values only, and no graph is recorded
  add_case(C("floor", "", {{3, 4}}, [](const Inputs& x) { return floor(mul(x[0], 3.0)); })
               .with_ref(unary_ref([](double v) { return std::floor(3 * v); }))
               .no_grad());
  add_case(C("ceil", "", {{3, 4}}, [](const Inputs& x) { return ceil(mul(x[0], 3.0)); })
               .with_ref(unary_ref([](double v) { return std::ceil(3 * v); }))
               .no_grad());

  // ---- selection ----
  // cond [3,1] broadcasts against a [3,4] and b [4]; cond may be any dtype (here i64)
  add_case(C("where", "broadcast cond, a, b", {{3, 4}, {4}},
             [](const Inputs& x) { return where(i64s({1, 0, 1}, {3, 1}), x[0], x[1]); })
               .with_ref([](const Inputs& x) {
                 return ref_map({f64s({1, 0, 1}, {3, 1}), x[0], x[1]},
                                [](const std::vector<double>& v) { return v[0] != 0 ? v[1] : v[2]; });
               }));
  add_case(C("masked_fill", "mask [1,4] over [3,4]", {{3, 4}},
             [](const Inputs& x) { return masked_fill(x[0], f64s({0, 1, 1, 0}, {1, 4}), -7.0); })
               .with_ref([](const Inputs& x) {
                 return ref_map({f64s({0, 1, 1, 0}, {1, 4}), x[0]},
                                [](const std::vector<double>& v) { return v[0] != 0 ? -7.0 : v[1]; });
               }));

  // ---- reductions ----
  auto plus = [](double a, double b) { return a + b; };
  auto mx = [](double a, double b) { return std::max(a, b); };
  auto mn = [](double a, double b) { return std::min(a, b); };
  const std::vector<std::tuple<std::string, Shape, bool>> rdims = {
      {"all", {}, false}, {"dim 1", {1}, false}, {"dims 0,2 keepdim", {0, 2}, true}, {"dim -1", {-1}, false},
      {"dims -1,-3 keepdim", {-1, -3}, true}};
  for (const auto& [variant, dims, keep] : rdims) {
    add_case(C("sum", variant, {{2, 3, 4}}, [dims = dims, keep = keep](const Inputs& x) { return sum(x[0], dims, keep); })
                 .with_ref([=](const Inputs& x) { return ref_reduce(x[0], dims, keep, plus); }));
    add_case(C("mean", variant, {{2, 3, 4}}, [dims = dims, keep = keep](const Inputs& x) { return mean(x[0], dims, keep); })
                 .with_ref([=](const Inputs& x) {
                   Tensor s = ref_reduce(x[0], dims, keep, plus);
                   return div(s, double(x[0].numel() / std::max<int64_t>(s.numel(), 1)));
                 }));
  }
  add_case(C("sum", "0-d input", {{}}, [](const Inputs& x) { return sum(x[0]); })
               .with_ref([](const Inputs& x) { return x[0].clone(); }));
  for (int64_t d : {0, 1, -1})
    for (bool keep : {false, true}) {
      std::string v = fmt::format("dim {}{}", d, keep ? " keepdim" : "");
      add_case(C("max", v, {{3, 4}}, [d, keep](const Inputs& x) { return max(x[0], d, keep); })
                   .with_ref([=](const Inputs& x) { return ref_reduce(x[0], {d}, keep, mx); }));
      add_case(C("min", v, {{3, 4}}, [d, keep](const Inputs& x) { return min(x[0], d, keep); })
                   .with_ref([=](const Inputs& x) { return ref_reduce(x[0], {d}, keep, mn); }));
    }
  add_case(C("max", "global", {{2, 3, 4}}, [](const Inputs& x) { return max(x[0]); })
               .with_ref([=](const Inputs& x) { return ref_reduce(x[0], {}, false, mx); }));
  add_case(C("min", "global", {{2, 3, 4}}, [](const Inputs& x) { return min(x[0]); })
               .with_ref([=](const Inputs& x) { return ref_reduce(x[0], {}, false, mn); }));
  for (int64_t d : {0, -1})
    add_case(C("argmax", fmt::format("dim {}", d), {{3, 4}}, [d](const Inputs& x) { return argmax(x[0], d); })
                 .with_ref([d](const Inputs& x) {
                   // the index of the first maximum along d
                   Arr a = arr(x[0]);
                   int64_t dd = d < 0 ? d + 2 : d;
                   std::vector<double> r;
                   const int64_t outer = dd == 0 ? 4 : 3, n = a.shape[size_t(dd)];
                   for (int64_t o = 0; o < outer; ++o) {
                     int64_t best = 0;
                     auto at = [&](int64_t i) { return dd == 0 ? a.v[size_t(i * 4 + o)] : a.v[size_t(o * 4 + i)]; };
                     for (int64_t i = 1; i < n; ++i)
                       if (at(i) > at(best)) best = i;
                     r.push_back(double(best));
                   }
                   return f64s(r);
                 })
                 .no_grad());
  add_case(C("sum_to", "[2,3,4] -> [3,1]", {{2, 3, 4}}, [](const Inputs& x) { return sum_to(x[0], {3, 1}); })
               .with_ref([=](const Inputs& x) { return ref_reduce(x[0], {0, 2}, true, plus).reshape({3, 1}); }));

  // ---- softmax family and losses ----
  for (auto [shape, d] : std::vector<std::pair<Shape, int64_t>>{{{3, 5}, -1}, {{3, 5}, 0}, {{2, 3, 4}, 1}}) {
    std::string v = fmt::format("{} dim {}", shape_str(shape), d);
    add_case(C("softmax", v, {shape}, [d = d](const Inputs& x) { return softmax(x[0], d); })
                 .with_ref([d = d](const Inputs& x) { return ref_along(x[0], d, softmax_line); }));
    add_case(C("log_softmax", v, {shape}, [d = d](const Inputs& x) { return log_softmax(x[0], d); })
                 .with_ref([d = d](const Inputs& x) { return ref_along(x[0], d, log_softmax_line); }));
  }
  // causal attention's softmax: in each [T, S] block, row i covers keys j <= i + (S - T)
  auto causal_softmax_ref = [](const Inputs& x) {
    Arr a = arr(x[0]);
    const int64_t S = a.shape.back(), T = a.shape[a.shape.size() - 2];
    for (int64_t r = 0; r < int64_t(a.v.size()) / S; ++r) {
      const int64_t len = r % T + (S - T) + 1;
      std::vector<double> p = softmax_line({a.v.begin() + r * S, a.v.begin() + r * S + len});
      for (int64_t j = 0; j < S; ++j) a.v[size_t(r * S + j)] = j < len ? p[size_t(j)] : 0.0;
    }
    return tensor_of(a);
  };
  for (Shape shape : {Shape{4, 4}, Shape{2, 3, 5}})
    add_case(C("causal_softmax", shape_str(shape), {shape}, [](const Inputs& x) { return causal_softmax(x[0]); })
                 .with_ref(causal_softmax_ref));
  // causal attention (no dropout): row i of Tq over Tk keys sees j <= i + (Tk - Tq). The
  // Tq = 70 rows cross the CPU kernel's query blocks of 64.
  auto attention_ref = [](const Inputs& x) {
    Arr q = arr(x[0]), k = arr(x[1]), v = arr(x[2]);
    const int64_t Dh = q.shape.back(), Tq = q.shape[q.shape.size() - 2], Tk = k.shape[k.shape.size() - 2];
    const int64_t bh = int64_t(q.v.size()) / (Tq * Dh);
    const double scale = 0.5;
    Arr out = q;
    for (int64_t b = 0; b < bh; ++b)
      for (int64_t i = 0; i < Tq; ++i) {
        const std::vector<double> pr = softmax_line(visible_scores(q, k, b, i, scale));
        const int64_t n = int64_t(pr.size());
        for (int64_t c = 0; c < Dh; ++c) {
          double o = 0;
          for (int64_t j = 0; j < n; ++j) o += pr[size_t(j)] * v.v[size_t((b * Tk + j) * Dh + c)];
          out.v[size_t((b * Tq + i) * Dh + c)] = o;
        }
      }
    return tensor_of(out);
  };
  for (auto [qs, ks] : std::vector<std::pair<Shape, Shape>>{{{2, 70, 4}, {2, 70, 4}}, {{2, 1, 3, 4}, {2, 1, 7, 4}}}) {
    const std::string v = fmt::format("q {} over k, v {}", shape_str(qs), shape_str(ks));
    add_case(C("causal_attention", v, {qs, ks, ks},
               [](const Inputs& x) { return causal_attention(x[0], x[1], x[2], 0.5); })
                 .with_ref(attention_ref));
    add_case(C("causal_attention_reference", v, {qs, ks, ks},
               [](const Inputs& x) { return causal_attention_reference(x[0], x[1], x[2], 0.5); })
                 .with_ref(attention_ref));
  }
  // RoPE's rotation inside the attention: tables for Tk key positions, the queries taking the
  // last Tq rows; the reference turns q and k in double first.
  for (auto [qs, ks] : std::vector<std::pair<Shape, Shape>>{{{2, 70, 4}, {2, 70, 4}}, {{2, 1, 3, 4}, {2, 1, 7, 4}}}) {
    const std::string v = fmt::format("q {} over k, v {}", shape_str(qs), shape_str(ks));
    const int64_t Tq = qs[qs.size() - 2], Tk = ks[ks.size() - 2];
    const auto [cs64, sn64] = rope_like_tables(Tk, 2, DType::f64);
    auto rotary_ref = [=](const Inputs& x) {
      return attention_ref({turned_pairs(x[0], cs64, sn64, Tk - Tq), turned_pairs(x[1], cs64, sn64, 0), x[2]});
    };
    add_case(C("causal_rotary_attention", v, {qs, ks, ks},
               [=](const Inputs& x) {
                 return causal_rotary_attention(x[0], x[1], x[2], cs64.to(x[0].dtype()), sn64.to(x[0].dtype()), 0.5);
               })
                 .with_ref(rotary_ref));
    add_case(C("causal_rotary_attention_reference", v, {qs, ks, ks},
               [=](const Inputs& x) {
                 return causal_rotary_attention_reference(x[0], x[1], x[2], cs64.to(x[0].dtype()),
                                                          sn64.to(x[0].dtype()), 0.5);
               })
                 .with_ref(rotary_ref));
  }
  // mean over the rows whose target is not ignored
  auto ce_ref = [](const Tensor& logits, const std::vector<int64_t>& t, int64_t ignore) {
    Tensor ls = ref_along(logits.reshape({-1, logits.size(-1)}), -1, log_softmax_line);
    double s = 0;
    int64_t count = 0;
    for (size_t r = 0; r < t.size(); ++r)
      if (t[r] != ignore) {
        s -= ls.at({int64_t(r), t[r]});
        ++count;
      }
    return f64s({s / double(count)}).reshape({});
  };
  add_case(C("cross_entropy", "[4,5], one ignored", {{4, 5}},
             [](const Inputs& x) { return cross_entropy(x[0], i64s({1, -100, 3, 0})); })
               .with_ref([=](const Inputs& x) { return ce_ref(x[0], {1, -100, 3, 0}, -100); }));
  add_case(C("cross_entropy", "[2,3,5] logits, ignore_index 2", {{2, 3, 5}},
             [](const Inputs& x) { return cross_entropy(x[0], i64s({4, 2, 0, 2, 1, 3}, {2, 3}), 2); })
               .with_ref([=](const Inputs& x) { return ce_ref(x[0], {4, 2, 0, 2, 1, 3}, 2); }));
  // the head and the loss as one op: rows in chunks of 2 (the last one short) and of 1, the
  // whole batch in one, with and without a bias
  for (int64_t chunk : {2, 1, 0}) {
    const std::vector<int64_t> t = {1, -100, 3, 0, 2};
    add_case(C("linear_cross_entropy", fmt::format("[5,3] x [4,3] + bias, chunks of {}", chunk), {{5, 3}, {4, 3}, {4}},
               [=](const Inputs& x) { return linear_cross_entropy(x[0], x[1], x[2], i64s(t), -100, chunk); })
                 .with_ref([=](const Inputs& x) { return ce_ref(add(ref_matmul(x[0], x[1].t()), x[2]), t, -100); }));
  }
  add_case(C("linear_cross_entropy", "[2,3,4] x [5,4], no bias, ignore_index 2", {{2, 3, 4}, {5, 4}},
             [](const Inputs& x) {
               return linear_cross_entropy(x[0], x[1], Tensor(), i64s({4, 2, 0, 2, 1, 3}, {2, 3}), 2, 4);
             })
               .with_ref([=](const Inputs& x) { return ce_ref(ref_matmul(x[0], x[1].t()), {4, 2, 0, 2, 1, 3}, 2); }));

  // ---- matmul ----
  const std::vector<std::pair<std::string, std::vector<Shape>>> mm = {
      {"2-d", {{3, 4}, {4, 5}}},
      {"batched", {{2, 3, 4}, {2, 4, 5}}},
      {"broadcast batch", {{2, 1, 3, 4}, {3, 4, 2}}},
      {"3-d x 2-d (batch folded into rows)", {{2, 3, 4}, {4, 5}}},
      {"2-d x 3-d", {{3, 4}, {2, 4, 5}}},
      {"1-d x 2-d", {{4}, {4, 5}}},
      {"2-d x 1-d", {{3, 4}, {4}}},
      {"1-d x 3-d", {{4}, {2, 4, 5}}},
      {"1-d x 1-d (dot)", {{4}, {4}}},
      {"inner dim 1", {{3, 1}, {1, 5}}},
  };
  for (const auto& [variant, shapes] : mm)
    add_case(C("matmul", variant, shapes, [](const Inputs& x) { return matmul(x[0], x[1]); })
                 .with_ref([](const Inputs& x) { return ref_matmul(x[0], x[1]); }));
  add_case(C("matmul", "a^T b and a b^T (transposed operands)", {{4, 3}, {5, 4}},
             [](const Inputs& x) { return add(matmul(x[0].t(), x[1].t()), matmul(x[0].t(), x[1].t())); })
               .with_ref([](const Inputs& x) {
                 Tensor p = ref_matmul(x[0].t(), x[1].t());
                 return add(p, p);
               }));
  add_case(C("linear", "with bias", {{3, 4}, {5, 4}, {5}},
             [](const Inputs& x) { return linear(x[0], x[1], x[2]); })
               .with_ref([](const Inputs& x) { return add(ref_matmul(x[0], x[1].t()), x[2]); }));
  add_case(C("linear", "no bias, 3-d input", {{2, 3, 4}, {5, 4}}, [](const Inputs& x) { return linear(x[0], x[1]); })
               .with_ref([](const Inputs& x) { return ref_matmul(x[0], x[1].t()); }));

  // ---- joining and splitting ----
  add_case(C("cat", "dim 0", {{2, 3}, {1, 3}, {3, 3}}, [](const Inputs& x) { return cat({x[0], x[1], x[2]}, 0); }));
  add_case(C("cat", "dim -1", {{2, 3}, {2, 1}, {2, 2}}, [](const Inputs& x) { return cat({x[0], x[1], x[2]}, -1); }));
  add_case(C("stack", "dim 0", {{2, 3}, {2, 3}}, [](const Inputs& x) { return stack({x[0], x[1]}, 0); }));
  add_case(C("stack", "dim -1", {{2, 3}, {2, 3}, {2, 3}}, [](const Inputs& x) { return stack({x[0], x[1], x[2]}, -1); }));
  // pieces are weighted differently so that a gradient sent to the wrong piece shows
  auto weighted = [](const std::vector<Tensor>& ps, int64_t dim) {
    std::vector<Tensor> w;
    for (size_t i = 0; i < ps.size(); ++i) w.push_back(mul(ps[i], double(i + 1)));
    return cat(w, dim);
  };
  add_case(C("split", "size 2 along dim 1 (last piece smaller)", {{3, 5}},
             [=](const Inputs& x) { return weighted(split(x[0], int64_t(2), 1), 1); }));
  add_case(C("split", "sizes {1,3} along dim 0", {{4, 2}},
             [=](const Inputs& x) { return weighted(split(x[0], std::vector<int64_t>{1, 3}, 0), 0); }));
  add_case(C("split", "a piece unused, a piece used twice", {{3, 5}}, [](const Inputs& x) {
    const std::vector<Tensor> p = split(x[0], std::vector<int64_t>{2, 1, 2}, 1);
    return add(mul(p[0], 3.0), mul(p[2], p[2]));
  }));
  add_case(C("chunk", "3 chunks of 7", {{7, 2}}, [=](const Inputs& x) { return weighted(chunk(x[0], 3, 0), 0); }));

  // ---- indexing ----
  auto ref_index_select = [](const Tensor& x, int64_t d, const std::vector<int64_t>& idx) {
    Arr a = arr(x);
    Shape out = a.shape;
    out[size_t(d)] = int64_t(idx.size());
    std::vector<double> r;
    for (int64_t e = 0; e < shape_numel(out); ++e) {
      Shape i = unravel(e, out);
      i[size_t(d)] = idx[size_t(i[size_t(d)])];
      r.push_back(a.v[size_t(ravel(i, a.shape))]);
    }
    return tensor_of({out, r});
  };
  add_case(C("index_select", "dim 0, repeated index", {{4, 3}},
             [](const Inputs& x) { return index_select(x[0], 0, i64s({2, 0, 2, 3})); })
               .with_ref([=](const Inputs& x) { return ref_index_select(x[0], 0, {2, 0, 2, 3}); }));
  add_case(C("index_select", "dim 1, i32 index", {{2, 4, 3}},
             [](const Inputs& x) { return index_select(x[0], 1, from_vector(std::vector<int32_t>{3, 1})); })
               .with_ref([=](const Inputs& x) { return ref_index_select(x[0], 1, {3, 1}); }));
  // repeated ids: their gradients add up in the one row
  add_case(C("embedding", "ids [2,3] with repeats", {{5, 3}},
             [](const Inputs& x) { return embedding(x[0], i64s({4, 1, 4, 0, 4, 2}, {2, 3})); })
               .with_ref([=](const Inputs& x) {
                 return ref_index_select(x[0], 0, {4, 1, 4, 0, 4, 2}).reshape({2, 3, 3});
               }));
  auto ref_gather = [](const Tensor& x, int64_t d, const Tensor& index) {
    Arr a = arr(x), ix = arr(index);
    std::vector<double> r;
    for (int64_t e = 0; e < shape_numel(ix.shape); ++e) {
      Shape i = unravel(e, ix.shape);
      i[size_t(d)] = int64_t(ix.v[size_t(e)]);
      r.push_back(a.v[size_t(ravel(i, a.shape))]);
    }
    return tensor_of({ix.shape, r});
  };
  const Tensor gidx1 = i64s({0, 3, 3, 1, 2, 2}, {3, 2}), gidx0 = i64s({2, 0, 1, 1, 0, 0, 2, 1}, {2, 4});
  add_case(C("gather", "dim 1, repeats", {{3, 4}}, [=](const Inputs& x) { return gather(x[0], 1, gidx1); })
               .with_ref([=](const Inputs& x) { return ref_gather(x[0], 1, gidx1); }));
  add_case(C("gather", "dim 0", {{3, 4}}, [=](const Inputs& x) { return gather(x[0], 0, gidx0); })
               .with_ref([=](const Inputs& x) { return ref_gather(x[0], 0, gidx0); }));
  auto ref_scatter_add = [](const Tensor& x, int64_t d, const Tensor& index, const Tensor& src) {
    Arr a = arr(x), ix = arr(index), s = arr(src);
    for (int64_t e = 0; e < shape_numel(ix.shape); ++e) {
      Shape i = unravel(e, ix.shape);
      i[size_t(d)] = int64_t(ix.v[size_t(e)]);
      a.v[size_t(ravel(i, a.shape))] += s.v[size_t(e)];
    }
    return tensor_of(a);
  };
  // index [2,4] into x [3,4] along dim 0: column 1 gets two adds into row 1
  add_case(C("scatter_add", "dim 0, colliding", {{3, 4}, {2, 4}},
             [=](const Inputs& x) { return scatter_add(x[0], 0, gidx0, x[1]); })
               .with_ref([=](const Inputs& x) { return ref_scatter_add(x[0], 0, gidx0, x[1]); }));
  add_case(C("scatter_add", "dim 1", {{3, 4}, {3, 2}},
             [=](const Inputs& x) { return scatter_add(x[0], 1, gidx1, x[1]); })
               .with_ref([=](const Inputs& x) { return ref_scatter_add(x[0], 1, gidx1, x[1]); }));

  // ---- rotation (RoPE's kernel): x [.., t, 2p] turned pair by pair by fixed angles ----
  {
    const Tensor angles = from_vector(std::vector<double>{0.3, -1.2, 2.0, 0.0, 0.7, -2.9, 1.5, 3.1, -0.4, 0.9, 2.6, -1.7},
                                      {4, 3});
    const Tensor cs64 = cos(angles), sn64 = sin(angles);
    for (bool inverse : {false, true})
      add_case(C("rotate_pairs", inverse ? "inverse" : "forward", {{2, 4, 6}},
                 [=](const Inputs& x) {
                   return rotate_pairs(x[0], cs64.to(x[0].dtype()), sn64.to(x[0].dtype()), inverse);
                 })
                   .with_ref([=](const Inputs& x) { return turned_pairs(x[0], cs64, sn64, 0, inverse ? -1 : 1); }));
  }

  // ---- counted positions (CoPE's kernel): 3 queries at positions 2..4 over 5 keys, npos 3 ----
  // (npos 3 makes the clamp bite: a query far from key 0 counts more than 2 gates of ~0.5.)
  {
    const int64_t t0 = 2;
    add_case(C("cope_positions", "queries 2..4 of 5 keys, clamped at 2", {{2, 3, 5}, {2, 3, 3}},
               [=](const Inputs& x) { return cope_positions(x[0], x[1], t0).term; })
                 .with_ref([=](const Inputs& x) {
                   Arr l = arr(x[0]), z = arr(x[1]);
                   Arr r{l.shape, std::vector<double>(l.v.size())};
                   const size_t Tq = 3, Tk = 5, npos = 3;
                   for (size_t row = 0; row < l.v.size() / Tk; ++row) {
                     const size_t i = t0 + row % Tq;
                     const double* zr = &z.v[row * npos];
                     for (size_t j = 0; j < Tk; ++j) {
                       double p = 0;  // sum of the gates of keys j..i, clamped
                       for (size_t t = j; t <= i && j <= i; ++t) p += 1 / (1 + std::exp(-l.v[row * Tk + t]));
                       p = std::min(p, double(npos - 1));
                       const double lo = std::floor(p), w = p - lo;
                       const double hi_v = zr[size_t(std::ceil(p))], lo_v = zr[size_t(lo)];
                       r.v[row * Tk + j] = lo_v + w * (hi_v - lo_v);
                     }
                   }
                   return tensor_of(r);
                 }));
  }

  // ---- attention with CoPE's term (the fused kernel and its composed reference) ----
  // q [.., Tq, Dh] over k, v [.., Tk, Dh], the table e [npos, Dh]; scale 0.5. Query r is i = r + Tk - Tq.
  auto cope_attention_ref = [](bool official) {
    return [official](const Inputs& x) {
      Arr q = arr(x[0]), k = arr(x[1]), v = arr(x[2]), e = arr(x[3]);
      const int64_t Dh = q.shape.back(), Tq = q.shape[q.shape.size() - 2], Tk = k.shape[k.shape.size() - 2];
      const int64_t npos = e.shape[0], bh = int64_t(q.v.size()) / (Tq * Dh);
      const double scale = 0.5;
      Arr out = q;
      for (int64_t b = 0; b < bh; ++b)
        for (int64_t r = 0; r < Tq; ++r) {
          const std::vector<double> s = visible_scores(q, k, b, r, scale);
          const int64_t n = int64_t(s.size());
          std::vector<double> zrow(static_cast<size_t>(npos), 0.0);  // z_i = q_i·eᵀ
          for (int64_t p = 0; p < npos; ++p)
            for (int64_t c = 0; c < Dh; ++c) zrow[size_t(p)] += q.v[size_t((b * Tq + r) * Dh + c)] * e.v[size_t(p * Dh + c)];
          const double* zr = zrow.data();
          std::vector<double> logit(static_cast<size_t>(n));
          for (int64_t j = 0; j < n; ++j) {
            double p = 0;  // the gates of keys j..i, counted and clamped
            for (int64_t t = j; t < n; ++t) p += 1 / (1 + std::exp(-s[size_t(t)]));
            p = std::min(p, double(npos - 1));
            const double lo = std::floor(p), w = p - lo;
            const double term = zr[size_t(lo)] + w * (zr[size_t(std::ceil(p))] - zr[size_t(lo)]);
            logit[size_t(j)] = s[size_t(j)] + (official ? term * scale : term);
          }
          const std::vector<double> pr = softmax_line(logit);
          for (int64_t c = 0; c < Dh; ++c) {
            double o = 0;
            for (int64_t j = 0; j < n; ++j) o += pr[size_t(j)] * v.v[size_t((b * Tk + j) * Dh + c)];
            out.v[size_t((b * Tq + r) * Dh + c)] = o;
          }
        }
      return tensor_of(out);
    };
  };
  // npos 3 makes the clamp bite; 70 queries span two of the CPU kernel's query blocks.
  for (auto [qs, ks, npos] : std::vector<std::tuple<Shape, Shape, int64_t>>{{{2, 6, 4}, {2, 9, 4}, 3},
                                                                           {{1, 70, 4}, {1, 70, 4}, 40}})
    for (bool official : {false, true}) {
      const Shape es{npos, qs.back()};
      const std::string v = fmt::format("q {} over k, v {}, npos {}{}", shape_str(qs), shape_str(ks), npos,
                                        official ? ", official" : "");
      add_case(C("causal_cope_attention", v, {qs, ks, ks, es},
                 [official](const Inputs& x) { return causal_cope_attention(x[0], x[1], x[2], x[3], 0.5, official); })
                   .with_ref(cope_attention_ref(official)));
      add_case(C("causal_cope_attention_reference", v, {qs, ks, ks, es},
                 [official](const Inputs& x) {
                   return causal_cope_attention_reference(x[0], x[1], x[2], x[3], 0.5, official);
                 })
                   .with_ref(cope_attention_ref(official)));
    }

  // ---- scans ----
  for (int64_t d : {0, 1, -1})
    for (bool rev : {false, true}) {
      std::string v = fmt::format("dim {}{}", d, rev ? " reverse" : "");
      add_case(C("cumsum", v, {{3, 4}}, [d, rev](const Inputs& x) { return cumsum(x[0], d, rev); })
                   .with_ref([d, rev](const Inputs& x) {
                     return ref_along(x[0], d, [rev](const std::vector<double>& l) {
                       std::vector<double> o(l.size());
                       double s = 0;
                       for (size_t i = 0; i < l.size(); ++i) {
                         size_t j = rev ? l.size() - 1 - i : i;
                         s += l[j];
                         o[j] = s;
                       }
                       return o;
                     });
                   }));
    }

  // ---- normalisation ----
  auto ref_norm = [](const Tensor& x, const Tensor& w, const Tensor& b, double eps, bool rms) {
    Tensor y = ref_along(x, -1, [=](const std::vector<double>& l) {
      double n = double(l.size()), mu = 0, var = 0;
      if (!rms)
        for (double v : l) mu += v / n;
      for (double v : l) var += (v - mu) * (v - mu) / n;
      std::vector<double> o;
      for (double v : l) o.push_back((v - mu) / std::sqrt(var + eps));
      return o;
    });
    if (w.defined()) y = mul(y, w.to(DType::f64));
    if (b.defined()) y = add(y, b.to(DType::f64));
    return y;
  };
  add_case(C("bias_gelu", "3-d", {{2, 3, 5}, {5}}, [](const Inputs& x) { return bias_gelu(x[0], x[1]); })
               .with_ref([](const Inputs& x) {
                 Arr a = arr(x[0]), b = arr(x[1]);
                 const size_t n = b.v.size();
                 for (size_t i = 0; i < a.v.size(); ++i) {
                   const double u = a.v[i] + b.v[i % n];
                   a.v[i] = 0.5 * u * (1 + std::erf(u / std::sqrt(2.0)));
                 }
                 return tensor_of(a);
               }));
  add_case(C("layer_norm", "weight and bias", {{3, 5}, {5}, {5}},
             [](const Inputs& x) { return layer_norm(x[0], x[1], x[2]); })
               .with_ref([=](const Inputs& x) { return ref_norm(x[0], x[1], x[2], 1e-5, false); }));
  add_case(C("layer_norm", "no weight, no bias, 3-d", {{2, 3, 4}},
             [](const Inputs& x) { return layer_norm(x[0], Tensor(), Tensor()); })
               .with_ref([=](const Inputs& x) { return ref_norm(x[0], Tensor(), Tensor(), 1e-5, false); }));
  add_case(C("layer_norm", "weight only", {{3, 4}, {4}}, [](const Inputs& x) { return layer_norm(x[0], x[1], Tensor()); })
               .with_ref([=](const Inputs& x) { return ref_norm(x[0], x[1], Tensor(), 1e-5, false); }));
  add_case(C("rms_norm", "weight", {{3, 5}, {5}}, [](const Inputs& x) { return rms_norm(x[0], x[1]); })
               .with_ref([=](const Inputs& x) { return ref_norm(x[0], x[1], Tensor(), 1e-6, true); }));
  add_case(C("rms_norm", "no weight, 3-d", {{2, 3, 4}}, [](const Inputs& x) { return rms_norm(x[0], Tensor()); })
               .with_ref([=](const Inputs& x) { return ref_norm(x[0], Tensor(), Tensor(), 1e-6, true); }));

  // ---- randomness and masks ----
  // A fresh generator per call makes the mask the same in every gradcheck evaluation.
  add_case(C("dropout", "p=0.4, seeded", {{4, 6}}, [](const Inputs& x) {
    Generator g(7);
    return dropout(x[0], 0.4, true, &g);
  }));
  add_case(C("causal_mask", "T=3, S=5", {}, [](const Inputs&) { return causal_mask(3, 5, DType::f64); })
               .with_ref([](const Inputs&) {
                 std::vector<double> v;
                 for (int i = 0; i < 3; ++i)
                   for (int j = 0; j < 5; ++j) v.push_back(j > i + 2 ? 1 : 0);
                 return f64s(v, {3, 5});
               })
               .no_grad()
               .no_f32());

  // ---- views (tensor.h): no copy, gradient undoes the view ----
  auto same_values = [](const Shape& s) { return [s](const Inputs& x) { return x[0].contiguous().reshape(s); }; };
  add_case(C("view", "[2,3,4] -> [6,-1]", {{2, 3, 4}}, [](const Inputs& x) { return x[0].contiguous().view({6, -1}); })
               .with_ref(same_values({6, 4})));
  add_case(C("reshape", "[2,3,4] -> [4,6] (copies when strides need it)", {{2, 3, 4}},
             [](const Inputs& x) { return x[0].reshape({4, 6}); })
               .with_ref(same_values({4, 6})));
  add_case(C("flatten", "dims 1..2", {{2, 3, 4}}, [](const Inputs& x) { return x[0].flatten(1); })
               .with_ref(same_values({2, 12})));
  auto ref_permute = [](const Shape& p) {
    return [p](const Inputs& x) {
      Arr a = arr(x[0]);
      Shape out;
      for (int64_t d : p) out.push_back(a.shape[size_t(d)]);
      std::vector<double> r;
      for (int64_t e = 0; e < shape_numel(out); ++e) {
        Shape i = unravel(e, out), src(p.size());
        for (size_t k = 0; k < p.size(); ++k) src[size_t(p[k])] = i[k];
        r.push_back(a.v[size_t(ravel(src, a.shape))]);
      }
      return tensor_of({out, r});
    };
  };
  add_case(C("permute", "(2,0,1)", {{2, 3, 4}}, [](const Inputs& x) { return x[0].permute({2, 0, 1}); })
               .with_ref(ref_permute({2, 0, 1})));
  add_case(C("transpose", "(0,2)", {{2, 3, 4}}, [](const Inputs& x) { return x[0].transpose(0, 2); })
               .with_ref(ref_permute({2, 1, 0})));
  add_case(C("t", "", {{3, 4}}, [](const Inputs& x) { return x[0].t(); }).with_ref(ref_permute({1, 0})));
  add_case(C("narrow", "dim 1 [1,3)", {{3, 4}}, [](const Inputs& x) { return x[0].narrow(1, 1, 2); })
               .with_ref([=](const Inputs& x) { return ref_index_select(x[0], 1, {1, 2}); }));
  add_case(C("slice", "dim 0 step 2", {{5, 3}}, [](const Inputs& x) { return x[0].slice(0, 0, 5, 2); })
               .with_ref([=](const Inputs& x) { return ref_index_select(x[0], 0, {0, 2, 4}); }));
  add_case(C("slice", "negative start/end, step 3", {{7, 2}}, [](const Inputs& x) { return x[0].slice(0, -6, -1, 3); })
               .with_ref([=](const Inputs& x) { return ref_index_select(x[0], 0, {1, 4}); }));
  add_case(C("select", "dim 1 index -1", {{3, 4}}, [](const Inputs& x) { return x[0].select(1, -1); })
               .with_ref([=](const Inputs& x) { return ref_index_select(x[0], 1, {3}).reshape({3}); }));
  add_case(C("expand", "[3,1] -> [2,3,4]", {{3, 1}}, [](const Inputs& x) { return x[0].expand({2, 3, 4}); })
               .with_ref([](const Inputs& x) {
                 return ref_map({x[0], zeros({2, 3, 4}, DType::f64)}, [](const std::vector<double>& v) { return v[0]; });
               }));
  add_case(C("squeeze", "dim 1", {{3, 1, 4}}, [](const Inputs& x) { return x[0].squeeze(1); })
               .with_ref(same_values({3, 4})));
  add_case(C("unsqueeze", "dim -1", {{3, 4}}, [](const Inputs& x) { return x[0].unsqueeze(-1); })
               .with_ref(same_values({3, 4, 1})));
  add_case(C("flip", "dims (0,-1)", {{3, 4}}, [](const Inputs& x) { return x[0].flip({0, -1}); })
               .with_ref([](const Inputs& x) {
                 Arr a = arr(x[0]);
                 std::reverse(a.v.begin(), a.v.end());  // flipping both dims of a matrix reverses it
                 return tensor_of(a);
               }));
  add_case(C("contiguous", "of a transpose", {{3, 4}}, [](const Inputs& x) { return x[0].t().contiguous(); })
               .with_ref(ref_permute({1, 0})));
  add_case(C("clone", "", {{3, 4}}, [](const Inputs& x) { return x[0].clone(); })
               .with_ref([](const Inputs& x) { return tensor_of(arr(x[0])); }));
  // f64 -> f32 -> f64 rounds, so a larger step (the function is linear, so that is exact)
  add_case(C("to", "f64 -> f32 -> f64", {{3, 4}}, [](const Inputs& x) { return x[0].to(DType::f32).to(DType::f64); })
               .with_ref([](const Inputs& x) {
                 Arr a = arr(x[0]);
                 for (double& v : a.v) v = double(float(v));
                 return tensor_of(a);
               })
               .tol(1e-2, 1e-5)
               .no_f32());
  return cs;
}

// ============================ the runner ============================

// How the inputs are laid out in memory for one run of a case.
enum class Layout { contiguous, transposed, sliced, flipped, expanded };
const char* layout_name(Layout l) {
  switch (l) {
    case Layout::contiguous: return "contiguous";
    case Layout::transposed: return "transposed";
    case Layout::sliced: return "sliced (step 2)";
    case Layout::flipped: return "flipped";
    case Layout::expanded: return "expanded";
  }
  return "?";
}

// Values for an input of the case's domain, kept away from the op's kinks.
Tensor make_values(const Shape& s, const OpCase& c, Generator& g) {
  Tensor t = randn(s, DType::f64, &g);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (c.domain == Domain::positive) p[i] = 0.5 + std::min(std::abs(p[i]), 2.4);
    for (double k : c.kinks)
      if (std::abs(p[i] - k) < 0.05) p[i] = k + (p[i] >= k ? 0.05 : -0.05) + 0.02 * (p[i] - k);
  }
  return t;
}

// The leaves a layout gives (what gradcheck perturbs) and how the op's inputs are made
// from them. For transposed/sliced/flipped the leaf itself is a non-contiguous view;
// expanded leaves have a size-1 first dim that the op sees expanded (stride 0).
struct Prepared {
  Inputs leaves;
  std::function<Inputs(const Inputs&)> to_op_inputs;
  bool changed = false;  // false if the layout changes nothing for these shapes
};

Prepared prepare(const OpCase& c, Layout layout, Generator& g) {
  Prepared p;
  std::vector<bool> expand_it;
  for (const Shape& s : c.shapes) {
    Tensor leaf;
    bool ex = false;
    const int64_t nd = int64_t(s.size());
    switch (layout) {
      case Layout::contiguous: leaf = make_values(s, c, g); break;
      case Layout::transposed:
        if (nd >= 2 && s[nd - 1] > 1 && s[nd - 2] > 1) {
          Shape st = s;
          std::swap(st[nd - 1], st[nd - 2]);
          leaf = make_values(st, c, g).transpose(-1, -2);
          p.changed = true;
        } else {
          leaf = make_values(s, c, g);
        }
        break;
      case Layout::sliced:
        if (nd >= 1) {
          Shape st = s;
          st[nd - 1] = 2 * s[nd - 1];
          leaf = make_values(st, c, g).slice(-1, 1, 2 * s[nd - 1], 2);
          p.changed = true;
        } else {
          leaf = make_values(s, c, g);
        }
        break;
      case Layout::flipped: {
        Shape all;
        for (int64_t d = 0; d < nd; ++d) all.push_back(d);
        leaf = make_values(s, c, g).flip(all);
        p.changed = p.changed || nd >= 1;
        break;
      }
      case Layout::expanded:
        if (nd >= 1 && s[0] > 1) {
          Shape st = s;
          st[0] = 1;
          leaf = make_values(st, c, g);
          ex = true;
          p.changed = true;
        } else {
          leaf = make_values(s, c, g);
        }
        break;
    }
    p.leaves.push_back(leaf.detach().requires_grad_(c.differentiable));
    expand_it.push_back(ex);
  }
  std::vector<Shape> shapes = c.shapes;
  p.to_op_inputs = [expand_it, shapes](const Inputs& leaves) {
    Inputs xs;
    for (size_t i = 0; i < leaves.size(); ++i) xs.push_back(expand_it[i] ? leaves[i].expand(shapes[i]) : leaves[i]);
    return xs;
  };
  return p;
}

void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  std::vector<double> a = got.to_vector<double>(), b = want.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], tol * (1 + std::abs(b[i]))) << what << ": element " << i << " of " << shape_str(got.shape());
}

std::string describe(const OpCase& c) { return c.op + (c.variant.empty() ? "" : " (" + c.variant + ")"); }

void run_case(const OpCase& c) {
  const std::vector<Layout> layouts = c.layouts ? std::vector<Layout>{Layout::contiguous, Layout::transposed,
                                                                      Layout::sliced, Layout::flipped, Layout::expanded}
                                                : std::vector<Layout>{Layout::contiguous};
  Generator g(1234);
  for (Layout layout : layouts) {
    Prepared p = prepare(c, layout, g);
    if (layout != Layout::contiguous && !p.changed) continue;
    const std::string what = describe(c) + " with " + layout_name(layout) + " inputs";
    SCOPED_TRACE(what);
    const Inputs xs = p.to_op_inputs(p.leaves);
    Tensor y = c.fn(xs);
    ASSERT_TRUE(y.defined()) << what;
    if (c.ref) {
      NoGradGuard ng;
      Inputs plain;
      for (const Tensor& x : xs) plain.push_back(x.detach());
      expect_close(y, c.ref(plain), 1e-9, what + ": f64 value vs the reference");
      if (c.f32 && layout == Layout::contiguous) {
        Inputs x32;
        for (const Tensor& x : plain) x32.push_back(x.to(DType::f32));
        Tensor y32 = c.fn(x32);
        if (is_floating(y.dtype())) {
          EXPECT_EQ(y32.dtype(), DType::f32) << what;
        }
        expect_close(y32, c.ref(plain), 2e-5, what + ": f32 value vs the reference");
      }
    }
    if (c.differentiable) {
      auto f = [&](const Inputs& leaves) { return c.fn(p.to_op_inputs(leaves)); };
      GradcheckResult r = gradcheck(f, p.leaves, c.eps, c.atol, c.rtol);
      EXPECT_TRUE(r.ok) << what << ": " << r.message;
    } else if (is_floating(y.dtype())) {
      EXPECT_FALSE(y.requires_grad()) << what << " is not differentiable, so it must record no graph";
    }
  }
}

class OpHarness : public testing::TestWithParam<size_t> {};

TEST_P(OpHarness, ValueAndGradient) {
  static const std::vector<OpCase> cases = all_cases();
  run_case(cases[GetParam()]);
}

std::string case_test_name(const testing::TestParamInfo<size_t>& info) {
  static const std::vector<OpCase> cases = all_cases();
  std::string s = fmt::format("{}_{}", info.param, cases[info.param].op);
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(AllOps, OpHarness, testing::Range<size_t>(0, all_cases().size()), case_test_name);

// ============================ coverage ============================

// Functions that return tensors but need no row in the harness, and why.
const std::set<std::string>& not_in_harness() {
  static const std::set<std::string> s = {
      // factories make tensors from nothing: no input to differentiate (tests/test_tensor.cpp)
      "zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "arange", "rand", "randn", "randint",
      "from_vector", "scalar_tensor",
      // autograd handles, not ops (tests/test_autograd.cpp)
      "grad", "detach",
      // the raw, unchecked view for kernels: no autograd by design
      "as_strided",
  };
  return s;
}

// Names of functions declared as returning Tensor or std::vector<Tensor> in a header.
std::set<std::string> declared_ops(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::set<std::string> names;
  const std::regex decl(R"(^\s*(?:inline\s+)?(?:Tensor|std::vector<Tensor>)\s+([A-Za-z_]\w*)\s*\()");
  std::string line;
  std::smatch m;
  while (std::getline(in, line))
    if (std::regex_search(line, m, decl)) names.insert(m[1]);
  return names;
}

TEST(OpCoverage, EveryOpHasAHarnessRow) {
  std::set<std::string> covered;
  for (const OpCase& c : all_cases()) covered.insert(c.op);
  std::set<std::string> declared = declared_ops(std::string(COPPER_SOURCE_DIR) + "/tensor/ops.h");
  ASSERT_GT(declared.size(), 50u) << "the parser found too few ops in tensor/ops.h";
  for (const std::string& n : declared_ops(std::string(COPPER_SOURCE_DIR) + "/tensor/tensor.h")) declared.insert(n);
  for (const char* n : {"view", "permute", "flip", "clone"}) EXPECT_TRUE(declared.count(n)) << n;
  std::vector<std::string> missing;
  for (const std::string& n : declared)
    if (!covered.count(n) && !not_in_harness().count(n)) missing.push_back(n);
  EXPECT_TRUE(missing.empty()) << "ops without a row in the harness of tests/test_ops.cpp: "
                               << fmt::format("{}", fmt::join(missing, ", "))
                               << ". Add a row (value reference + gradcheck) or, if it is not an op, list it in "
                                  "not_in_harness() with the reason.";
  // and the exception list must not name things that no longer exist
  for (const std::string& n : not_in_harness()) EXPECT_TRUE(declared.count(n)) << n << " is listed but not declared";
}

}  // namespace

// ============================ hand-computed examples ============================
// Small literal cases a reader can check on paper.

namespace {
Tensor F(std::vector<double> v, Shape s = {}) { return from_vector(v, s); }
std::vector<double> V(const Tensor& t) { return t.to_vector<double>(); }
}  // namespace

TEST(OpValues, Elementwise) {
  Tensor a = F({1, 2, 3, 4}, {2, 2}), b = F({10, 20});
  EXPECT_EQ(V(a + b), (std::vector<double>{11, 22, 13, 24}));  // b is added to each row
  EXPECT_EQ(V(a - 1.0), (std::vector<double>{0, 1, 2, 3}));
  EXPECT_EQ(V(2.0 - a), (std::vector<double>{1, 0, -1, -2}));
  EXPECT_EQ(V(a * b), (std::vector<double>{10, 40, 30, 80}));
  EXPECT_EQ(V(12.0 / a), (std::vector<double>{12, 6, 4, 3}));
  EXPECT_EQ(V(maximum(a, F({2.5}))), (std::vector<double>{2.5, 2.5, 3, 4}));
  EXPECT_EQ(V(minimum(a, F({2.5}))), (std::vector<double>{1, 2, 2.5, 2.5}));
  EXPECT_EQ(V(eq(a, F({1, 3}))), (std::vector<double>{1, 0, 0, 0}));
  EXPECT_EQ(V(lt(a, F({2}))), (std::vector<double>{1, 0, 0, 0}));
  EXPECT_EQ(V(relu(F({-1, 0, 2}))), (std::vector<double>{0, 0, 2}));
  EXPECT_EQ(V(abs(F({-1.5, 0, 2}))), (std::vector<double>{1.5, 0, 2}));
  EXPECT_EQ(V(floor(F({-1.5, 0.5, 2}))), (std::vector<double>{-2, 0, 2}));
  EXPECT_EQ(V(ceil(F({-1.5, 0.5, 2}))), (std::vector<double>{-1, 1, 2}));
  EXPECT_EQ(V(clamp(F({-2, 0.3, 5}), -1.0, 1.0)), (std::vector<double>{-1, 0.3, 1}));
  EXPECT_NEAR(sigmoid(F({0})).item(), 0.5, 1e-15);
  EXPECT_NEAR(gelu(F({1})).item(), 0.8413447460685429, 1e-12);  // 1 * Phi(1)
  EXPECT_NEAR(silu(F({1})).item(), 1 / (1 + std::exp(-1.0)), 1e-15);
  EXPECT_EQ(V(pow(F({2, 3}), 2)), (std::vector<double>{4, 9}));
}

TEST(OpValues, ClampGradientIsOneAtTheBoundsInclusive) {
  // PyTorch's convention: x exactly at lo or hi passes the gradient.
  Tensor x = F({-1, -0.5, 0, 1, 2}).requires_grad_();
  sum(clamp(x, -1.0, 1.0)).backward();
  EXPECT_EQ(V(x.grad()), (std::vector<double>{1, 1, 1, 1, 0}));
}

TEST(OpValues, ReluAndAbsGradientAtZero) {
  Tensor x = F({-1, 0, 2}).requires_grad_();
  sum(relu(x) + abs(x)).backward();
  EXPECT_EQ(V(x.grad()), (std::vector<double>{-1, 0, 2}));  // relu' = 0, 0, 1; abs' = -1, 0, 1
}

TEST(OpValues, MaximumGradientGoesToAOnTies) {
  Tensor a = F({1, 2}).requires_grad_(), b = F({1, 3}).requires_grad_();
  sum(maximum(a, b)).backward();
  EXPECT_EQ(V(a.grad()), (std::vector<double>{1, 0}));
  EXPECT_EQ(V(b.grad()), (std::vector<double>{0, 1}));
}

TEST(OpValues, FloorAndCeilRecordNoGraph) {
  Tensor x = F({0.5, 1.5}).requires_grad_();
  EXPECT_FALSE(floor(x).requires_grad());
  EXPECT_FALSE(ceil(x).requires_grad());
}

TEST(OpValues, WhereAndMaskedFill) {
  Tensor c = F({1, 0, 1}), a = F({1, 2, 3}), b = F({-1, -2, -3});
  EXPECT_EQ(V(where(c, a, b)), (std::vector<double>{1, -2, 3}));
  EXPECT_EQ(V(masked_fill(a, F({0, 1, 0}), 9)), (std::vector<double>{1, 9, 3}));
}

TEST(OpValues, Reductions) {
  Tensor x = F({1, 5, 3, 4, 2, 6}, {2, 3});  // [[1,5,3],[4,2,6]]
  EXPECT_EQ(sum(x).item(), 21);
  EXPECT_EQ(V(sum(x, {0})), (std::vector<double>{5, 7, 9}));
  EXPECT_EQ(sum(x, {1}, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(V(sum(x, {-1})), (std::vector<double>{9, 12}));
  EXPECT_EQ(V(mean(x, {1})), (std::vector<double>{3, 4}));
  EXPECT_EQ(V(max(x, 1)), (std::vector<double>{5, 6}));
  EXPECT_EQ(V(min(x, 0)), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(max(x).item(), 6);
  EXPECT_EQ(max(x).dim(), 0);
  EXPECT_EQ(min(x).item(), 1);
  Tensor am = argmax(x, 1);
  EXPECT_EQ(am.dtype(), DType::i64);
  EXPECT_EQ(am.to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(argmax(x, 0, true).shape(), (Shape{1, 3}));
  // max's gradient goes to the first maximal element only
  Tensor t = F({3, 1, 3}).requires_grad_();
  max(t).backward();
  EXPECT_EQ(V(t.grad()), (std::vector<double>{1, 0, 0}));
}

TEST(OpValues, SoftmaxIsStableForLargeInputs) {
  Tensor x = F({1000, 1000, 0});
  std::vector<double> s = V(softmax(x));
  EXPECT_NEAR(s[0], 0.5, 1e-12);
  EXPECT_NEAR(s[1], 0.5, 1e-12);
  EXPECT_NEAR(s[2], 0, 1e-12);
  std::vector<double> l = V(log_softmax(x));
  EXPECT_NEAR(l[0], -std::log(2.0), 1e-12);
  EXPECT_NEAR(l[2], -1000 - std::log(2.0), 1e-9);
  // and in f32, where exp(1000) would be inf
  std::vector<float> l32 = log_softmax(x.to(DType::f32)).to_vector<float>();
  for (float v : l32) EXPECT_TRUE(std::isfinite(v));
  EXPECT_NEAR(l32[2], -1000.6931f, 1e-2);
  // the gradient of a large-input log_softmax is finite too
  Tensor xg = F({1000, -1000, 0}).requires_grad_();
  sum(mul(log_softmax(xg), F({1, 2, 3}))).backward();
  for (double v : V(xg.grad())) EXPECT_TRUE(std::isfinite(v));
}

TEST(OpValues, CrossEntropyIgnoreIndex) {
  // two rows; the second is ignored, so the loss is row 0's alone: lse([0, ln 3]) - 0 = ln 4
  Tensor logits = F({0, std::log(3.0), 5, 5}, {2, 2}).requires_grad_();
  Tensor loss = cross_entropy(logits, from_vector(std::vector<int64_t>{0, -100}));
  EXPECT_NEAR(loss.item(), std::log(4.0), 1e-12);
  loss.backward();
  // d/dlogits = softmax - onehot for the counted row, zero for the ignored one
  std::vector<double> g = V(logits.grad());
  EXPECT_NEAR(g[0], 0.25 - 1, 1e-12);
  EXPECT_NEAR(g[1], 0.75, 1e-12);
  EXPECT_EQ(g[2], 0);
  EXPECT_EQ(g[3], 0);
  // all ignored: 0, not NaN
  EXPECT_EQ(cross_entropy(logits, from_vector(std::vector<int64_t>{-100, -100})).item(), 0);
  Tensor none = F({1, 2, 3, 4}, {2, 2}).requires_grad_();  // and so is its gradient
  cross_entropy(none, from_vector(std::vector<int64_t>{-100, -100})).backward();
  EXPECT_EQ(V(none.grad()), (std::vector<double>{0, 0, 0, 0}));
  EXPECT_THROW(cross_entropy(logits, from_vector(std::vector<int64_t>{0, 2})), Error);  // 2 is not a class
}

TEST(OpValues, Matmul) {
  Tensor a = F({1, 2, 3, 4, 5, 6}, {2, 3}), b = F({1, 0, 0, 1, 1, 1}, {3, 2});
  EXPECT_EQ(V(matmul(a, b)), (std::vector<double>{4, 5, 10, 11}));
  EXPECT_EQ(matmul(F({1, 2, 3}), F({4, 5, 6})).item(), 32);  // two 1-d operands: a dot product
  EXPECT_EQ(matmul(F({1, 2, 3}), F({4, 5, 6})).dim(), 0);
  EXPECT_EQ(V(matmul(F({1, 1}), F({1, 2, 3, 4}, {2, 2}))), (std::vector<double>{4, 6}));
  EXPECT_EQ(V(linear(F({1, 2}), F({1, 1, 0, 1}, {2, 2}), F({10, 20}))), (std::vector<double>{13, 22}));
  // zero-size dims: empty in, empty (or zero) out
  EXPECT_EQ(matmul(zeros({0, 3}, DType::f64), zeros({3, 2}, DType::f64)).shape(), (Shape{0, 2}));
  EXPECT_EQ(V(matmul(ones({2, 0}, DType::f64), ones({0, 2}, DType::f64))), (std::vector<double>{0, 0, 0, 0}));
}

// Mixed precision (tensor/autocast.h): under the guard a product is the f64-exact product of
// the bf16-rounded operands up to f32 accumulation, and so is its backward, with the incoming
// gradient rounded too, even when the backward runs after the guard has ended.
TEST(OpValues, MatmulUnderAutocastIsTheBf16ProductSummedInF32) {
  Generator gen(11);
  auto round16 = [](const Tensor& t) { return t.detach().to(DType::bf16).to(DType::f64); };
  auto close = [](const Tensor& got, const Tensor& want, double tol) {
    const std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
    ASSERT_EQ(g.size(), w.size());
    double worst = 0, scale = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      worst = std::max(worst, std::abs(g[i] - w[i]));
      scale = std::max(scale, std::abs(w[i]));
    }
    EXPECT_LE(worst, tol * scale);
  };
  struct Case {
    Shape a, b;
    bool transpose_b;
  };
  for (const Case& c : {Case{{2, 5, 64}, {64, 3}, false}, Case{{2, 5, 64}, {2, 64, 3}, false},
                        Case{{6, 64}, {3, 64}, true}}) {
    Tensor a = randn(c.a, DType::f32, &gen).requires_grad_(), b0 = randn(c.b, DType::f32, &gen).requires_grad_();
    Tensor out;
    {
      AutocastGuard ag(DType::bf16);
      out = matmul(a, c.transpose_b ? b0.t() : b0);
    }
    EXPECT_EQ(out.dtype(), DType::f32);
    Tensor b = c.transpose_b ? b0.t() : b0;
    close(out, matmul(round16(a), round16(b)), 1e-6);
    EXPECT_GT(max(abs(sub(out.to(DType::f64), matmul(a.detach(), b.detach()).to(DType::f64)))).item(), 1e-4)
        << "the operands were not rounded";
    Tensor w = randn(out.shape(), DType::f32, &gen);
    sum(mul(out, w)).backward();  // after the guard: the product still differentiates as it was made
    EXPECT_EQ(a.grad().dtype(), DType::f32);
    close(a.grad(), sum_to(matmul(round16(w), round16(b).transpose(-2, -1)), a.shape()), 1e-6);
    Tensor gb = sum_to(matmul(round16(a).transpose(-2, -1), round16(w)), b.shape());
    close(b0.grad(), c.transpose_b ? gb.t() : gb, 1e-6);
  }
  // f64 operands are never rounded, and f16 is refused.
  Tensor x = randn({4, 9}, DType::f64, &gen), y = randn({9, 2}, DType::f64, &gen);
  Tensor exact = matmul(x, y);
  {
    AutocastGuard ag(DType::bf16);
    EXPECT_EQ(V(matmul(x, y)), V(exact));
  }
  EXPECT_THROW(set_autocast_dtype(DType::f16), Error);
  EXPECT_EQ(autocast_dtype(), DType::f32);
}

// Dropout inside the fused attention masks the elements the reference's dropout masks (one
// draw of the generator each, the same Philox stream over the probabilities), so values and
// gradients agree; and the generators move alike.
TEST(OpValues, CausalAttentionWithDropoutIsTheReference) {
  // Dh 32: the f32 kernel's keys and values turned in 16 × 16 blocks (transpose16), 75 keys
  // leaving a short run of rows. 64 queries over 70 keys: one full block whose last row sees
  // every key, a number that is not a multiple of the sixteen lanes (the masked loads).
  for (DType t : {DType::f32, DType::f64})
  for (auto [Tq, Tk, Dh] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{70, 75, 8}, {70, 75, 32}, {64, 70, 8}}) {
    Generator data(3);
    Tensor q = randn({2, 3, Tq, Dh}, t, &data), k = randn({2, 3, Tk, Dh}, t, &data), v = randn({2, 3, Tk, Dh}, t, &data);
    Tensor dy = randn({2, 3, Tq, Dh}, t, &data);
    auto run = [&](bool fused) {
      Tensor qg = q.clone().requires_grad_(), kg = k.clone().requires_grad_(), vg = v.clone().requires_grad_();
      Generator g(9);
      Tensor y = fused ? causal_attention(qg, kg, vg, 0.3, 0.25, &g) : causal_attention_reference(qg, kg, vg, 0.3, 0.25, &g);
      sum(mul(y, dy)).backward();
      return std::vector<Tensor>{y, qg.grad(), kg.grad(), vg.grad(), from_vector(std::vector<int64_t>{int64_t(g.next_u64())})};
    };
    const auto fused = run(true), ref = run(false);
    const double tol = t == DType::f64 ? 1e-12 : 2e-5;
    for (size_t i = 0; i < 4; ++i) {
      const std::vector<double> a = V(fused[i]), b = V(ref[i]);
      double worst = 0, scale = 0;
      for (size_t j = 0; j < a.size(); ++j) {
        worst = std::max(worst, std::abs(a[j] - b[j]));
        scale = std::max(scale, std::abs(b[j]));
      }
      EXPECT_LE(worst, tol * scale) << dtype_name(t) << " Tq " << Tq << " Tk " << Tk << " Dh " << Dh << " output " << i;
    }
    EXPECT_EQ(fused[4].item(), ref[4].item()) << "the generators moved differently";
  }
}

// Heads viewed out of one (B, T, 3·H·Dh) product, as nn/attention.cpp passes them: the kernel
// reads q, k, v and dy in place, writes y and the gradients in the (B, T, H, Dh) layout (so
// y merges back into (B, T, H·Dh) as a view), and agrees with the reference on copies.
TEST(OpValues, CausalAttentionReadsHeadViewsInPlace) {
  const int64_t B = 2, T = 70, H = 3, Dh = 8;
  for (DType t : {DType::f32, DType::f64})
    for (bool cope : {false, true}) {
      Generator data(11);
      Tensor x = randn({B, T, 3 * H * Dh}, t, &data), dy = randn({B, T, H * Dh}, t, &data);
      Tensor e = randn({5, Dh}, t, &data);
      auto run = [&](bool views) {
        Tensor xg = x.clone().requires_grad_(), eg = e.clone().requires_grad_();
        auto head = [&](int64_t part) {  // (B, H, T, Dh), row stride 3·H·Dh
          Tensor h = xg.narrow(2, part * H * Dh, H * Dh).view({B, T, H, Dh}).transpose(1, 2);
          return views ? h : h.contiguous();
        };
        Tensor q = head(0), k = head(1), v = head(2);
        Tensor y = cope ? causal_cope_attention(q, k, v, eg, 0.35, false, 0.0) : causal_attention(q, k, v, 0.35, 0.0);
        Tensor joined = y.transpose(1, 2).reshape({B, T, H * Dh});
        if (views) {
          EXPECT_TRUE(y.transpose(1, 2).is_contiguous()) << "y is not laid out as (B, T, H, Dh)";
          EXPECT_TRUE(joined.same_storage(y)) << "joining the heads copied";
        }
        sum(mul(joined, dy)).backward();
        return std::vector<Tensor>{joined, xg.grad(), cope ? eg.grad() : zeros({1}, t)};
      };
      const auto in_place = run(true), copied = run(false);
      const double tol = t == DType::f64 ? 1e-12 : 2e-5;
      for (size_t i = 0; i < in_place.size(); ++i) {
        const std::vector<double> a = V(in_place[i]), b = V(copied[i]);
        double worst = 0, scale = 1e-30;
        for (size_t j = 0; j < a.size(); ++j) {
          worst = std::max(worst, std::abs(a[j] - b[j]));
          scale = std::max(scale, std::abs(b[j]));
        }
        EXPECT_LE(worst, tol * scale) << dtype_name(t) << (cope ? " cope" : "") << ": output " << i;
      }
    }
}

namespace {

// f throws copper::Error whose message names op and contains text.
void expect_error(const std::function<void()>& f, const std::string& op, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << "no error; expected [" << op << "] ... " << text;
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("[" + op + "]"), std::string::npos) << m;
    EXPECT_NE(m.find(text), std::string::npos) << m;
  }
}

}  // namespace

// linear_cross_entropy against the composition it replaces, in f32 on sizes where the CPU's
// row kernels take their vector paths: the loss with and without grad, a backward that does
// not start at the loss (g != 1), and the messages for bad targets.
TEST(OpValues, LinearCrossEntropyMatchesTheComposition) {
  Generator gen(7);
  const int64_t N = 37, D = 24, V = 300;
  const Tensor x = randn({N, D}, DType::f32, &gen), w = randn({V, D}, DType::f32, &gen), b = randn({V}, DType::f32, &gen);
  Tensor t = randint(0, V, {N}, DType::i64, &gen);
  t.data<int64_t>()[5] = -100;
  auto leaves = [&] {
    return std::vector<Tensor>{x.detach().requires_grad_(), w.detach().requires_grad_(), b.detach().requires_grad_()};
  };
  std::vector<Tensor> want = leaves(), got = leaves();
  Tensor lw = cross_entropy(linear(want[0], want[1], want[2]), t);
  Tensor lg = linear_cross_entropy(got[0], got[1], got[2], t, -100, 8);
  EXPECT_NEAR(lg.item(), lw.item(), 1e-5);
  mul(lw, 3.0).backward();
  mul(lg, 3.0).backward();
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_LT(max(abs(sub(got[i].grad(), want[i].grad()))).item(), 1e-4) << "input " << i;
  {
    NoGradGuard ng;  // chunk by chunk, one chunk's buffer
    EXPECT_NEAR(linear_cross_entropy(x, w, b, t, -100, 8).item(), lw.item(), 1e-5);
    EXPECT_NEAR(linear_cross_entropy(x, w, b, t).item(), lw.item(), 1e-5);
  }
  // Rows enough for the CPU's packed product (packed_gemm, the bias added as it writes the
  // logits), with a bias and without, the whole batch in one product as under grad.
  for (const bool with_bias : {true, false}) {
    const int64_t M = 300, E = 40, C = 130;
    const Tensor xm = randn({M, E}, DType::f32, &gen), wm = randn({C, E}, DType::f32, &gen);
    const Tensor bm = with_bias ? randn({C}, DType::f32, &gen) : Tensor();
    Tensor tm = randint(0, C, {M}, DType::i64, &gen);
    tm.data<int64_t>()[200] = -100;
    auto run = [&](bool fused) {
      std::vector<Tensor> p{xm.detach().requires_grad_(), wm.detach().requires_grad_(),
                            with_bias ? bm.detach().requires_grad_() : Tensor()};
      Tensor l = fused ? linear_cross_entropy(p[0], p[1], p[2], tm) : cross_entropy(linear(p[0], p[1], p[2]), tm);
      mul(l, 2.0).backward();
      p.push_back(l);
      return p;
    };
    const auto ref = run(false), got = run(true);
    EXPECT_NEAR(got[3].item(), ref[3].item(), 1e-5) << "bias " << with_bias;
    for (size_t i = 0; i < (with_bias ? 3u : 2u); ++i)
      EXPECT_LT(max(abs(sub(got[i].grad(), ref[i].grad()))).item(), 1e-5) << "input " << i << ", bias " << with_bias;
  }
  const std::string op = "linear_cross_entropy";
  expect_error([&] { linear_cross_entropy(x, w, b, t.narrow(0, 0, 3)); }, op, "3 targets for 37 rows");
  Tensor bad = t.clone();
  bad.data<int64_t>()[2] = V;
  expect_error([&] { linear_cross_entropy(x, w, b, bad); }, op, "target 300 at position 2 is out of range [0, 300)");
  expect_error([&] { linear_cross_entropy(x, w.narrow(1, 0, 5), b, t); }, op, "does not match weight");
}

// Under an AutocastGuard(bf16) linear_cross_entropy rounds as the composition does (the
// operands of every product, forward and backward, and nothing else): the same loss and
// gradients, at an inner size that the bf16 product reads in place (even) and one it packs
// (odd), with a bias and without; and not the f32 values (the rounding happened).
TEST(OpValues, LinearCrossEntropyUnderAutocastMatchesTheComposition) {
  Generator gen(19);
  for (const int64_t E : {40, 41})
    for (const bool with_bias : {true, false}) {
      const int64_t M = 300, C = 130;
      const Tensor xm = randn({M, E}, DType::f32, &gen), wm = randn({C, E}, DType::f32, &gen);
      const Tensor bm = with_bias ? randn({C}, DType::f32, &gen) : Tensor();
      Tensor tm = randint(0, C, {M}, DType::i64, &gen);
      tm.data<int64_t>()[100] = -100;
      auto run = [&](bool fused, bool mixed) {
        std::vector<Tensor> p{xm.detach().requires_grad_(), wm.detach().requires_grad_(),
                              with_bias ? bm.detach().requires_grad_() : Tensor()};
        Tensor l;
        {
          AutocastGuard ag(mixed ? DType::bf16 : DType::f32);
          l = fused ? linear_cross_entropy(p[0], p[1], p[2], tm) : cross_entropy(linear(p[0], p[1], p[2]), tm);
          mul(l, 2.0).backward();
        }
        p.push_back(l);
        return p;
      };
      const auto ref = run(false, true), got = run(true, true), f32 = run(true, false);
      const std::string where = fmt::format("inner {}, bias {}", E, with_bias);
      EXPECT_NEAR(got[3].item(), ref[3].item(), 1e-5) << where;
      EXPECT_GT(std::abs(got[3].item() - f32[3].item()), 1e-6) << where << ": the operands were not rounded";
      for (size_t i = 0; i < (with_bias ? 3u : 2u); ++i) {
        EXPECT_EQ(got[i].grad().dtype(), DType::f32);
        EXPECT_LT(max(abs(sub(got[i].grad(), ref[i].grad()))).item(), 1e-5) << "input " << i << ", " << where;
      }
    }
}

// Under an AutocastGuard(bf16) the fused attention rounds its products' operands as the
// composed ops do (matmul rounds q, k, v, the probabilities and the gradients it is given):
// the fused kernel and the composition under the guard agree to a tenth of what separates
// either from the f32 kernel (the largest gaps measured: 9e-4 of the largest value, against
// 4e-3 and more). What still differs: the exps (the kernel's own against
// causal_softmax's) can round a probability to the neighbouring bf16 value. CoPE's z = q·eᵀ
// stays f32 inside the kernel, where causal_cope_attention_reference would round it: its
// composition here takes z in f32 too. Heads are views of one (B, T, 3·H·Dh) product, as
// nn/attention.cpp passes them; with dropout, and with queries over more keys (a KV cache's
// shape).
TEST(OpValues, FusedAttentionUnderAutocastRoundsAsTheComposition) {
  const int64_t B = 2, H = 3;
  for (const std::string kind : {"plain", "rope", "cope"})
    for (auto [Tq, Tk, p, Dh] : std::vector<std::tuple<int64_t, int64_t, double, int64_t>>{
             {70, 70, 0.0, 16}, {70, 70, 0.25, 32}, {5, 75, 0.2, 32}, {130, 130, 0.0, 64}}) {
      Generator data(29);
      Tensor x = randn({B, Tk, 3 * H * Dh}, DType::f32, &data), dy = randn({B, Tq, H * Dh}, DType::f32, &data);
      Tensor e = mul(randn({9, Dh}, DType::f32, &data), 0.3);
      const auto [cs, sn] = rope_like_tables(Tk, Dh / 2, DType::f32);
      auto run = [&](bool fused, DType products) {
        Tensor xg = x.clone().requires_grad_();
        auto head = [&](int64_t part, int64_t rows) {  // (B, H, rows, Dh): the last `rows` positions
          return xg.narrow(2, part * H * Dh, H * Dh).narrow(1, Tk - rows, rows).view({B, rows, H, Dh}).transpose(1, 2);
        };
        Tensor q = head(0, Tq), k = head(1, Tk), v = head(2, Tk);
        Generator g(9);
        AutocastGuard guard(products);
        Tensor y;
        if (kind == "plain")
          y = fused ? causal_attention(q, k, v, 0.35, p, &g) : causal_attention_reference(q, k, v, 0.35, p, &g);
        else if (kind == "rope")
          y = fused ? causal_rotary_attention(q, k, v, cs, sn, 0.35, p, &g)
                    : causal_rotary_attention_reference(q, k, v, cs, sn, 0.35, p, &g);
        else if (fused)
          y = causal_cope_attention(q, k, v, e, 0.35, false, p, &g);
        else  // causal_cope_attention_reference with z = q·eᵀ in f32, as the kernel keeps it
          y = [&] {
            Tensor z;
            {
              AutocastGuard f32(DType::f32);
              z = matmul(q, e.t());
            }
            Tensor s = mul(matmul(q, k.transpose(-2, -1)), 0.35);
            Tensor att = causal_softmax(add(s, cope_positions(s, z, Tk - Tq).term));
            if (p > 0) att = dropout(att, p, true, &g);
            return matmul(att, v);
          }();
        sum(mul(y.transpose(1, 2).reshape({B, Tq, H * Dh}), dy)).backward();
        return std::vector<Tensor>{y, xg.grad()};
      };
      const auto fused = run(true, DType::bf16), ref = run(false, DType::bf16), f32 = run(true, DType::f32);
      for (size_t i = 0; i < 2; ++i) {
        const double scale = max(abs(ref[i])).item();
        const double gap = max(abs(sub(fused[i], ref[i]))).item() / scale;
        const double unrounded = max(abs(sub(f32[i], ref[i]))).item() / scale;
        const std::string where = fmt::format("{} Tq {} Tk {} p {} Dh {}: {}", kind, Tq, Tk, p, Dh, i ? "dx" : "y");
        EXPECT_GT(unrounded, 1e-3) << where << ": bf16 rounding should show";
        EXPECT_LT(gap, std::min(2e-3, 0.1 * unrounded)) << where << ": unrounded " << unrounded;
      }
    }
}

// RoPE's rotation inside the fused attention, on heads viewed out of one (B, T, 3·H·Dh)
// product as nn/attention.cpp passes them, is the reference on copies (rotate_pairs, then the
// composed attention): values, the product's gradient and the generator's draw, with dropout
// and with queries over more keys (a KV cache's shape). The kernel turns neither q nor k in
// place, and its gradients land side by side in one buffer.
TEST(OpValues, CausalRotaryAttentionIsTheReference) {
  const int64_t B = 2, H = 3;
  for (DType t : {DType::f32, DType::f64})
    for (auto [Tq, Tk, p, Dh] : std::vector<std::tuple<int64_t, int64_t, double, int64_t>>{
             {70, 70, 0.0, 8}, {70, 70, 0.25, 8}, {5, 75, 0.2, 8}, {70, 70, 0.0, 32}, {5, 75, 0.2, 32}}) {
      Generator data(13);
      Tensor x = randn({B, Tk, 3 * H * Dh}, t, &data), dy = randn({B, Tq, H * Dh}, t, &data);
      const auto [cs, sn] = rope_like_tables(Tk, Dh / 2, t);
      auto run = [&](bool fused) {
        Tensor xg = x.clone().requires_grad_();
        auto head = [&](int64_t part, int64_t rows) {  // (B, H, rows, Dh): the last `rows` positions
          Tensor h = xg.narrow(2, part * H * Dh, H * Dh).narrow(1, Tk - rows, rows).view({B, rows, H, Dh});
          return fused ? h.transpose(1, 2) : h.transpose(1, 2).contiguous();
        };
        Tensor q = head(0, Tq), k = head(1, Tk), v = head(2, Tk);
        const std::vector<double> q_before = V(q);
        Generator g(9);
        Tensor y = fused ? causal_rotary_attention(q, k, v, cs, sn, 0.35, p, &g)
                         : causal_rotary_attention_reference(q, k, v, cs, sn, 0.35, p, &g);
        EXPECT_EQ(V(q), q_before) << "q was turned in place";
        sum(mul(y.transpose(1, 2).reshape({B, Tq, H * Dh}), dy)).backward();
        return std::vector<Tensor>{y, xg.grad(), from_vector(std::vector<int64_t>{int64_t(g.next_u64())})};
      };
      const auto fused = run(true), ref = run(false);
      const double tol = t == DType::f64 ? 1e-12 : 2e-5;
      for (size_t i = 0; i < 2; ++i) {
        const std::vector<double> a = V(fused[i]), b = V(ref[i]);
        double worst = 0, scale = 1e-30;
        for (size_t j = 0; j < a.size(); ++j) {
          worst = std::max(worst, std::abs(a[j] - b[j]));
          scale = std::max(scale, std::abs(b[j]));
        }
        EXPECT_LE(worst, tol * scale) << dtype_name(t) << " Tq " << Tq << " p " << p << " Dh " << Dh << ": output " << i;
      }
      EXPECT_EQ(fused[2].item(), ref[2].item()) << "the generators moved differently";
    }
}

// The rotation does not combine with CoPE's term in one kernel call, and bad tables are named.
TEST(OpErrors, CausalRotaryAttentionChecksItsTables) {
  Tensor q = randn({1, 2, 6, 4}), k = randn({1, 2, 6, 4}), v = randn({1, 2, 6, 4});
  const auto [cs, sn] = rope_like_tables(6, 2, DType::f32);
  expect_error([&] { causal_rotary_attention(q, k, v, cs.narrow(0, 0, 5), sn.narrow(0, 0, 5), 0.5); },
               "causal_rotary_attention", "must be (6, 2)");
  expect_error([&] { causal_rotary_attention(q, k, v, cs.to(DType::f64), sn.to(DType::f64), 0.5); },
               "causal_rotary_attention", "");
  Tensor odd = randn({1, 2, 6, 3});
  expect_error([&] { causal_rotary_attention(odd, odd, odd, cs, sn, 0.5); }, "causal_rotary_attention", "odd");
  expect_error([&] { causal_rotary_attention(q, randn({1, 2, 5, 4}), v, cs, sn, 0.5); }, "causal_rotary_attention",
               "must have one shape");
  expect_error([&] { causal_rotary_attention(q, k, v, cs.clone().requires_grad_(), sn, 0.5); },
               "causal_rotary_attention", "take no gradient");
  Backend& be = backend_of(q);
  Tensor out = Tensor::empty(q.shape()), lse = Tensor::empty({1, 2, 6});
  expect_error([&] {
    be.attention(q, k, v, out, lse, 2, 6, 6, 4, 0.5, 0.0, 0, AttentionCope{Tensor(), Tensor(), false, randn({3, 4})},
                 AttentionRotation{cs, sn}, DType::f32);
  }, "attention", "do not combine");
}

// The kernel multiplies in its operands' dtype, or in bf16 for f32 operands (under autocast).
TEST(OpErrors, FusedAttentionChecksTheProductsDType) {
  Tensor q = randn({1, 2, 6, 4}), k = randn({1, 2, 6, 4}), v = randn({1, 2, 6, 4});
  Tensor out = Tensor::empty(q.shape()), lse = Tensor::empty({1, 2, 6});
  expect_error([&] {
    backend_of(q).attention(q, k, v, out, lse, 2, 6, 6, 4, 0.5, 0.0, 0, AttentionCope{}, AttentionRotation{},
                            DType::f64);
  }, "attention", "products in f64 for f32 operands");
}

namespace {

// causal_cope_attention in dtype t against its composed reference in f64 (scale 0.35, dropout
// p from one seed): the output and the gradients of q, k, v and e for the loss sum(y dy), each
// within tol (1e-12 in f64, 2e-5 in f32) of the largest reference value. The reference runs
// in f64 for both: in f32 its own rounding (positions from a float cumsum) is several times
// the kernel's, so the f32 kernel is held to the f64 values.
void expect_cope_attention_is_the_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& e,
                                            const Tensor& dy, DType t, bool official, double p,
                                            const std::string& label) {
  auto run = [&](bool fused) {
    const DType rt = fused ? t : DType::f64;
    auto leaf = [rt](const Tensor& x) { return x.to(rt).detach().clone().requires_grad_(); };
    Tensor qg = leaf(q), kg = leaf(k), vg = leaf(v), eg = leaf(e);
    Generator g(9);
    Tensor y = fused ? causal_cope_attention(qg, kg, vg, eg, 0.35, official, p, &g)
                     : causal_cope_attention_reference(qg, kg, vg, eg, 0.35, official, p, &g);
    sum(mul(y, dy.to(rt))).backward();
    return std::vector<Tensor>{y, qg.grad(), kg.grad(), vg.grad(), eg.grad()};
  };
  const auto fused = run(true), ref = run(false);
  const double tol = t == DType::f64 ? 1e-12 : 2e-5;
  for (size_t i = 0; i < fused.size(); ++i) {
    const std::vector<double> a = V(fused[i]), b = V(ref[i]);
    double worst = 0, scale = 0;
    for (size_t j = 0; j < a.size(); ++j) {
      worst = std::max(worst, std::abs(a[j] - b[j]));
      scale = std::max(scale, std::abs(b[j]));
    }
    EXPECT_LE(worst, tol * scale) << dtype_name(t) << " " << label << ": output " << i;
  }
}

}  // namespace

// The fused CoPE attention is its composed reference (matmul, cope_positions, causal_softmax,
// dropout, matmul): values and all four gradients, with dropout, both scalings, queries over
// more keys (a KV cache's shape), and a clamp that bites (npos 6) or does not (npos 200).
TEST(OpValues, CausalCopeAttentionIsTheReference) {
  for (DType t : {DType::f32, DType::f64})
    for (auto [tq, npos, official, Dh] : std::vector<std::tuple<int64_t, int64_t, bool, int64_t>>{
             {70, 6, false, 8}, {130, 200, false, 8}, {70, 200, true, 8}, {1, 6, true, 8},
             // counts that reach the cap a few chunks down CopeTerm's walk (16 or kCopeChunk 32 keys)
             {130, 40, false, 8}, {130, 60, true, 8},
             // the f32 kernel's keys, values and table turned in 16 × 16 blocks (transpose16)
             {130, 40, false, 32}}) {
      Generator data(5);
      const int64_t tk = 130;
      // q scaled so that the logits have Dh 8's spread whatever Dh (f32's error grows with them)
      Tensor q = mul(randn({2, 3, tq, Dh}, t, &data), std::sqrt(8.0 / double(Dh))), k = randn({2, 3, tk, Dh}, t, &data);
      Tensor v = randn({2, 3, tk, Dh}, t, &data), e = randn({npos, Dh}, t, &data);
      Tensor dy = randn({2, 3, tq, Dh}, t, &data);
      expect_cope_attention_is_the_reference(
          q, k, v, e, dy, t, official, 0.2,
          fmt::format("tq {} npos {} official {} Dh {}", tq, npos, official, Dh));
    }
}

// Gates at 1 (every q·k far above 0) make each count the number of keys from the query, so a
// row's last keys read the table's slots up to the query's own index + 1: the last slots a
// block's products of z reach (CopeTerm::reachable_slots) with a table longer than the rows.
TEST(OpValues, CausalCopeAttentionWithGatesAtOneReadsTheLastReachableSlots) {
  for (DType t : {DType::f32, DType::f64}) {
    Generator data(6);
    const int64_t tq = 130, tk = 130, Dh = 8, npos = 200;
    Tensor q = add(mul(randn({1, 2, tq, Dh}, t, &data), 0.05), 3.0), k = add(mul(randn({1, 2, tk, Dh}, t, &data), 0.05), 3.0);
    Tensor v = randn({1, 2, tk, Dh}, t, &data), e = randn({npos, Dh}, t, &data), dy = randn({1, 2, tq, Dh}, t, &data);
    expect_cope_attention_is_the_reference(q, k, v, e, dy, t, false, 0.0, "gates at 1");
  }
}

// A NaN in a query (a diverging run) stays in its own rows and never sends a table index out
// of range: a NaN count is capped (capped_count), in the fused kernel's walks (the vector ones
// with a table of up to 64 entries, the plain one beyond) and in cope_positions, forward and
// backward. Under AddressSanitizer this is where an out-of-range index would show.
TEST(OpValues, CopeWithANaNQueryStaysInItsRows) {
  for (DType t : {DType::f32, DType::f64})
    for (int64_t npos : {6, 64, 70})
      for (bool official : {false, true}) {
        Generator data(31);
        std::vector<double> qv = randn({2, 90, 8}, DType::f64, &data).to_vector<double>();
        qv[size_t(50 * 8 + 3)] = std::nan("");  // batch·head 0, query 50
        Tensor q = from_vector(qv, {2, 90, 8}).to(t).requires_grad_();
        Tensor k = randn({2, 90, 8}, t, &data).requires_grad_(), v = randn({2, 90, 8}, t, &data).requires_grad_();
        Tensor e = randn({npos, 8}, t, &data).requires_grad_();
        for (bool fused : {true, false}) {
          Tensor y = fused ? causal_cope_attention(q, k, v, e, 0.35, official)
                           : causal_cope_attention_reference(q, k, v, e, 0.35, official);
          sum(y).backward();
          const std::vector<double> out = y.to_vector<double>();
          for (int64_t b = 0; b < 2; ++b)
            for (int64_t i = 0; i < 90; ++i)
              for (int64_t c = 0; c < 8; ++c) {
                const double x = out[size_t((b * 90 + i) * 8 + c)];
                EXPECT_EQ(std::isnan(x), b == 0 && i == 50) << dtype_name(t) << " npos " << npos << " fused " << fused
                                                             << " batch·head " << b << " query " << i;
              }
          q.zero_grad();
          k.zero_grad();
          v.zero_grad();
          e.zero_grad();
        }
      }
}

// The CPU kernel takes CoPE's z rows or the table e (what the op passes it): with e it
// computes z = q·eᵀ block by block, adds dz·e to dq and writes de = Σ qᵀ dz. Both ways agree
// (the z way is what a backend that cannot read the table is given, and what the GPU tests
// compare with).
TEST(OpValues, CopeKernelReadsZOrTheTable) {
  Backend& be = backend_for(kCPU);
  for (DType t : {DType::f32, DType::f64}) {
    const int64_t bh = 3, Tq = 70, Tk = 90, Dh = 8, npos = 12;
    Generator data(21);
    Tensor q = randn({bh, Tq, Dh}, t, &data), k = randn({bh, Tk, Dh}, t, &data), v = randn({bh, Tk, Dh}, t, &data);
    Tensor e = randn({npos, Dh}, t, &data), dout = randn({bh, Tq, Dh}, t, &data);
    Tensor z = matmul(q, e.t()).contiguous();
    auto empty = [&](Shape s) { return Tensor::empty(std::move(s), t); };
    Tensor out_z = empty({bh, Tq, Dh}), lse_z = empty({bh, Tq}), out_e = empty({bh, Tq, Dh}), lse_e = empty({bh, Tq});
    be.attention(q, k, v, out_z, lse_z, bh, Tq, Tk, Dh, 0.35, 0.0, 0, AttentionCope{z, Tensor(), false},
                 AttentionRotation{}, t);
    be.attention(q, k, v, out_e, lse_e, bh, Tq, Tk, Dh, 0.35, 0.0, 0, AttentionCope{Tensor(), Tensor(), false, e},
                 AttentionRotation{}, t);
    Tensor dq_z = empty({bh, Tq, Dh}), dk_z = empty({bh, Tk, Dh}), dv_z = empty({bh, Tk, Dh}), dz = empty({bh, Tq, npos});
    Tensor dq_e = empty({bh, Tq, Dh}), dk_e = empty({bh, Tk, Dh}), dv_e = empty({bh, Tk, Dh}), de = empty({npos, Dh});
    be.attention_backward(q, k, v, out_z, lse_z, dout, dq_z, dk_z, dv_z, bh, Tq, Tk, Dh, 0.35, 0.0, 0,
                          AttentionCope{z, dz, false}, AttentionRotation{}, t);
    be.attention_backward(q, k, v, out_e, lse_e, dout, dq_e, dk_e, dv_e, bh, Tq, Tk, Dh, 0.35, 0.0, 0,
                          AttentionCope{Tensor(), Tensor(), false, e, de}, AttentionRotation{}, t);
    const std::vector<std::pair<Tensor, Tensor>> pairs{
        {out_e, out_z}, {lse_e, lse_z}, {dk_e, dk_z}, {dv_e, dv_z},
        {dq_e, add(dq_z, matmul(dz, e))},                                   // dq + dz e
        {de, sum(matmul(q.transpose(-2, -1), dz), {0}).t().contiguous()}};  // Σ_b q_bᵀ dz_b, as (npos, Dh)
    const double tol = t == DType::f64 ? 1e-12 : 2e-5;
    for (size_t i = 0; i < pairs.size(); ++i) {
      const std::vector<double> a = V(pairs[i].first), b = V(pairs[i].second);
      ASSERT_EQ(a.size(), b.size()) << i;
      double worst = 0, scale = 1e-30;
      for (size_t j = 0; j < a.size(); ++j) {
        worst = std::max(worst, std::abs(a[j] - b[j]));
        scale = std::max(scale, std::abs(b[j]));
      }
      EXPECT_LE(worst, tol * scale) << dtype_name(t) << ": pair " << i;
    }
  }
}

// Without a graph (evaluation) the op gives the kernel no z buffer to fill, and each block's
// z stays in its scratch: the output is the same to the bit as when z is kept for a backward.
TEST(OpValues, CausalCopeAttentionWithoutAGraphKeepsNoZ) {
  Generator data(23);
  Tensor q = randn({2, 3, 40, 8}, DType::f32, &data).requires_grad_();
  Tensor k = randn({2, 3, 40, 8}, DType::f32, &data), v = randn({2, 3, 40, 8}, DType::f32, &data);
  Tensor e = randn({20, 8}, DType::f32, &data).requires_grad_();
  const Tensor kept = causal_cope_attention(q, k, v, e, 0.35, false);
  ASSERT_TRUE(kept.requires_grad());
  NoGradGuard no_grad;
  const Tensor scratch = causal_cope_attention(q, k, v, e, 0.35, false);
  EXPECT_FALSE(scratch.requires_grad());
  EXPECT_EQ(V(scratch), V(kept));
}

TEST(OpValues, JoinAndSplit) {
  Tensor a = F({1, 2}), b = F({3});
  EXPECT_EQ(V(cat({a, b})), (std::vector<double>{1, 2, 3}));
  Tensor s = stack({a, F({3, 4})}, 1);  // [[1,3],[2,4]]
  EXPECT_EQ(s.shape(), (Shape{2, 2}));
  EXPECT_EQ(V(s), (std::vector<double>{1, 3, 2, 4}));
  std::vector<Tensor> p = split(F({1, 2, 3, 4, 5}), int64_t(2));
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(V(p[2]), (std::vector<double>{5}));
  EXPECT_TRUE(p[1].same_storage(p[0]));  // pieces are views
  std::vector<Tensor> c = chunk(F({1, 2, 3, 4, 5, 6}), 4);  // 6 in chunks of ceil(6/4) = 2: three pieces
  EXPECT_EQ(c.size(), 3u);
}

TEST(OpValues, Indexing) {
  Tensor w = F({0, 1, 10, 11, 20, 21}, {3, 2});
  Tensor ids = from_vector(std::vector<int64_t>{2, 0, 2}, {3});
  EXPECT_EQ(V(index_select(w, 0, ids)), (std::vector<double>{20, 21, 0, 1, 20, 21}));
  Tensor e = embedding(w, from_vector(std::vector<int64_t>{1, 1}, {1, 2}));
  EXPECT_EQ(e.shape(), (Shape{1, 2, 2}));
  // repeated ids sum their gradients
  Tensor wg = w.detach().requires_grad_();
  sum(embedding(wg, from_vector(std::vector<int64_t>{2, 0, 2}))).backward();
  EXPECT_EQ(V(wg.grad()), (std::vector<double>{1, 1, 0, 0, 2, 2}));
  // gather: out[i][j] = x[i][index[i][j]]
  Tensor x = F({1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(V(gather(x, 1, from_vector(std::vector<int64_t>{1, 1, 0, 1}, {2, 2}))), (std::vector<double>{2, 2, 3, 4}));
  // scatter_add: out[index[i][j]][j] += src[i][j]
  Tensor out = scatter_add(zeros({2, 2}, DType::f64), 0, from_vector(std::vector<int64_t>{1, 1, 1, 0}, {2, 2}),
                           F({1, 2, 3, 4}, {2, 2}));
  EXPECT_EQ(V(out), (std::vector<double>{0, 4, 4, 2}));
}

TEST(OpValues, CumsumBothWays) {
  Tensor x = F({1, 2, 3, 4});
  EXPECT_EQ(V(cumsum(x, 0)), (std::vector<double>{1, 3, 6, 10}));
  EXPECT_EQ(V(cumsum(x, 0, true)), (std::vector<double>{10, 9, 7, 4}));
  // the gradient of a prefix sum is a suffix sum, and the other way round
  Tensor xg = x.detach().requires_grad_();
  cumsum(xg, 0).backward(F({1, 1, 1, 1}));
  EXPECT_EQ(V(xg.grad()), (std::vector<double>{4, 3, 2, 1}));
  xg.zero_grad();
  cumsum(xg, 0, true).backward(F({1, 1, 1, 1}));
  EXPECT_EQ(V(xg.grad()), (std::vector<double>{1, 2, 3, 4}));
}

TEST(OpValues, Norms) {
  std::vector<double> y = V(layer_norm(F({1, 3}), Tensor(), Tensor(), 0));
  EXPECT_NEAR(y[0], -1, 1e-12);
  EXPECT_NEAR(y[1], 1, 1e-12);
  y = V(layer_norm(F({1, 3}), F({2, 3}), F({10, 20}), 0));
  EXPECT_NEAR(y[0], 8, 1e-12);
  EXPECT_NEAR(y[1], 23, 1e-12);
  y = V(rms_norm(F({3, 4}), F({1, 2}), 0));  // rms = sqrt(12.5)
  EXPECT_NEAR(y[0], 3 / std::sqrt(12.5), 1e-12);
  EXPECT_NEAR(y[1], 8 / std::sqrt(12.5), 1e-12);
}

TEST(OpValues, DropoutScaleMaskAndSeed) {
  const double p = 0.25;
  Tensor x = ones({100000}, DType::f64).requires_grad_();
  Generator g1(42), g2(42);
  Tensor y = dropout(x, p, true, &g1);
  std::vector<double> v = V(y);
  int64_t kept = 0;
  for (double e : v) {
    ASSERT_TRUE(e == 0 || std::abs(e - 1 / (1 - p)) < 1e-12) << e;  // zeroed or scaled by 1/(1-p)
    kept += e != 0;
  }
  EXPECT_NEAR(double(kept) / double(v.size()), 1 - p, 0.01);
  EXPECT_NEAR(mean(y).item(), 1.0, 0.02);  // the expectation is unchanged
  EXPECT_EQ(V(dropout(x, p, true, &g2)), v);   // same seed, same mask
  // the gradient is the mask itself
  sum(y).backward();
  EXPECT_EQ(V(x.grad()), v);
  // evaluation mode and p = 0 are the identity
  EXPECT_EQ(V(dropout(x, p, false)), V(x));
  EXPECT_THROW(dropout(x, 1.0), Error);
}

// Random123's known-answer vectors for Philox4x32-10 (tests/kat_vectors of
// github.com/DEShawResearch/random123): counter, key, and the four words they must give.
TEST(OpValues, PhiloxMatchesTheKnownAnswerVectors) {
  struct Kat {
    philox::Block ctr;
    uint32_t k0, k1;
    philox::Block want;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, 0xffffffff, 0xffffffff,
       {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0,
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Kat& k : kats) {
    const philox::Block got = philox::philox4x32_10(k.ctr, k.k0, k.k1);
    for (int j = 0; j < 4; ++j) EXPECT_EQ(got.w[j], k.want.w[j]) << "word " << j;
  }
}

// The kernel's mask, element by element, is the reference's: philox::uniform_at(key, i) >= p.
// 4099 elements: blocks split across threads, and a last block of three.
TEST(OpValues, DropoutMaskIsThePhiloxStreamElementByElement) {
  const double p = 0.3;
  Generator g(11), copy(11);
  const uint64_t key = copy.next_u64();  // dropout keys its stream with one draw
  Tensor x = ones({4099});
  const std::vector<float> y = dropout(x, p, true, &g).to_vector<float>();
  const float scale = float(1.0 / (1.0 - p));
  for (size_t i = 0; i < y.size(); ++i)
    ASSERT_EQ(y[i], philox::uniform_at(key, i) >= float(p) ? scale : 0.0f) << "element " << i;
  EXPECT_EQ(g.next_u64(), copy.next_u64());  // one draw per call, whatever the size
}

TEST(OpValues, CausalMask) {
  // T = S = 3: ones strictly above the diagonal (the future)
  EXPECT_EQ(V(causal_mask(3)), (std::vector<double>{0, 1, 1, 0, 0, 1, 0, 0, 0}));
  // T = 2 queries at the end of S = 3 keys
  EXPECT_EQ(V(causal_mask(2, 3)), (std::vector<double>{0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(causal_mask(2, 3).shape(), (Shape{2, 3}));
  // any dtype, integer ones included
  EXPECT_EQ(causal_mask(2, 2, DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 0, 0}));
  EXPECT_EQ(causal_mask(2, 2, DType::bf16).dtype(), DType::bf16);
}

TEST(OpValues, Views) {
  Tensor x = F({0, 1, 2, 3, 4, 5}, {2, 3});
  EXPECT_EQ(V(x.t()), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(V(x.narrow(1, 1, 2)), (std::vector<double>{1, 2, 4, 5}));
  EXPECT_EQ(V(x.slice(1, 0, 3, 2)), (std::vector<double>{0, 2, 3, 5}));
  EXPECT_EQ(V(x.select(0, 1)), (std::vector<double>{3, 4, 5}));
  EXPECT_EQ(V(x.flip({1})), (std::vector<double>{2, 1, 0, 5, 4, 3}));
  EXPECT_EQ(V(x.permute({1, 0})), V(x.t()));
  EXPECT_EQ(x.unsqueeze(0).shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(x.unsqueeze(0).squeeze(0).shape(), (Shape{2, 3}));
  EXPECT_EQ(x.squeeze(0).shape(), (Shape{2, 3}));  // not size 1: unchanged
  EXPECT_EQ(V(F({7, 8}).unsqueeze(1).expand({2, 3})), (std::vector<double>{7, 7, 7, 8, 8, 8}));
  EXPECT_EQ(x.flatten().shape(), (Shape{6}));
  EXPECT_EQ(x.reshape({3, -1}).shape(), (Shape{3, 2}));
}

TEST(OpValues, InPlaceHelpers) {
  Tensor x = zeros({2, 2}, DType::f64);
  fill_(x, 3);
  EXPECT_EQ(V(x), (std::vector<double>{3, 3, 3, 3}));
  copy_(x, F({1, 2}));  // broadcast
  EXPECT_EQ(V(x), (std::vector<double>{1, 2, 1, 2}));
  add_(x, F({1, 1, 1, 1}, {2, 2}), 2);
  EXPECT_EQ(V(x), (std::vector<double>{3, 4, 3, 4}));
  mul_(x, 0.5);
  EXPECT_EQ(V(x), (std::vector<double>{1.5, 2, 1.5, 2}));
  copy_(x.t(), F({1, 2, 3, 4}, {2, 2}));  // into a transposed view
  EXPECT_EQ(V(x), (std::vector<double>{1, 3, 2, 4}));
  // refused on a tensor that requires grad while grad mode is on
  Tensor w = zeros({2}, DType::f64).requires_grad_();
  EXPECT_THROW(fill_(w, 1), Error);
  {
    NoGradGuard ng;
    fill_(w, 1);
  }
  EXPECT_EQ(V(w), (std::vector<double>{1, 1}));
}

TEST(OpValues, GradcheckCatchesAWrongGradient) {
  // a deliberately wrong backward: the forward is x^2, the "gradient" claims x
  auto wrong = [](const Inputs& x) { return add(mul(x[0].detach(), x[0].detach()), sub(x[0], x[0].detach())); };
  Tensor x = F({1, 2, 3}).requires_grad_();
  GradcheckResult r = gradcheck(wrong, {x});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.input, 0);
  EXPECT_GE(r.num_failed, 2);
  EXPECT_NE(r.message.find("input 0"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("numeric"), std::string::npos) << r.message;
  // and passes the right one
  EXPECT_TRUE(gradcheck([](const Inputs& x) { return mul(x[0], x[0]); }, {x}).ok);
  // f32 inputs are refused: finite differences need f64
  Tensor x32 = ones({2}).requires_grad_();
  EXPECT_THROW(gradcheck([](const Inputs& x) { return x[0]; }, {x32}), Error);
}
