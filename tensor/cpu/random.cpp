// random.cpp — dropout's keep-mask (Backend::dropout_mask) and rand/randn (Backend::random_fill)
// from the Philox stream. Each item is one Philox block: four elements from one call of the
// generator, so threads split the tensor at block boundaries and produce the same bits as one
// thread, or as a GPU.
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
      const int64_t i0 = 4 * b;
      philox::keep_scales(key, pf, scale, uint64_t(i0), std::min<int64_t>(4, n - i0), o + i0);
    });
  });
}

void CpuBackend::random_fill(const Tensor& out, bool normal, double a, double b, uint64_t key) {
  const int64_t n = out.numel();
  COPPER_DISPATCH_FLOAT(out.dtype(), "random_fill", [&] {
    T* o = static_cast<T*>(out.raw_data());
    parallel_for((n + 3) / 4, 40, [&](int64_t blk) {
      const philox::Block r = philox::stream_block(key, uint64_t(blk));
      const int64_t i0 = 4 * blk, m = std::min<int64_t>(4, n - i0);
      double v[4];
      if (normal) {
        const philox::NormalPair p01 = philox::normal_pair(r.w[0], r.w[1]), p23 = philox::normal_pair(r.w[2], r.w[3]);
        const double z[4] = {p01.z0, p01.z1, p23.z0, p23.z1};
        for (int j = 0; j < 4; ++j) v[j] = a + b * z[j];
      } else {
        for (int j = 0; j < 4; ++j) v[j] = a + (b - a) * double(philox::unit_float(r.w[j]));
      }
      for (int64_t j = 0; j < m; ++j) o[i0 + j] = T(v[j]);
    });
  });
}

}  // namespace copper
