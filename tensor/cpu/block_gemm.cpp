// block_gemm.cpp — the attention's block products (block_gemm.h): a register-tiled loop with
// AVX-512, cblas_sgemm without it.
#include "tensor/cpu/block_gemm.h"
#include "tensor/cpu/gemm_tile.h"

#include <cblas.h>

#include <algorithm>

namespace copper::cpu {

void block_gemm_reference(bool trans_a, int64_t m, int64_t n, int64_t K, float alpha, const float* a, int64_t lda,
                          const float* b, int64_t ldb, bool accumulate, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, CblasNoTrans, int(m), int(n), int(K), alpha, a,
              int(lda), b, int(ldb), accumulate ? 1.0f : 0.0f, c, int(ldc));
}

#if defined(__AVX512F__)
namespace {

using gemm_tile::kLanes;
using gemm_tile::kTileRows;
using gemm_tile::kTileVectors;
using gemm_tile::tile_of_size;

// Column panels outside, row tiles inside: a panel of B (K rows of 64 columns; 16 KB for
// K = 64) stays in L1 while every row tile of C passes over it. A tile of rows [i, i + R)
// sums k in [k0, k1) and writes the columns before `end`, all cut by the causal mask.
template <bool TransA>
void tiled(int64_t m, int64_t n, int64_t K, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
           bool accumulate, float* c, int64_t ldc, Causal causal, int64_t shift) {
  constexpr int64_t panel = kLanes * kTileVectors;
  for (int64_t j = 0; j < n; j += panel) {
    for (int64_t i = 0; i < m; i += kTileRows) {
      const int R = int(std::min<int64_t>(kTileRows, m - i));
      const int64_t last_key = i + R - 1 + shift;  // the last key the tile's last query sees
      const int64_t end = causal == Causal::output ? std::min(n, last_key + 1) : n;
      const int64_t k0 = causal == Causal::a_columns ? std::clamp<int64_t>(i - shift, 0, K) : 0;
      const int64_t k1 = causal == Causal::a_rows ? std::clamp<int64_t>(last_key + 1, 0, K) : K;
      const int64_t width = std::min(panel, end - j);
      if (width <= 0) continue;  // (an accumulated C keeps its value; an overwritten one is not needed)
      const int V = int((width + kLanes - 1) / kLanes);
      const int64_t last = width - kLanes * (V - 1);  // lanes of the last vector
      const float* ai = TransA ? a + k0 * lda + i : a + i * lda + k0;
      tile_of_size<TransA>(R, V, std::max<int64_t>(k1 - k0, 0), alpha, ai, lda, b + k0 * ldb + j, ldb, accumulate,
                           c + i * ldc + j, ldc, last, nullptr);
    }
  }
}

}  // namespace

void block_gemm(bool trans_a, int64_t m, int64_t n, int64_t K, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, bool accumulate, float* c, int64_t ldc, Causal causal, int64_t shift) {
  if (trans_a) tiled<true>(m, n, K, alpha, a, lda, b, ldb, accumulate, c, ldc, causal, shift);
  else tiled<false>(m, n, K, alpha, a, lda, b, ldb, accumulate, c, ldc, causal, shift);
}
#else
void block_gemm(bool trans_a, int64_t m, int64_t n, int64_t K, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, bool accumulate, float* c, int64_t ldc, Causal /*causal*/,
                int64_t /*shift*/) {
  block_gemm_reference(trans_a, m, n, K, alpha, a, lda, b, ldb, accumulate, c, ldc);
}
#endif

}  // namespace copper::cpu
