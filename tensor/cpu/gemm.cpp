// gemm.cpp — batched matrix multiply on OpenBLAS (cblas_sgemm / cblas_dgemm), or for f32
// products of many rows of A, on packed_gemm (packed_gemm.h) where it serves the shape; bf16
// operands (mixed precision) on bf16_gemm (bf16_gemm.h), or widened to f32 first where the CPU
// has no bf16 tile.
//
// Each operand arrives as a 3-d view [batch, rows, cols] whose last two dims have one
// unit stride: row-major (col stride 1) or column-major (row stride 1, i.e. a transposed
// view). Both map onto BLAS without a copy by choosing NoTrans/Trans and the leading
// dimension; the batch stride is free, so broadcast and sliced batches cost nothing.
#include <cblas.h>

#include "tensor/cpu/bf16_gemm.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/packed_gemm.h"

namespace copper {

namespace {

struct BlasOperand {
  CBLAS_TRANSPOSE trans;
  int64_t ld;
};

// For a [rows, cols] view with strides (rs, cs): row-major needs cs == 1 (ld = rs), a
// transposed (column-major) view has rs == 1 (ld = cs). The op guarantees one of them.
BlasOperand blas_operand(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  if (cs == 1 && (rs >= std::max<int64_t>(cols, 1) || rows <= 1)) return {CblasNoTrans, std::max<int64_t>({rs, cols, 1})};
  return {CblasTrans, std::max<int64_t>({cs, rows, 1})};
}

// One BLAS call, by element type.
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int n, int m, int k, const float* a, int lda, const float* b,
               int ldb, double beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, n, m, k, 1.0f, a, lda, b, ldb, float(beta), c, ldc);
}
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int n, int m, int k, const double* a, int lda, const double* b,
               int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, n, m, k, 1.0, a, lda, b, ldb, beta, c, ldc);
}

// The batch on packed_gemm, if it serves the product: f32, A in rows, a shape it takes.
bool packed(const BlasOperand& oa, const BlasOperand& ob, int64_t batch, int64_t n, int64_t m, int64_t k,
            const float* a, int64_t sa, const float* b, int64_t sb, bool accumulate, float* c, int64_t sc,
            const float* bias) {
  if (oa.trans != CblasNoTrans || !cpu::packed_gemm_takes(n, m, k)) return false;
  for (int64_t i = 0; i < batch; ++i)
    cpu::packed_gemm(n, m, k, a + i * sa, oa.ld, b + i * sb, ob.ld, ob.trans == CblasTrans, accumulate, c + i * sc, m,
                     bias);
  return true;
}
bool packed(const BlasOperand&, const BlasOperand&, int64_t, int64_t, int64_t, int64_t, const double*, int64_t,
            const double*, int64_t, bool, double*, int64_t, const double*) {
  return false;
}

// gemm, and gemm_bias with `bias` defined: on packed_gemm the bias is added as C is written,
// saving the pass over C that the add would take; after a BLAS product it is that add.
void product(CpuBackend& be, const Tensor& a, const Tensor& b, const Tensor& c, bool accumulate, const Tensor& bias) {
  const int64_t batch = c.size(0), n = c.size(1), m = c.size(2), k = a.size(2);
  if (n == 0 || m == 0) return;
  COPPER_CHECK(!bias.defined() || bias.is_contiguous(), "matmul", "gemm_bias takes a contiguous bias, got strides {}",
               shape_str(bias.strides()));
  if (a.dtype() == DType::bf16 && !cpu::kBf16Tiled) {
    // Mixed precision without the bf16 tile. bf16 -> f32 is exact, so sgemm on the widened
    // operands is the bf16 product with f32 accumulation. (OpenBLAS's sbgemm is not in
    // Debian's build.)
    auto widen = [&](const Tensor& x) {
      Tensor w = Tensor::empty(x.shape(), DType::f32, x.device());
      be.copy(x, w);
      return w;
    };
    product(be, widen(a), widen(b), c, accumulate, bias);
    return;
  }
  const BlasOperand oa = blas_operand(n, k, a.strides()[1], a.strides()[2]);
  const BlasOperand ob = blas_operand(k, m, b.strides()[1], b.strides()[2]);
  const int64_t sa = a.strides()[0], sb = b.strides()[0], sc = n * m;
  const double beta = accumulate ? 1.0 : 0.0;
  if (a.dtype() == DType::bf16) {  // bf16 operands, f32 result and bias: the bf16 tile (bf16_gemm.h)
    COPPER_CHECK(c.dtype() == DType::f32 && (!bias.defined() || bias.dtype() == DType::f32), "matmul",
                 "bf16 operands make an f32 product with an f32 bias, got {} and {}", dtype_name(c.dtype()),
                 bias.defined() ? dtype_name(bias.dtype()) : "none");
    const bf16* ap = static_cast<const bf16*>(a.raw_data());
    const bf16* bp = static_cast<const bf16*>(b.raw_data());
    float* cp = static_cast<float*>(c.raw_data());
    const float* biasp = bias.defined() ? static_cast<const float*>(bias.raw_data()) : nullptr;
    for (int64_t i = 0; i < batch; ++i)
      cpu::bf16_gemm(n, m, k, ap + i * sa, oa.ld, oa.trans == CblasTrans, bp + i * sb, ob.ld, ob.trans == CblasTrans,
                     accumulate, cp + i * sc, m, biasp);
    return;
  }
  COPPER_DISPATCH_FLOAT(c.dtype(), "matmul", [&] {
    const T* ap = static_cast<const T*>(a.raw_data());
    const T* bp = static_cast<const T*>(b.raw_data());
    T* cp = static_cast<T*>(c.raw_data());
    const T* biasp = bias.defined() ? static_cast<const T*>(bias.raw_data()) : nullptr;
    if (packed(oa, ob, batch, n, m, k, ap, sa, bp, sb, accumulate, cp, sc, biasp)) return;
    for (int64_t i = 0; i < batch; ++i)
      blas_gemm(oa.trans, ob.trans, int(n), int(m), int(k), ap + i * sa, int(oa.ld), bp + i * sb, int(ob.ld), beta,
                cp + i * sc, int(m));
    if (bias.defined()) be.binary(BinaryOp::add, c, bias.expand(c.shape()), c);
  });
}

}  // namespace

void CpuBackend::gemm(const Tensor& a, const Tensor& b, const Tensor& c, bool accumulate) {
  product(*this, a, b, c, accumulate, Tensor());
}

void CpuBackend::gemm_bias(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& c) {
  product(*this, a, b, c, false, bias);
}

}  // namespace copper
