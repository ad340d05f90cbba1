// gemm_tile.h — the register tile of the f32 products written with intrinsics: block_gemm
// (block_gemm.cpp, the fused attention's block products; AVX-512 only) and packed_gemm
// (packed_gemm.cpp, the layers' products; AVX-512 and AVX2) cut C into tiles of kTileRows rows
// by kTileVectors vectors and sum each over k here. B is read one row of the tile at a time
// (b + k·ldb), op(A) one element at a time, broadcast: block_gemm passes B where it lies,
// packed_gemm a panel it packed with ldb = the tile's width.
//
// One tile serves both instruction sets; what differs is in `Vec`, the vector operations of
// each, and the tile's size, which the registers set.
#pragma once
#include <array>
#include <cstdint>
#include <utility>

#include "tensor/cpu/lanes.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>

namespace copper::cpu::gemm_tile {

#if defined(__AVX512F__)
// 6 rows by 4 vectors of 16 floats (64 columns): 24 sums, 4 vectors of B and a broadcast of A,
// 29 of the 32 registers. B's last vector is loaded under the mask: block_gemm reads B where it
// lies, and its rows may end there.
inline constexpr int kTileRows = 6;
inline constexpr int kTileVectors = 4;
struct Vec {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int kLanes = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V all(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static Mask first(int64_t lanes) { return first_lanes(lanes); }
  using BMask = Mask;  // what load_b_last takes, made once per tile
  static BMask b_mask(int64_t lanes) { return first(lanes); }
  static V load_b_last(const float* p, BMask m) { return load(p, m); }
  static void store(float* p, V x) { _mm512_storeu_ps(p, x); }
  static void store(float* p, Mask m, V x) { _mm512_mask_storeu_ps(p, m, x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
};
#else
// 4 rows by 3 vectors of 8 floats (24 columns) in AVX2's 16 registers: 12 sums, 3 vectors of B
// and a broadcast. AVX2's masked loads are slow, so B's rows are read whole: they must be
// readable to the tile's full width (packed_gemm's padded panels are; on AVX2 block_gemm does
// not use the tile). Only C's and the bias's last vector is masked.
inline constexpr int kTileRows = 4;
inline constexpr int kTileVectors = 3;
struct Vec {
  using V = __m256;
  using Mask = __m256i;
  static constexpr int kLanes = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V all(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static Mask first(int64_t lanes) { return first_lanes8(lanes); }
  struct BMask {};  // B's rows are read whole
  static BMask b_mask(int64_t) { return {}; }
  static V load_b_last(const float* p, BMask) { return load(p); }
  static void store(float* p, V x) { _mm256_storeu_ps(p, x); }
  static void store(float* p, Mask m, V x) { _mm256_maskstore_ps(p, m, x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
};
#endif
inline constexpr int kLanes = Vec::kLanes;  // floats per vector

// One tile of R rows and V vectors of C, of which the last has `last` lanes (1..kLanes), and
// `bias` (the tile's columns of a row vector, or null) added to every row as it is written:
// for each k, the row k of B (V loads) times each of the R elements A[i, k] (broadcasts).
// a points at op(A)[0, 0] of the tile, b and c at the tile's first column. C's mask for the
// last vector is made where it is used: held through the loop on AVX2 it would take one of
// the 16 registers that the sums and B need (AVX-512's B mask is a mask register).
template <bool TransA, int R, int V>
void tile(int64_t K, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, bool accumulate, float* c,
          int64_t ldc, int64_t last, const float* bias) {
  constexpr int L = kLanes;
  // The loops over r and v are unrolled (the pragmas): otherwise GCC keeps `sum` in memory
  // and stores all of it on every k.
  Vec::V sum[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) sum[r][v] = Vec::zero();
  const Vec::BMask b_last = Vec::b_mask(last);
  for (int64_t k = 0; k < K; ++k) {
    Vec::V row[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const float* p = b + k * ldb + L * v;
      row[v] = v == V - 1 ? Vec::load_b_last(p, b_last) : Vec::load(p);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec::V x = Vec::all(TransA ? a[k * lda + r] : a[r * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) sum[r][v] = Vec::fma(x, row[v], sum[r][v]);
    }
  }
  const Vec::V scale = Vec::all(alpha);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      float* out = c + r * ldc + L * v;
      // (No lambda for the masked loads here: one capturing by reference keeps GCC from holding
      // `sum` in registers, and it stores all of it on every k.)
      const bool edge = v == V - 1;
      Vec::V y = accumulate ? Vec::fma(sum[r][v], scale, edge ? Vec::load(out, Vec::first(last)) : Vec::load(out))
                            : Vec::mul(sum[r][v], scale);
      if (bias) y = Vec::add(y, edge ? Vec::load(bias + L * v, Vec::first(last)) : Vec::load(bias + L * v));
      if (edge) Vec::store(out, Vec::first(last), y);
      else Vec::store(out, y);
    }
}

using TileFn = void (*)(int64_t, float, const float*, int64_t, const float*, int64_t, bool, float*, int64_t, int64_t,
                        const float*);
// tile<TransA, R, V> for every R <= kTileRows and V <= kTileVectors, at [(R - 1)·kTileVectors + V - 1].
template <bool TransA, int... I>
constexpr std::array<TileFn, sizeof...(I)> tiles_of(std::integer_sequence<int, I...>) {
  return {&tile<TransA, I / kTileVectors + 1, I % kTileVectors + 1>...};
}
template <bool TransA>
inline constexpr auto kTiles = tiles_of<TransA>(std::make_integer_sequence<int, kTileRows * kTileVectors>{});

// tile<TransA, rows, width> for the rows and width (in vectors) given at run time: 1 <= rows
// <= kTileRows, 1 <= width <= kTileVectors.
template <bool TransA>
void tile_of_size(int rows, int width, int64_t K, float alpha, const float* a, int64_t lda, const float* b,
                  int64_t ldb, bool accumulate, float* c, int64_t ldc, int64_t last, const float* bias) {
  kTiles<TransA>[size_t((rows - 1) * kTileVectors + width - 1)](K, alpha, a, lda, b, ldb, accumulate, c, ldc, last,
                                                               bias);
}

}  // namespace copper::cpu::gemm_tile
#endif
