// gemm.cpp — batched matrix multiply on cuBLAS (Backend::gemm), f32 and f64.
//
// copper's matrices are row-major and cuBLAS's column-major. A row-major [n, m] matrix is the
// column-major [m, n] matrix of its transpose, so c = a @ b is computed as c^T = b^T @ a^T:
// cuBLAS gets b first, then a, with m and n swapped, and writes c row-major. Each operand is a
// [batch, rows, cols] view with one unit stride in its last two dims: a row-major view is a
// column-major view of the transpose (CUBLAS_OP_N), a column-major (transposed) view needs
// CUBLAS_OP_T; the leading dimension is the other stride. The batch stride goes to
// cublasGemmStridedBatchedEx as is, 0 (broadcast) included.
//
// f32 computes in full f32 (CUBLAS_COMPUTE_32F under pedantic math), so that results match the
// CPU to about 1e-6 relative, unless allow_tf32() (tensor/autocast.h) asks for TF32 tensor
// cores. bf16 operands with an f32 result (mixed precision) run on the bf16 tensor cores with f32
// accumulation. One cuBLAS handle per GPU, bound to that GPU's stream; its math mode is set per
// call (a host-side setting, no synchronisation). cuBLAS itself is opened at the first product
// (cublas_loader.h), so that CPU-only processes do not carry it.
#include <cublas_v2.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "cuda/check.h"
#include "cuda/cublas_loader.h"
#include "cuda/cuda_backend.h"
#include "cuda/device.h"
#include "tensor/autocast.h"

namespace copper::cuda {

namespace {

cublasHandle_t handle(int dev) {
  static std::mutex mu;
  static std::vector<cublasHandle_t> handles;
  std::lock_guard<std::mutex> lock(mu);
  if (handles.size() <= size_t(dev)) handles.resize(size_t(dev) + 1, nullptr);
  if (!handles[size_t(dev)]) {
    DeviceGuard g(dev);
    cublasHandle_t h = nullptr;
    COPPER_CUBLAS_CHECK(cublas::create(&h));
    COPPER_CUBLAS_CHECK(cublas::set_stream(h, stream(dev)));
    COPPER_CUBLAS_CHECK(cublas::set_math_mode(h, CUBLAS_PEDANTIC_MATH));  // no TF32, no reduced-precision shortcuts
    handles[size_t(dev)] = h;  // lives until the process ends
  }
  return handles[size_t(dev)];
}

struct CublasOperand {
  cublasOperation_t op;
  int64_t ld;
};

// The same test as the CPU's blas_operand (tensor/cpu/gemm.cpp): a [rows, cols] view with
// strides (rs, cs) is row-major when cs == 1 (ld = rs), else column-major (rs == 1, ld = cs).
// Row-major is column-major of the transpose, hence CUBLAS_OP_N.
CublasOperand cublas_operand(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  if (cs == 1 && (rs >= std::max<int64_t>(cols, 1) || rows <= 1)) return {CUBLAS_OP_N, std::max<int64_t>({rs, cols, 1})};
  return {CUBLAS_OP_T, std::max<int64_t>({cs, rows, 1})};
}

}  // namespace

void CudaBackend::gemm(const Tensor& a, const Tensor& b, const Tensor& c, bool accumulate) {
  // a: [batch, n, k], b: [batch, k, m], c: [batch, n, m] contiguous
  const int64_t batch = c.size(0), n = c.size(1), m = c.size(2), k = a.size(2);
  if (batch == 0 || n == 0 || m == 0) return;
  COPPER_CHECK(c.device().type == DeviceType::cuda, "matmul", "the CUDA backend got c on {}", c.device().str());
  const int dev = c.device().index;
  DeviceGuard g(dev);
  if (k == 0) {  // an empty sum: c = 0, or c unchanged when accumulating
    if (!accumulate) fill(c, 0.0);
    return;
  }
  const CublasOperand oa = cublas_operand(n, k, a.strides()[1], a.strides()[2]);
  const CublasOperand ob = cublas_operand(k, m, b.strides()[1], b.strides()[2]);
  COPPER_CHECK(std::max({n, m, k, oa.ld, ob.ld, batch}) <= int64_t(INT32_MAX), "matmul",
               "sizes of {} @ {} exceed cuBLAS's 32-bit int. HINT: split the batch", a.repr_shape(), b.repr_shape());
  const long long sa = a.strides()[0], sb = b.strides()[0], sc = n * m;
  cudaDataType_t in_type, out_type;
  cublasComputeType_t compute;
  cublasMath_t math = CUBLAS_PEDANTIC_MATH;
  const float alpha32 = 1.0f, beta32 = accumulate ? 1.0f : 0.0f;
  const double alpha64 = 1.0, beta64 = accumulate ? 1.0 : 0.0;
  const void* alpha = &alpha32;
  const void* beta = &beta32;
  if (c.dtype() == DType::f32 && a.dtype() == DType::bf16) {  // mixed precision: bf16 tensor cores, f32 sums
    in_type = CUDA_R_16BF;
    out_type = CUDA_R_32F;
    compute = CUBLAS_COMPUTE_32F;
    math = CUBLAS_DEFAULT_MATH;
  } else if (c.dtype() == DType::f32 && a.dtype() == DType::f32) {
    in_type = out_type = CUDA_R_32F;
    compute = allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    if (allow_tf32()) math = CUBLAS_DEFAULT_MATH;
  } else if (c.dtype() == DType::f64 && a.dtype() == DType::f64) {
    in_type = out_type = CUDA_R_64F;
    compute = CUBLAS_COMPUTE_64F;
    alpha = &alpha64;
    beta = &beta64;
  } else {
    COPPER_THROW("matmul", "the CUDA gemm takes f32 or f64 operands, or bf16 into f32; got {} operands into {}. "
                 "HINT: convert with .to(DType::f32)", dtype_name(a.dtype()), c.repr_shape());
  }
  cublasHandle_t h = handle(dev);
  COPPER_CUBLAS_CHECK(cublas::set_math_mode(h, math));  // a host-side setting of the handle: no sync
  // column-major: c^T [m, n] = b^T [m, k] @ a^T [k, n]
  COPPER_CUBLAS_CHECK(cublas::gemm_strided_batched_ex(h, ob.op, oa.op, int(m), int(n), int(k), alpha, b.raw_data(),
                                                      in_type, int(ob.ld), sb, a.raw_data(), in_type, int(oa.ld), sa,
                                                      beta, c.raw_data(), out_type, int(m), sc, int(batch), compute,
                                                      CUBLAS_GEMM_DEFAULT));
}

}  // namespace copper::cuda
