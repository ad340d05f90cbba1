// copy.cpp — strided copy with dtype conversion, fill, and the host side of transfer.
#include <algorithm>
#include <cstring>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace copper {

using namespace cpu;

namespace {

// A transposed matrix into a row-major one, in square tiles: src [R, C] with unit stride down
// its columns (a `.t()` view of a row-major matrix, such as a weight's gradient as the product
// computes it), dst with unit stride along its rows. Element by element, one side is read or
// written a whole row apart each time, every access touches a new cache line, and rows a power
// of two apart share cache sets. A tile of kTransposeTile × kTransposeTile is read column by
// column from src into a small buffer and written row by row to dst: both sides in whole
// cache lines.
constexpr int64_t kTransposeTile = 32;

bool is_transpose(const Tensor& src, const Tensor& dst) {
  return src.dtype() == dst.dtype() && src.dim() == 2 && dst.size(0) >= kTransposeTile &&
         dst.size(1) >= kTransposeTile && src.stride(0) == 1 && src.stride(1) >= dst.size(0) &&
         dst.stride(1) == 1 && dst.stride(0) >= dst.size(1);
}

template <class T>
void copy_transposed(const T* s, int64_t s_col, T* d, int64_t d_row, int64_t R, int64_t C) {
  const int64_t tiles = (R + kTransposeTile - 1) / kTransposeTile;
  parallel_for(tiles, kTransposeTile * C, [&](int64_t t) {
    const int64_t i0 = t * kTransposeTile, ni = std::min(R - i0, kTransposeTile);
    T tile[kTransposeTile][kTransposeTile];  // tile[i][j] = dst(i0 + i, j0 + j)
    for (int64_t j0 = 0; j0 < C; j0 += kTransposeTile) {
      const int64_t nj = std::min(C - j0, kTransposeTile);
      for (int64_t j = 0; j < nj; ++j) {  // src's column j0 + j: contiguous in i
        const T* col = s + i0 + (j0 + j) * s_col;
        for (int64_t i = 0; i < ni; ++i) tile[i][j] = col[i];
      }
      for (int64_t i = 0; i < ni; ++i) {  // dst's row i0 + i: contiguous in j
        T* row = d + (i0 + i) * d_row + j0;
        for (int64_t j = 0; j < nj; ++j) row[j] = tile[i][j];
      }
    }
  });
}

}  // namespace

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  if (is_transpose(src, dst)) {
    COPPER_DISPATCH_ALL(src.dtype(), "copy", [&] {
      copy_transposed(static_cast<const T*>(src.raw_data()), src.stride(1), static_cast<T*>(dst.raw_data()),
                      dst.stride(0), dst.size(0), dst.size(1));
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
