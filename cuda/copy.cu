// copy.cu — strided copy with dtype conversion, and fill (Backend::copy, Backend::fill).
// One thread per element of the common layout; either side may have any strides. Between two
// dense tensors (autocast's casts) each thread moves kCopyVec neighbouring elements with one
// wide load and one wide store, when both pointers are aligned for them.
#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

template <class S, class D>
__global__ void copy_kernel(Layout l, Operands<2> ops) {
  const S* src = static_cast<const S*>(ops.op[0].data);
  D* dst = static_cast<D*>(ops.op[1].data);
  COPPER_CUDA_GRID_STRIDE(i, l.numel) {
    int64_t off[2];
    offsets_of<2>(i, l, ops, off);
    dst[off[1]] = convert<D>(src[off[0]]);
  }
}

inline constexpr int kCopyVec = 4;
template <class T>
struct alignas(sizeof(T) * kCopyVec) CopyVec {
  T v[kCopyVec];
};

template <class S, class D>
__global__ void dense_copy_kernel(const S* src, D* dst, int64_t n) {
  const int64_t groups = n / kCopyVec;
  COPPER_CUDA_GRID_STRIDE(g, groups) {
    const CopyVec<S> in = reinterpret_cast<const CopyVec<S>*>(src)[g];
    CopyVec<D> out;
    for (int k = 0; k < kCopyVec; ++k) out.v[k] = convert<D>(in.v[k]);
    reinterpret_cast<CopyVec<D>*>(dst)[g] = out;
  }
  COPPER_CUDA_GRID_STRIDE(t, n - groups * kCopyVec) dst[groups * kCopyVec + t] = convert<D>(src[groups * kCopyVec + t]);
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <class T>
__global__ void fill_kernel(Layout l, Operands<1> ops, T value) {
  T* dst = static_cast<T*>(ops.op[0].data);
  COPPER_CUDA_GRID_STRIDE(i, l.numel) {
    int64_t off[1];
    offsets_of<1>(i, l, ops, off);
    dst[off[0]] = value;
  }
}

// The fill value in T, converted on the host as the CPU does (from_double in tensor/cpu/loops.h).
template <class T>
T host_value(double v) {
  if constexpr (std::is_same_v<T, bf16>) return float_to_bf16(float(v));
  else if constexpr (std::is_same_v<T, f16>) return float_to_f16(float(v));
  else return T(v);
}

}  // namespace

void launch_copy(const Layout& l, const Operand& src, const Operand& dst, cudaStream_t stream) {
  if (l.numel == 0) return;
  const Operands<2> ops{{src, dst}};
  COPPER_CUDA_DISPATCH_ALL(src.dtype, "copy", [&] {
    using S = T;
    COPPER_CUDA_DISPATCH_ALL(dst.dtype, "copy", [&] {
      if (l.nd == 1 && src.stride[0] == 1 && dst.stride[0] == 1 && aligned(src.data, sizeof(CopyVec<S>)) &&
          aligned(dst.data, sizeof(CopyVec<T>))) {
        dense_copy_kernel<S, T><<<grid_for(l.numel / kCopyVec + 1), kBlock, 0, stream>>>(
            static_cast<const S*>(src.data), static_cast<T*>(dst.data), l.numel);
        COPPER_CUDA_LAUNCH_CHECK("dense_copy_kernel");
        return;
      }
      copy_kernel<S, T><<<grid_for(l.numel), kBlock, 0, stream>>>(l, ops);
      COPPER_CUDA_LAUNCH_CHECK("copy_kernel");
    });
  });
}

void launch_fill(const Layout& l, const Operand& dst, double value, cudaStream_t stream) {
  if (l.numel == 0) return;
  const Operands<1> ops{{dst}};
  COPPER_CUDA_DISPATCH_ALL(dst.dtype, "fill", [&] {
    fill_kernel<T><<<grid_for(l.numel), kBlock, 0, stream>>>(l, ops, host_value<T>(value));
    COPPER_CUDA_LAUNCH_CHECK("fill_kernel");
  });
}

}  // namespace copper::cuda
