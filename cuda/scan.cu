// scan.cu — inclusive prefix (or suffix) sums along the middle axis of [outer, n, inner]
// (Backend::cumsum). One thread per (outer, inner) column walks its n elements in order, so
// each sum is added in the same order as on the CPU.
#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

template <class T>
__global__ void cumsum_kernel(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, bool reverse) {
  COPPER_CUDA_GRID_STRIDE(u, outer * inner) {
    const int64_t o = u / inner, i = u % inner;
    const T* xb = x + o * n * inner + i;
    T* ob = out + o * n * inner + i;
    T acc = T(0);
    for (int64_t s = 0; s < n; ++s) {
      const int64_t j = reverse ? n - 1 - s : s;
      acc = s == 0 ? xb[j * inner] : acc + xb[j * inner];
      ob[j * inner] = acc;
    }
  }
}

}  // namespace

void launch_cumsum(DType dtype, const void* x, void* out, int64_t outer, int64_t n, int64_t inner, bool reverse,
                   cudaStream_t stream) {
  if (outer * inner == 0 || n == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "cumsum", [&] {
    cumsum_kernel<T><<<grid_for(outer * inner), kBlock, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(out),
                                                                      outer, n, inner, reverse);
    COPPER_CUDA_LAUNCH_CHECK("cumsum_kernel");
  });
}

}  // namespace copper::cuda
