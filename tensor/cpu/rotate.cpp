// rotate.cpp — rotary position embedding in one pass: each pair (x0, x1) of a row turned by
// that row's angle (Backend::rotate_pairs). The same rotation composed of six elementwise ops
// and a stack over strided views is nn::rope_apply_reference (nn/pe/rope.h), which the tests
// compare this kernel with.
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/rotate.h"

namespace copper {

using namespace cpu;

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
