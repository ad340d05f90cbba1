// rotate.cu — rotary position embedding in one pass (Backend::rotate_pairs): one thread per
// pair, x [outer·t, 2p] with rows x_row_stride apart, out [outer, t, p, 2] and cs, sn [t, p]
// contiguous.
#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

template <class T>
__global__ void rotate_pairs_kernel(const T* x, int64_t x_row_stride, const T* cs, const T* sn, T* out, int64_t pairs,
                                    int64_t t, int64_t p, bool inverse) {
  COPPER_CUDA_GRID_STRIDE(k, pairs) {
    const int64_t table = k % (t * p);  // (row % t, m) of pair k
    const T c = cs[table], s = inverse ? -sn[table] : sn[table];
    const T* xk = x + (k / p) * x_row_stride + 2 * (k % p);
    const T x0 = xk[0], x1 = xk[1];
    out[2 * k] = x0 * c - x1 * s;
    out[2 * k + 1] = x0 * s + x1 * c;
  }
}

}  // namespace

void launch_rotate_pairs(DType dtype, const void* x, int64_t x_row_stride, const void* cs, const void* sn, void* out,
                         int64_t outer, int64_t t, int64_t p, bool inverse, cudaStream_t stream) {
  const int64_t pairs = outer * t * p;
  if (pairs == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "rotate_pairs", [&] {
    rotate_pairs_kernel<T><<<grid_for(pairs), kBlock, 0, stream>>>(
        static_cast<const T*>(x), x_row_stride, static_cast<const T*>(cs), static_cast<const T*>(sn),
        static_cast<T*>(out), pairs, t, p, inverse);
    COPPER_CUDA_LAUNCH_CHECK("rotate_pairs_kernel");
  });
}

}  // namespace copper::cuda
