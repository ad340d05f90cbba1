// bf16_gemm.h — the mixed-precision products (tensor/autocast.h) on the CPU: bf16 operands,
// f32 sums and result. With AVX512_BF16 (Zen 4, Cooper Lake, Sapphire Rapids) the register
// tile multiplies the bf16 pairs directly (VDPBF16PS: two products and their sum into each
// f32 lane), twice the f32 tile's multiply-adds per instruction; elsewhere the operands are
// widened to f32 (exactly) and cblas_sgemm multiplies them.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace copper::cpu {

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
inline constexpr bool kBf16Tiled = true;
#else
inline constexpr bool kBf16Tiled = false;
#endif

// C = op(A) op(B), or C += op(A) op(B) with `accumulate`, and bias[j] added to every row if
// bias is given; A and B bf16, C and the bias f32, row-major:
//   op(A)[i, k] = a[i·lda + k], or a[k·lda + i] with trans_a      (i < m, k < K)
//   op(B)[k, j] = b[k·ldb + j], or b[j·ldb + k] with trans_b      (j < n)
//   C[i, j]     = c[i·ldc + j]
// Each product of two bf16 values is exact in f32; the sums round in f32 (in an order of the
// tile's choosing), and the tile's instruction treats subnormal inputs and results as zero.
// Without AVX512_BF16 this is bf16_gemm_reference.
void bf16_gemm(int64_t m, int64_t n, int64_t K, const bf16* a, int64_t lda, bool trans_a, const bf16* b, int64_t ldb,
               bool trans_b, bool accumulate, float* c, int64_t ldc, const float* bias = nullptr);

// The same product with both operands widened to f32 and multiplied by cblas_sgemm, then the
// bias added: what bf16_gemm is tested against (tests/test_block_gemm.cpp).
void bf16_gemm_reference(int64_t m, int64_t n, int64_t K, const bf16* a, int64_t lda, bool trans_a, const bf16* b,
                         int64_t ldb, bool trans_b, bool accumulate, float* c, int64_t ldc,
                         const float* bias = nullptr);

}  // namespace copper::cpu
