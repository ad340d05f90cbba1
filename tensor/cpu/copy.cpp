// copy.cpp — strided copy with dtype conversion (a transposed matrix in blocks), fill, and the
// host side of transfer.
#include <cstring>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/transpose.h"

namespace copper {

using namespace cpu;

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  // A transposed matrix made contiguous (a weight's gradient arrives as one): turned in blocks
  // (transpose.h), sixteen of src's rows at a time per thread, instead of one strided element
  // after another.
  if (src.dtype() == dst.dtype() && dst.dim() == 2 && dst.is_contiguous() && src.stride(0) == 1 &&
      src.size(0) > 1 && src.size(1) > 1 && src.stride(1) >= src.size(0)) {
    const int64_t rows = dst.size(0), cols = dst.size(1), lds = src.stride(1);
    COPPER_DISPATCH_ALL(src.dtype(), "copy", [&] {
      const T* s = static_cast<const T*>(src.raw_data());
      T* d = static_cast<T*>(dst.raw_data());
      // src is `cols` rows of `rows` elements, row stride lds; dst its transpose
      parallel_for((cols + kTransposeRun - 1) / kTransposeRun, kTransposeRun * rows, [&](int64_t b) {
        const int64_t i0 = b * kTransposeRun;
        transpose_run(s, lds, d, cols, i0, std::min(kTransposeRun, cols - i0), rows);
      });
    });
    return;
  }
  COPPER_DISPATCH_ALL(src.dtype(), "copy", [&] {
    using S = T;
    const S* s = static_cast<const S*>(src.raw_data());
    COPPER_DISPATCH_ALL(dst.dtype(), "copy", [&] {
      using D = T;
      D* d = static_cast<D*>(dst.raw_data());
      for_each_row<2>(dst.shape(), {&src.strides(), &dst.strides()}, [&](const int64_t* off, const int64_t* st, int64_t n) {
        const S* sp = s + off[0];
        D* dp = d + off[1];
        if constexpr (std::is_same_v<S, D>) {
          if (st[0] == 1 && st[1] == 1) {
            std::memcpy(static_cast<void*>(dp), static_cast<const void*>(sp), size_t(n) * sizeof(D));
            return;
          }
        }
        if (st[0] == 1 && st[1] == 1) {
          for (int64_t i = 0; i < n; ++i) dp[i] = convert<D>(sp[i]);
        } else {
          for (int64_t i = 0; i < n; ++i) dp[i * st[1]] = convert<D>(sp[i * st[0]]);
        }
      });
    });
  });
}

// Host to host: both contiguous with one dtype (Tensor::to never calls it for cpu -> cpu,
// but a device-neutral caller may).
void CpuBackend::transfer(const Tensor& src, const Tensor& dst) {
  COPPER_CHECK(src.dtype() == dst.dtype() && src.numel() == dst.numel() && src.is_contiguous() && dst.is_contiguous(),
               "transfer", "needs contiguous tensors of one dtype and size, got {} and {}", src.repr_shape(),
               dst.repr_shape());
  if (src.numel() > 0) std::memcpy(dst.raw_data(), src.raw_data(), size_t(src.numel()) * dtype_size(src.dtype()));
}

void CpuBackend::fill(const Tensor& dst, double value) {
  COPPER_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    T v = from_double<T>(value);
    T* d = static_cast<T*>(dst.raw_data());
    for_each_row<1>(dst.shape(), {&dst.strides()}, [&](const int64_t* off, const int64_t* st, int64_t n) {
      T* p = d + off[0];
      for (int64_t i = 0; i < n; ++i) p[i * st[0]] = v;
    });
  });
}

}  // namespace copper
