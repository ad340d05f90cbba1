// block_gemm.cpp — the attention's block products (block_gemm.h): a register-tiled loop with
// AVX-512, cblas_sgemm without it.
#include "tensor/cpu/block_gemm.h"

#include <cblas.h>

#include <algorithm>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace copper::cpu {

void block_gemm_reference(bool trans_a, int64_t m, int64_t n, int64_t K, float alpha, const float* a, int64_t lda,
                          const float* b, int64_t ldb, bool accumulate, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, CblasNoTrans, int(m), int(n), int(K), alpha, a,
              int(lda), b, int(ldb), accumulate ? 1.0f : 0.0f, c, int(ldc));
}

#if defined(__AVX512F__)
namespace {

constexpr int kTileRows = 6;     // rows of C in one register tile
constexpr int kTileVectors = 4;  // vectors of 16 floats per tile row: 64 columns
// 6 x 4 sums, 4 vectors of B and a broadcast of A: 29 of the 32 vector registers.

// One tile of R rows and V vectors of C, the lanes of its last vector masked by `last`:
// for each k, the row k of B (V loads) times each of the R elements A[i, k] (broadcasts).
// a points at op(A)[0, 0] of the tile, b and c at the tile's first column.
template <bool TransA, int R, int V>
void tile(int64_t K, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, bool accumulate, float* c,
          int64_t ldc, __mmask16 last) {
  auto mask = [last](int v) { return v == V - 1 ? last : __mmask16(0xFFFF); };
  // The loops over r and v are unrolled (the pragmas): otherwise GCC keeps `sum` in memory
  // and stores all of it on every k.
  __m512 sum[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) sum[r][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 row[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) row[v] = _mm512_maskz_loadu_ps(mask(v), b + k * ldb + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(TransA ? a[k * lda + r] : a[r * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) sum[r][v] = _mm512_fmadd_ps(x, row[v], sum[r][v]);
    }
  }
  const __m512 scale = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      float* out = c + r * ldc + 16 * v;
      const __m512 y = accumulate ? _mm512_fmadd_ps(sum[r][v], scale, _mm512_maskz_loadu_ps(mask(v), out))
                                  : _mm512_mul_ps(sum[r][v], scale);
      _mm512_mask_storeu_ps(out, mask(v), y);
    }
}

template <bool TransA, int R>
void tile_of_width(int V, int64_t K, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                   bool accumulate, float* c, int64_t ldc, __mmask16 last) {
  switch (V) {
    case 4: return tile<TransA, R, 4>(K, alpha, a, lda, b, ldb, accumulate, c, ldc, last);
    case 3: return tile<TransA, R, 3>(K, alpha, a, lda, b, ldb, accumulate, c, ldc, last);
    case 2: return tile<TransA, R, 2>(K, alpha, a, lda, b, ldb, accumulate, c, ldc, last);
    default: return tile<TransA, R, 1>(K, alpha, a, lda, b, ldb, accumulate, c, ldc, last);
  }
}

template <bool TransA>
void tile_of_size(int R, int V, int64_t K, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                  bool accumulate, float* c, int64_t ldc, __mmask16 last) {
  switch (R) {
    case 6: return tile_of_width<TransA, 6>(V, K, alpha, a, lda, b, ldb, accumulate, c, ldc, last);
    case 5: return tile_of_width<TransA, 5>(V, K, alpha, a, lda, b, ldb, accumulate, c, ldc, last);
    case 4: return tile_of_width<TransA, 4>(V, K, alpha, a, lda, b, ldb, accumulate, c, ldc, last);
    case 3: return tile_of_width<TransA, 3>(V, K, alpha, a, lda, b, ldb, accumulate, c, ldc, last);
    case 2: return tile_of_width<TransA, 2>(V, K, alpha, a, lda, b, ldb, accumulate, c, ldc, last);
    default: return tile_of_width<TransA, 1>(V, K, alpha, a, lda, b, ldb, accumulate, c, ldc, last);
  }
}

// Column panels outside, row tiles inside: a panel of B (K rows of 64 columns; 16 KB for
// K = 64) stays in L1 while every row tile of C passes over it. A tile of rows [i, i + R)
// sums k in [k0, k1) and writes the columns before `end`, all cut by the causal mask.
template <bool TransA>
void tiled(int64_t m, int64_t n, int64_t K, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
           bool accumulate, float* c, int64_t ldc, Causal causal, int64_t shift) {
  constexpr int64_t panel = 16 * kTileVectors;
  for (int64_t j = 0; j < n; j += panel) {
    for (int64_t i = 0; i < m; i += kTileRows) {
      const int R = int(std::min<int64_t>(kTileRows, m - i));
      const int64_t last_key = i + R - 1 + shift;  // the last key the tile's last query sees
      const int64_t end = causal == Causal::output ? std::min(n, last_key + 1) : n;
      const int64_t k0 = causal == Causal::a_columns ? std::clamp<int64_t>(i - shift, 0, K) : 0;
      const int64_t k1 = causal == Causal::a_rows ? std::clamp<int64_t>(last_key + 1, 0, K) : K;
      const int64_t width = std::min(panel, end - j);
      if (width <= 0) continue;  // (an accumulated C keeps its value; an overwritten one is not needed)
      const int V = int((width + 15) / 16);
      const __mmask16 last = __mmask16(0xFFFFu >> (16 * V - width));
      const float* ai = TransA ? a + k0 * lda + i : a + i * lda + k0;
      tile_of_size<TransA>(R, V, std::max<int64_t>(k1 - k0, 0), alpha, ai, lda, b + k0 * ldb + j, ldb, accumulate,
                           c + i * ldc + j, ldc, last);
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
