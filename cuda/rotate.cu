// rotate.cu — rotary position embedding in one pass (Backend::rotate_pairs): one thread per
// pair, x and out [outer, t, p, 2], cs and sn [t, p], all contiguous.
#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

template <class T>
__global__ void rotate_pairs_kernel(const T* x, const T* cs, const T* sn, T* out, int64_t pairs, int64_t t, int64_t p,
                                    bool inverse) {
  COPPER_CUDA_GRID_STRIDE(k, pairs) {
    const int64_t table = k % (t * p);  // (row % t, m) of pair k
    const T c = cs[table], s = inverse ? -sn[table] : sn[table];
    const T x0 = x[2 * k], x1 = x[2 * k + 1];
    out[2 * k] = x0 * c - x1 * s;
    out[2 * k + 1] = x0 * s + x1 * c;
  }
}

}  // namespace

void launch_rotate_pairs(DType dtype, const void* x, const void* cs, const void* sn, void* out, int64_t outer,
                         int64_t t, int64_t p, bool inverse, cudaStream_t stream) {
  const int64_t pairs = outer * t * p;
  if (pairs == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "rotate_pairs", [&] {
    rotate_pairs_kernel<T><<<grid_for(pairs), kBlock, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(cs), static_cast<const T*>(sn), static_cast<T*>(out), pairs, t,
        p, inverse);
    COPPER_CUDA_LAUNCH_CHECK("rotate_pairs_kernel");
  });
}

}  // namespace copper::cuda
