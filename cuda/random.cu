// random.cu — dropout's keep-mask from the Philox stream (Backend::dropout_mask): one thread
// per Philox block of four elements, the same bits as the CPU kernel (tensor/cpu/random.cpp).
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

}  // namespace

void launch_dropout_mask(DType dtype, void* out, int64_t n, float p, double scale, uint64_t key, cudaStream_t stream) {
  if (n == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "dropout_mask", [&] {
    dropout_mask_kernel<T><<<grid_for((n + 3) / 4), kBlock, 0, stream>>>(static_cast<T*>(out), n, p, T(scale), key);
    COPPER_CUDA_LAUNCH_CHECK("dropout_mask_kernel");
  });
}

}  // namespace copper::cuda
