// optim.cu — the fused AdamW update, one thread per element (Backend::adamw_step):
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr (m/bc1 / (sqrt(v/bc2) + eps) + wd p)
#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

template <class T>
__global__ void adamw_kernel(T* p, const T* g, T* m, T* v, int64_t n, T lr, T b1, T b2, T eps, T wd, T inv_bc1,
                             T inv_bc2) {
  COPPER_CUDA_GRID_STRIDE(i, n) {
    const T gi = g[i];
    const T mi = b1 * m[i] + (T(1) - b1) * gi;
    const T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const T update = (mi * inv_bc1) / (sqrt(vi * inv_bc2) + eps);
    p[i] -= lr * (update + wd * p[i]);
  }
}

}  // namespace

void launch_adamw(DType dtype, void* p, const void* g, void* m, void* v, int64_t n, double lr, double b1, double b2,
                  double eps, double wd, double inv_bc1, double inv_bc2, cudaStream_t stream) {
  if (n == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "adamw_step", [&] {
    adamw_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(p), static_cast<const T*>(g),
                                                         static_cast<T*>(m), static_cast<T*>(v), n, T(lr), T(b1),
                                                         T(b2), T(eps), T(wd), T(inv_bc1), T(inv_bc2));
    COPPER_CUDA_LAUNCH_CHECK("adamw_kernel");
  });
}

}  // namespace copper::cuda
