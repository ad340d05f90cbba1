// random.cu — dropout's keep-mask (Backend::dropout_mask) and rand/randn (Backend::random_fill)
// from the Philox stream: one thread per Philox block of four elements, the same formulas as
// the CPU kernels (tensor/cpu/random.cpp).
#include "cuda/common.cuh"
#include "tensor/philox.h"

namespace copper::cuda {

namespace {

template <class T>
__global__ void dropout_mask_kernel(T* out, int64_t n, float p, T scale, uint64_t key) {
  const int64_t blocks = (n + 3) / 4;
  COPPER_CUDA_GRID_STRIDE(b, blocks) {
    const philox::Block r = philox::stream_block(key, uint64_t(b));
    const int64_t i0 = 4 * b;
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i0 + j < n) out[i0 + j] = philox::unit_float(r.w[j]) >= p ? scale : T(0);
  }
}

template <class T>
__global__ void random_fill_kernel(T* out, int64_t n, bool normal, double a, double b, uint64_t key) {
  const int64_t blocks = (n + 3) / 4;
  COPPER_CUDA_GRID_STRIDE(blk, blocks) {
    const philox::Block r = philox::stream_block(key, uint64_t(blk));
    double v[4];
    if (normal) {
      const philox::NormalPair p01 = philox::normal_pair(r.w[0], r.w[1]), p23 = philox::normal_pair(r.w[2], r.w[3]);
      v[0] = a + b * p01.z0;
      v[1] = a + b * p01.z1;
      v[2] = a + b * p23.z0;
      v[3] = a + b * p23.z1;
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) v[j] = a + (b - a) * double(philox::unit_float(r.w[j]));
    }
    const int64_t i0 = 4 * blk;
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i0 + j < n) out[i0 + j] = T(v[j]);
  }
}

}  // namespace

void launch_random_fill(DType dtype, void* out, int64_t n, bool normal, double a, double b, uint64_t key,
                        cudaStream_t stream) {
  if (n == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "random_fill", [&] {
    random_fill_kernel<T><<<grid_for((n + 3) / 4), kBlock, 0, stream>>>(static_cast<T*>(out), n, normal, a, b, key);
    COPPER_CUDA_LAUNCH_CHECK("random_fill_kernel");
  });
}

void launch_dropout_mask(DType dtype, void* out, int64_t n, float p, double scale, uint64_t key, cudaStream_t stream) {
  if (n == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "dropout_mask", [&] {
    dropout_mask_kernel<T><<<grid_for((n + 3) / 4), kBlock, 0, stream>>>(static_cast<T*>(out), n, p, T(scale), key);
    COPPER_CUDA_LAUNCH_CHECK("dropout_mask_kernel");
  });
}

}  // namespace copper::cuda
