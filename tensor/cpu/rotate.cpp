// rotate.cpp — rotary position embedding in one pass: each pair (x0, x1) of a row turned by
// that row's angle (Backend::rotate_pairs). The same rotation composed of six elementwise ops
// and a stack over strided views is nn::rope_apply_reference (nn/pe/rope.h), which the tests
// compare this kernel with.
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace copper {

using namespace cpu;

namespace {

// One row: p pairs of x turned by the row's angles (sign -1: by minus them).
template <class T>
void rotate_row(const T* __restrict x, const T* __restrict c, const T* __restrict s, T* __restrict o, int64_t p,
                T sign) {
#pragma omp simd
  for (int64_t m = 0; m < p; ++m) {
    const T x0 = x[2 * m], x1 = x[2 * m + 1], sm = sign * s[m];
    o[2 * m] = x0 * c[m] - x1 * sm;
    o[2 * m + 1] = x0 * sm + x1 * c[m];
  }
}

}  // namespace

void CpuBackend::rotate_pairs(const Tensor& x, const Tensor& cs, const Tensor& sn, const Tensor& out, int64_t outer,
                              int64_t t, int64_t p, bool inverse) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "rotate_pairs", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* cp = static_cast<const T*>(cs.raw_data());
    const T* sp = static_cast<const T*>(sn.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    const T sign = inverse ? T(-1) : T(1);  // turning by -angle: sin(-a) = -sin(a)
    // One item per (outer, row): 2p elements, with the row's p cosines and sines.
    parallel_for(outer * t, 2 * p, [&](int64_t r) {
      rotate_row(xp + r * 2 * p, cp + (r % t) * p, sp + (r % t) * p, op + r * 2 * p, p, sign);
    });
  });
}

}  // namespace copper
