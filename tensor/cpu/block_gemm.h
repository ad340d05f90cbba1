// block_gemm.h — the small f32 products inside the fused attention (tensor/cpu/attention.cpp):
// a query block's logits q·kᵀ and output P·v, and the backward's dP, dq, dk and dv, each a
// block of 64 queries against up to Tk keys with a head's size (64 in the bench models) as
// the inner or the outer dimension.
//
// A general BLAS product copies ("packs") panels of both operands into its own layout before
// every call. For these shapes the packing is a large share of the attention's time (docs/PERF.md),
// and the keys are packed again for every query block. block_gemm reads both operands where they lie
// instead: B one row at a time, op(A) one element at a time, broadcast. The caller gives the
// keys (and the values) transposed once per batch·head, so that every product has B in rows.
#pragma once
#include <cstdint>

namespace copper::cpu {

// What a product of a causal block may skip. Query i of the block (counted from 0) sees the
// keys k <= i + shift, and the mask makes the rest zero or unneeded:
//   output     C is [queries, keys] (the logits q kᵀ, and dO vᵀ): C[i, k] past key i + shift
//              is not needed, and is left as it was or computed, a tile of rows at a time
//   a_rows     op(A) is [queries, keys] (P or dS, as in P v): zero past key i + shift
//   a_columns  op(A) is [keys, queries] (Pᵀ or dSᵀ, as in Pᵀ dO): zero before query k - shift
enum class Causal { none, output, a_rows, a_columns };

// C = alpha op(A) B, or C += alpha op(A) B with `accumulate`; f32, row-major:
//   op(A)[i, k] = a[i·lda + k], or a[k·lda + i] with trans_a     (i < m, k < K)
//   B[k, j]     = b[k·ldb + j]                                    (j < n)
//   C[i, j]     = c[i·ldc + j]
// With AVX-512 a register tile of 6 rows by 64 columns of C is summed over k in 24 vector
// registers, skipping what `causal` allows; elsewhere this is block_gemm_reference, which
// computes everything.
void block_gemm(bool trans_a, int64_t m, int64_t n, int64_t K, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, bool accumulate, float* c, int64_t ldc, Causal causal = Causal::none,
                int64_t shift = 0);

// Whether block_gemm has its own tile on this build (AVX-512) or is block_gemm_reference.
#if defined(__AVX512F__)
inline constexpr bool kBlockGemmTiled = true;
#else
inline constexpr bool kBlockGemmTiled = false;
#endif

// The same product by cblas_sgemm: what block_gemm is tested against (tests/test_block_gemm.cpp).
void block_gemm_reference(bool trans_a, int64_t m, int64_t n, int64_t K, float alpha, const float* a, int64_t lda,
                          const float* b, int64_t ldb, bool accumulate, float* c, int64_t ldc);

}  // namespace copper::cpu
