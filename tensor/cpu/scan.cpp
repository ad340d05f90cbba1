// scan.cpp — inclusive prefix (or suffix) sums along the middle axis of [outer, n, inner].
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace copper {

using namespace cpu;

void CpuBackend::cumsum(const Tensor& x, const Tensor& out, int64_t outer, int64_t n, int64_t inner, bool reverse) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "cumsum", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    parallel_for(outer, n * inner, [&](int64_t o) {
      const T* xb = xp + o * n * inner;
      T* ob = op + o * n * inner;
      if (!reverse) {
        for (int64_t i = 0; i < inner; ++i) ob[i] = xb[i];
        for (int64_t j = 1; j < n; ++j)
          for (int64_t i = 0; i < inner; ++i) ob[j * inner + i] = ob[(j - 1) * inner + i] + xb[j * inner + i];
      } else if (n > 0) {
        for (int64_t i = 0; i < inner; ++i) ob[(n - 1) * inner + i] = xb[(n - 1) * inner + i];
        for (int64_t j = n - 2; j >= 0; --j)
          for (int64_t i = 0; i < inner; ++i) ob[j * inner + i] = ob[(j + 1) * inner + i] + xb[j * inner + i];
      }
    });
  });
}

}  // namespace copper
