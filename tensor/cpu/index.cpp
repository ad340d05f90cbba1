// index.cpp — index_select / index_add (whole slices) and gather / scatter_add (elements).
// The ops have already checked every index against its range.
#include <cstring>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace copper {

using namespace cpu;

void CpuBackend::index_select(const Tensor& x, const Tensor& index, const Tensor& out, int64_t outer, int64_t n,
                              int64_t inner) {
  const int64_t* ip = index.data<int64_t>();
  const int64_t k = index.numel();
  COPPER_DISPATCH_ALL(x.dtype(), "index_select", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    parallel_for(outer * k, inner, [&](int64_t u) {
      int64_t o = u / k, j = u % k;
      std::memcpy(op + (o * k + j) * inner, xp + (o * n + ip[j]) * inner, size_t(inner) * sizeof(T));
    });
  });
}

void CpuBackend::index_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t outer, int64_t n,
                           int64_t inner) {
  const int64_t* ip = index.data<int64_t>();
  const int64_t k = index.numel();
  COPPER_DISPATCH_FLOAT(out.dtype(), "index_add", [&] {
    const T* sp = static_cast<const T*>(src.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    // Repeated indices write the same row: parallelise over outer and over columns only.
    const int64_t block = std::min<int64_t>(inner, 1024);
    const int64_t nblocks = (inner + block - 1) / block;
    parallel_for(outer * nblocks, k * block, [&](int64_t u) {
      int64_t o = u / nblocks, c0 = (u % nblocks) * block, len = std::min(block, inner - c0);
      for (int64_t j = 0; j < k; ++j) {
        T* dst = op + (o * n + ip[j]) * inner + c0;
        const T* s = sp + (o * k + j) * inner + c0;
        for (int64_t c = 0; c < len; ++c) dst[c] += s[c];
      }
    });
  });
}

void CpuBackend::gather(const Tensor& x, const Tensor& index, const Tensor& out, int64_t outer, int64_t n, int64_t k,
                        int64_t inner) {
  const int64_t* ip = index.data<int64_t>();
  COPPER_DISPATCH_ALL(x.dtype(), "gather", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    parallel_for(outer, k * inner, [&](int64_t o) {
      for (int64_t j = 0; j < k; ++j)
        for (int64_t i = 0; i < inner; ++i) {
          int64_t e = (o * k + j) * inner + i;
          op[e] = xp[(o * n + ip[e]) * inner + i];
        }
    });
  });
}

void CpuBackend::scatter_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t outer, int64_t n,
                             int64_t k, int64_t inner) {
  const int64_t* ip = index.data<int64_t>();
  COPPER_DISPATCH_FLOAT(out.dtype(), "scatter_add", [&] {
    const T* sp = static_cast<const T*>(src.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    // Different `o` never write the same element, so the outer loop is parallel.
    parallel_for(outer, k * inner, [&](int64_t o) {
      for (int64_t j = 0; j < k; ++j)
        for (int64_t i = 0; i < inner; ++i) {
          int64_t e = (o * k + j) * inner + i;
          op[(o * n + ip[e]) * inner + i] += sp[e];
        }
    });
  });
}

}  // namespace copper
