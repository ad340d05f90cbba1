// packed_gemm.h — the layers' f32 products (CpuBackend::gemm, gemm.cpp) where B is a weight
// (or a weight-sized operand) and A has many rows: a linear layer's forward x·Wᵀ and its input
// gradient dy·W, at the model's shapes ([4096, 256] against [256, 768] and the like).
//
// A general BLAS product packs panels of both operands into its own layout and, for beta = 0,
// first zeroes C. Here only B is packed, once per call, into panels as wide as the register
// tile (gemm_tile.h: 64 columns on AVX-512, 24 on AVX2); the rows of A are read where they lie,
// broadcast one element at a time; C is written by the tile, never zeroed first. The threads
// split the rows of C. docs/PERF.md ("The layers' products on the register tile") has the
// measurements that chose the shapes packed_gemm takes; the others, and builds with neither
// instruction set, go to cblas_sgemm.
#pragma once
#include <cstdint>

namespace copper::cpu {

// Whether packed_gemm serves a product of m rows, n columns and inner size K with A in rows
// (a transposed A, the weight gradient's xᵀ·dy, stays with BLAS, which is faster there).
// Always false without AVX-512 or AVX2 (kPackedGemmTiled).
bool packed_gemm_takes(int64_t m, int64_t n, int64_t K);
#if defined(__AVX512F__) || defined(__AVX2__)
inline constexpr bool kPackedGemmTiled = true;
#else
inline constexpr bool kPackedGemmTiled = false;
#endif

// C = A op(B), or C += A op(B) with `accumulate`, and bias[j] added to every row if bias is
// given (a linear layer's, added as C is written: after the whole sum, so rounded as a
// product followed by the add); f32, row-major:
//   A[i, k]     = a[i·lda + k]                                   (i < m, k < K)
//   op(B)[k, j] = b[k·ldb + j], or b[j·ldb + k] with trans_b     (j < n)
//   C[i, j]     = c[i·ldc + j]
// Without AVX-512 or AVX2 this is packed_gemm_reference.
void packed_gemm(int64_t m, int64_t n, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
                 bool trans_b, bool accumulate, float* c, int64_t ldc, const float* bias = nullptr);

// The same product by cblas_sgemm, then the bias added: what packed_gemm is tested against
// (tests/test_block_gemm.cpp).
void packed_gemm_reference(int64_t m, int64_t n, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
                           bool trans_b, bool accumulate, float* c, int64_t ldc, const float* bias = nullptr);

}  // namespace copper::cpu
