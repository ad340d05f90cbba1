// random.cpp — dropout's keep-mask from the Philox stream (Backend::dropout_mask). Each item
// is one Philox block: four elements from one call of the generator, so threads split the
// tensor at block boundaries and produce the same bits as one thread, or as a GPU.
// philox::uniform_at (tensor/philox.h) is the element-by-element reference the tests use.
#include <algorithm>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/philox.h"

namespace copper {

using namespace cpu;

void CpuBackend::dropout_mask(const Tensor& out, double p, uint64_t key) {
  const int64_t n = out.numel();
  const float pf = float(p);
  COPPER_DISPATCH_FLOAT(out.dtype(), "dropout_mask", [&] {
    T* o = static_cast<T*>(out.raw_data());
    const T scale = T(1.0 / (1.0 - p));
    parallel_for((n + 3) / 4, 40, [&](int64_t b) {
      const philox::Block r = philox::stream_block(key, uint64_t(b));
      const int64_t i0 = 4 * b, m = std::min<int64_t>(4, n - i0);
      for (int64_t j = 0; j < m; ++j) o[i0 + j] = philox::unit_float(r.w[j]) >= pf ? scale : T(0);
    });
  });
}

}  // namespace copper
