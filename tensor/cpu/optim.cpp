// optim.cpp — the fused AdamW update (one pass over parameter, gradient and moments).
#include <cmath>

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

}  // namespace copper
