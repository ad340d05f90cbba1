// optim.cpp — the fused AdamW update (one pass over parameter, gradient and moments), and the
// squared global norm of the gradients for clipping (Backend::sum_squares).
#include <cmath>
#include <vector>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace copper {

using namespace cpu;

namespace {
template <class T>
void adamw(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, int64_t n, T lr, T b1, T b2,
           T eps, T wd, T ibc1, T ibc2) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    T gi = g[i];
    m[i] = b1 * m[i] + (T(1) - b1) * gi;
    v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
    T update = (m[i] * ibc1) / (std::sqrt(v[i] * ibc2) + eps);
    p[i] -= lr * (update + wd * p[i]);
  }
}
}  // namespace

void CpuBackend::adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, double lr, double b1,
                            double b2, double eps, double wd, double bc1, double bc2) {
  COPPER_DISPATCH_FLOAT(p.dtype(), "adamw_step", [&] {
    adamw<T>(static_cast<T*>(p.raw_data()), static_cast<const T*>(g.raw_data()), static_cast<T*>(m.raw_data()),
             static_cast<T*>(v.raw_data()), p.numel(), T(lr), T(b1), T(b2), T(eps), T(wd), T(1.0 / bc1),
             T(1.0 / bc2));
  });
}

void CpuBackend::sum_squares(const std::vector<Tensor>& xs, const Tensor& out) {
  // One item per chunk of one tensor; threads take items, and the partial sums are added in
  // item order afterwards.
  struct Item {
    const Tensor* x;
    int64_t begin, end;
  };
  std::vector<Item> items;
  for (const Tensor& x : xs)
    for (int64_t b = 0; b < x.numel(); b += kSumSquaresChunk)
      items.push_back({&x, b, std::min(x.numel(), b + kSumSquaresChunk)});
  std::vector<double> partial(items.size(), 0.0);
  parallel_for(int64_t(items.size()), kSumSquaresChunk, [&](int64_t i) {
    const Item& it = items[size_t(i)];
    COPPER_DISPATCH_FLOAT(it.x->dtype(), "sum_squares", [&] {
      const T* p = static_cast<const T*>(it.x->raw_data());
      double s = 0;  // in vector lanes, added at the end: the same order at any thread count
      _Pragma("omp simd reduction(+ : s)")
      for (int64_t j = it.begin; j < it.end; ++j) s += double(p[j]) * double(p[j]);
      partial[size_t(i)] = s;
    });
  });
  double total = 0;
  for (double s : partial) total += s;
  *static_cast<double*>(out.raw_data()) = total;
}

}  // namespace copper
