// gemm_tile.h — the register tile of the f32 products written with intrinsics: block_gemm
// (block_gemm.cpp, the fused attention's block products; AVX-512 only) and packed_gemm
// (packed_gemm.cpp, the layers' products; AVX-512 and AVX2) cut C into tiles of kTileRows rows
// by kTileVectors vectors and sum each over k here. B is read one row of the tile at a time
// (b + k·ldb), op(A) one element at a time, broadcast: block_gemm passes B where it lies,
// packed_gemm a panel it packed with ldb = the tile's width.
#pragma once
#include <cstdint>
#include <type_traits>

#include "tensor/cpu/lanes.h"

#if defined(__AVX512F__)
#include <immintrin.h>

namespace copper::cpu::gemm_tile {

inline constexpr int kLanes = 16;  // floats per vector
using Mask = __mmask16;            // the lanes of a tile's last vector that are C's
inline Mask last_vector(int64_t count) { return first_lanes(count); }

inline constexpr int kTileRows = 6;     // rows of C in one register tile
inline constexpr int kTileVectors = 4;  // vectors of 16 floats per tile row: 64 columns
// 6 x 4 sums, 4 vectors of B and a broadcast of A: 29 of the 32 vector registers.

// One tile of R rows and V vectors of C, the lanes of its last vector masked by `last`, and
// `bias` (the tile's columns of a row vector, or null) added to every row as it is written:
// for each k, the row k of B (V loads) times each of the R elements A[i, k] (broadcasts).
// a points at op(A)[0, 0] of the tile, b and c at the tile's first column.
template <bool TransA, int R, int V>
void tile(int64_t K, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, bool accumulate, float* c,
          int64_t ldc, __mmask16 last, const float* bias) {
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
      __m512 y = accumulate ? _mm512_fmadd_ps(sum[r][v], scale, _mm512_maskz_loadu_ps(mask(v), out))
                            : _mm512_mul_ps(sum[r][v], scale);
      if (bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask(v), bias + 16 * v));
      _mm512_mask_storeu_ps(out, mask(v), y);
    }
}

template <bool TransA, int R>
void tile_of_width(int V, int64_t K, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                   bool accumulate, float* c, int64_t ldc, __mmask16 last, const float* bias) {
  switch (V) {
    case 4: return tile<TransA, R, 4>(K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
    case 3: return tile<TransA, R, 3>(K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
    case 2: return tile<TransA, R, 2>(K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
    default: return tile<TransA, R, 1>(K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
  }
}

template <bool TransA>
void tile_of_size(int R, int V, int64_t K, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                  bool accumulate, float* c, int64_t ldc, __mmask16 last, const float* bias) {
  switch (R) {
    case 6: return tile_of_width<TransA, 6>(V, K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
    case 5: return tile_of_width<TransA, 5>(V, K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
    case 4: return tile_of_width<TransA, 4>(V, K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
    case 3: return tile_of_width<TransA, 3>(V, K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
    case 2: return tile_of_width<TransA, 2>(V, K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
    default: return tile_of_width<TransA, 1>(V, K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
  }
}

}  // namespace copper::cpu::gemm_tile
#elif defined(__AVX2__)
#include <immintrin.h>

namespace copper::cpu::gemm_tile {

// The same tile on AVX2's sixteen registers: 4 rows by 3 vectors of 8 floats (24 columns), 12
// sums, 3 vectors of B and a broadcast of A. AVX2's masked loads are slow, so B's rows are read
// whole: they must be readable to the tile's full width (packed_gemm's padded panels are; on
// AVX2 block_gemm does not use the tile). Only C's and the bias's last vector is masked.
inline constexpr int kLanes = 8;
using Mask = __m256i;
inline Mask last_vector(int64_t count) { return first_lanes8(count); }
inline constexpr int kTileRows = 4;
inline constexpr int kTileVectors = 3;

template <bool TransA, int R, int V>
void tile(int64_t K, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, bool accumulate, float* c,
          int64_t ldc, Mask last, const float* bias) {
  __m256 sum[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) sum[r][v] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m256 row[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) row[v] = _mm256_loadu_ps(b + k * ldb + 8 * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(TransA ? a + k * lda + r : a + r * lda + k);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) sum[r][v] = _mm256_fmadd_ps(x, row[v], sum[r][v]);
    }
  }
  const __m256 scale = _mm256_set1_ps(alpha);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      float* out = c + r * ldc + 8 * v;
      auto load = [&](const float* p) { return v == V - 1 ? _mm256_maskload_ps(p, last) : _mm256_loadu_ps(p); };
      __m256 y = accumulate ? _mm256_fmadd_ps(sum[r][v], scale, load(out)) : _mm256_mul_ps(sum[r][v], scale);
      if (bias) y = _mm256_add_ps(y, load(bias + 8 * v));
      if (v == V - 1) _mm256_maskstore_ps(out, last, y);
      else _mm256_storeu_ps(out, y);
    }
}

template <bool TransA>
void tile_of_size(int R, int V, int64_t K, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                  bool accumulate, float* c, int64_t ldc, Mask last, const float* bias) {
  auto width = [&](auto rows) {
    constexpr int Rc = decltype(rows)::value;
    switch (V) {
      case 3: return tile<TransA, Rc, 3>(K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
      case 2: return tile<TransA, Rc, 2>(K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
      default: return tile<TransA, Rc, 1>(K, alpha, a, lda, b, ldb, accumulate, c, ldc, last, bias);
    }
  };
  switch (R) {
    case 4: return width(std::integral_constant<int, 4>());
    case 3: return width(std::integral_constant<int, 3>());
    case 2: return width(std::integral_constant<int, 2>());
    default: return width(std::integral_constant<int, 1>());
  }
}

}  // namespace copper::cpu::gemm_tile
#endif
