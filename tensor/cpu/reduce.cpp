// reduce.cpp — sum / max / min / argmax over the middle axis of [outer, n, inner].
// Sums accumulate in double so that long f32 reductions stay accurate.
#include <algorithm>
#include <limits>
#include <vector>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace copper {

using namespace cpu;

namespace {

// A sum over n rows is cut into chunks of this many rows (fixed, so the result does not depend
// on the thread count): a bias's gradient, [4096 tokens, 256] summed over the tokens, is
// otherwise one task of 256 columns on one thread.
constexpr int64_t kSumRowChunk = 256;

// sum over the middle axis in chunks of rows: each (outer, chunk, block of kColumnBlock
// columns) a task summing in double into its own partial row, then the partials added in
// chunk order (add_partials_in_chunk_order, as a backward's column sums are).
template <class T>
void chunked_sum(const T* xp, T* op, int64_t outer, int64_t n, int64_t inner) {
  const int64_t block = std::min(inner, kColumnBlock);
  const int64_t chunks = (n + kSumRowChunk - 1) / kSumRowChunk, nblocks = (inner + block - 1) / block;
  static thread_local std::vector<double> partial;  // [outer, chunks, inner]
  partial.resize(size_t(outer * chunks * inner));
  double* const parts = partial.data();  // (the workers write through the caller's buffer)
  parallel_for(outer * chunks * nblocks, kSumRowChunk * block, [&](int64_t u) {
    const int64_t o = u / (chunks * nblocks), ch = (u / nblocks) % chunks, i0 = (u % nblocks) * block;
    const int64_t len = std::min(block, inner - i0), j1 = std::min(n, (ch + 1) * kSumRowChunk);
    double* acc = parts + (o * chunks + ch) * inner + i0;
    std::fill(acc, acc + len, 0.0);
    for (int64_t j = ch * kSumRowChunk; j < j1; ++j) {
      const T* row = xp + (o * n + j) * inner + i0;
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) acc[i] += double(row[i]);
    }
  });
  parallel_for(outer, chunks * inner,
               [&](int64_t o) { add_partials_in_chunk_order(parts + o * chunks * inner, chunks, inner, op + o * inner); });
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) {
  if (op == ReduceOp::sum && inner > 1 && n > kSumRowChunk) {
    COPPER_DISPATCH_FLOAT(x.dtype(), "reduce", [&] {
      chunked_sum(static_cast<const T*>(x.raw_data()), static_cast<T*>(out.raw_data()), outer, n, inner);
    });
    return;
  }
  COPPER_DISPATCH_FLOAT(x.dtype(), "reduce", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    // one (outer, inner-block) unit per task; inner blocks keep the innermost loop unit-stride
    const int64_t block = inner == 1 ? 1 : std::min(inner, kColumnBlock);
    const int64_t nblocks = (inner + block - 1) / block;
    parallel_for(outer * nblocks, n * block, [&](int64_t u) {
      int64_t o = u / nblocks, i0 = (u % nblocks) * block, len = std::min(block, inner - i0);
      const T* base = xp + o * n * inner + i0;
      double acc[kColumnBlock];
      int64_t arg[kColumnBlock];
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
