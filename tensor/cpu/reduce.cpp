// reduce.cpp — sum / max / min / argmax over the middle axis of [outer, n, inner].
// Sums accumulate in double so that long f32 reductions stay accurate.
#include <limits>
#include <vector>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace copper {

using namespace cpu;

void CpuBackend::reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "reduce", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    // one (outer, inner-block) unit per task; inner blocks keep the innermost loop unit-stride
    const int64_t block = inner == 1 ? 1 : std::min<int64_t>(inner, 256);
    const int64_t nblocks = (inner + block - 1) / block;
    parallel_for(outer * nblocks, n * block, [&](int64_t u) {
      int64_t o = u / nblocks, i0 = (u % nblocks) * block, len = std::min(block, inner - i0);
      const T* base = xp + o * n * inner + i0;
      double acc[256];
      int64_t arg[256];
      for (int64_t i = 0; i < len; ++i) {
        acc[i] = op == ReduceOp::sum ? 0.0 : double(base[i]);
        arg[i] = 0;
      }
      for (int64_t j = (op == ReduceOp::sum ? 0 : 1); j < n; ++j) {
        const T* row = base + j * inner;
        switch (op) {
          case ReduceOp::sum:
            for (int64_t i = 0; i < len; ++i) acc[i] += double(row[i]);
            break;
          case ReduceOp::max:
          case ReduceOp::argmax:
            for (int64_t i = 0; i < len; ++i)
              if (double(row[i]) > acc[i] || std::isnan(double(row[i]))) {
                if (!std::isnan(acc[i])) { acc[i] = double(row[i]); arg[i] = j; }
              }
            break;
          case ReduceOp::min:
            for (int64_t i = 0; i < len; ++i)
              if (double(row[i]) < acc[i] || std::isnan(double(row[i]))) {
                if (!std::isnan(acc[i])) { acc[i] = double(row[i]); arg[i] = j; }
              }
            break;
        }
      }
      if (op == ReduceOp::argmax) {
        int64_t* op_ = static_cast<int64_t*>(out.raw_data()) + o * inner + i0;
        for (int64_t i = 0; i < len; ++i) op_[i] = arg[i];
      } else {
        T* op_ = static_cast<T*>(out.raw_data()) + o * inner + i0;
        for (int64_t i = 0; i < len; ++i) op_[i] = T(acc[i]);
      }
    });
  });
}

}  // namespace copper
