// optim.cu — the fused AdamW update, one thread per element (Backend::adamw_step), the same over
// every parameter of an optimizer in one launch (Backend::adamw_steps), and the squared global
// norm of the gradients in two launches (Backend::sum_squares). AdamW:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr (m/bc1 / (sqrt(v/bc2) + eps) + wd p)
#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

// The update of element i, shared by the one-parameter and the all-parameters kernels.
template <class T>
__device__ __forceinline__ void adamw_element(T* p, const T* g, T* m, T* v, int64_t i, T lr, T b1, T b2, T eps, T wd,
                                              T inv_bc1, T inv_bc2) {
  const T gi = g[i];
  const T mi = b1 * m[i] + (T(1) - b1) * gi;
  const T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  const T update = (mi * inv_bc1) / (sqrt(vi * inv_bc2) + eps);
  p[i] -= lr * (update + wd * p[i]);
}

template <class T>
__global__ void adamw_kernel(T* p, const T* g, T* m, T* v, int64_t n, T lr, T b1, T b2, T eps, T wd, T inv_bc1,
                             T inv_bc2) {
  COPPER_CUDA_GRID_STRIDE(i, n) { adamw_element(p, g, m, v, i, lr, b1, b2, eps, wd, inv_bc1, inv_bc2); }
}

// Block (x, y) works on parameter y; the x blocks stride over its elements, and those past a
// small parameter's end exit at once.
template <class T>
__global__ void adamw_many_kernel(const AdamWSlot* slots, T lr, T b1, T b2, T eps) {
  const AdamWSlot s = slots[blockIdx.y];
  T* p = static_cast<T*>(s.p);
  const T* g = static_cast<const T*>(s.g);
  T* m = static_cast<T*>(s.m);
  T* v = static_cast<T*>(s.v);
  const T wd = T(s.wd), inv_bc1 = T(s.inv_bc1), inv_bc2 = T(s.inv_bc2);
  COPPER_CUDA_GRID_STRIDE(i, s.n) { adamw_element(p, g, m, v, i, lr, b1, b2, eps, wd, inv_bc1, inv_bc2); }
}

}  // namespace

void launch_adamw_many(DType dtype, const AdamWSlot* slots, int count, int64_t max_n, double lr, double b1, double b2,
                       double eps, cudaStream_t stream) {
  if (count == 0 || max_n == 0) return;
  const dim3 grid(grid_for(max_n), unsigned(count));
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "adamw_steps", [&] {
    adamw_many_kernel<T><<<grid, kBlock, 0, stream>>>(slots, T(lr), T(b1), T(b2), T(eps));
    COPPER_CUDA_LAUNCH_CHECK("adamw_many_kernel");
  });
}

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

namespace {

__global__ void sum_squares_chunks_kernel(const SumSquaresSlot* slots, int64_t chunk, double* partials) {
  const SumSquaresSlot s = slots[blockIdx.y];
  const int64_t begin = int64_t(blockIdx.x) * chunk;
  if (begin >= s.n) return;  // the whole block leaves together: block_sum below is not reached
  const int64_t end = min(s.n, begin + chunk);
  double acc = 0;
  if (s.is_f64) {
    const double* x = static_cast<const double*>(s.x);
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) acc += x[i] * x[i];
  } else {
    const float* x = static_cast<const float*>(s.x);
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) acc += double(x[i]) * double(x[i]);
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partials[s.first_partial + blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(const double* partials, int64_t n, double* out) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += partials[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) out[0] = acc;
}

}  // namespace

void launch_sum_squares_chunks(const SumSquaresSlot* slots, int count, int64_t max_chunks, int64_t chunk,
                               double* partials, cudaStream_t stream) {
  if (count == 0 || max_chunks == 0) return;
  sum_squares_chunks_kernel<<<dim3(unsigned(max_chunks), unsigned(count)), kBlock, 0, stream>>>(slots, chunk, partials);
  COPPER_CUDA_LAUNCH_CHECK("sum_squares_chunks_kernel");
}

void launch_sum_partials(const double* partials, int64_t num_partials, double* out, cudaStream_t stream) {
  sum_partials_kernel<<<1, kBlock, 0, stream>>>(partials, num_partials, out);  // 0 partials: out = 0
  COPPER_CUDA_LAUNCH_CHECK("sum_partials_kernel");
}

}  // namespace copper::cuda
