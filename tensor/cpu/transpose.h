// transpose.h — a matrix turned into its transpose: dst[j·ldd + i] = src[i·lds + j] for the
// rows i < rows and columns j < cols of src. The fused attention (attention.cpp) turns each
// head's keys and values with it, and CpuBackend::copy (copy.cpp) a transposed view made
// contiguous (a weight's gradient arrives as one). Sixteen rows of src at a time, so that
// each row of dst is written in runs; on AVX-512 the f32 blocks of 16 × 16 are turned in
// registers (transpose16), the plain loop kept for the edges, other types and other CPUs.
// tests/test_kernels.cpp holds the two paths to each other.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace copper::cpu {

inline constexpr int64_t kTransposeRun = 16;

#if defined(__AVX512F__)
// A 16 × 16 block of floats: three rounds of shuffles, neighbouring rows' elements
// interleaved, then pairs of pairs, then the 128-bit quarters of four rows gathered into each
// row of the result. (The maskz forms of the intrinsics: GCC 12 warns on the plain ones'
// undefined source.)
inline void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd) {
  const __mmask16 all = 0xFFFF;
  const __mmask8 all8 = 0xFF;
  __m512 a[16], t[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm512_loadu_ps(src + i * lds);
  for (int i = 0; i < 16; i += 2) {  // per quarter k: rows i, i + 1 at columns 4k, 4k + 1 (and + 2, + 3)
    t[i] = _mm512_maskz_unpacklo_ps(all, a[i], a[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(all, a[i], a[i + 1]);
  }
  auto pairs = [&](__m512 x, __m512 y, bool high) {
    const __m512d xd = _mm512_castps_pd(x), yd = _mm512_castps_pd(y);
    return _mm512_castpd_ps(high ? _mm512_maskz_unpackhi_pd(all8, xd, yd) : _mm512_maskz_unpacklo_pd(all8, xd, yd));
  };
  for (int g = 0; g < 16; g += 4) {  // a[g + m], quarter k: rows g..g + 3 at column 4k + m
    a[g] = pairs(t[g], t[g + 2], false);
    a[g + 1] = pairs(t[g], t[g + 2], true);
    a[g + 2] = pairs(t[g + 1], t[g + 3], false);
    a[g + 3] = pairs(t[g + 1], t[g + 3], true);
  }
  for (int m = 0; m < 4; ++m) {  // column 4k + m: quarter k of a[m], a[4 + m], a[8 + m], a[12 + m]
    const __m512 v0 = _mm512_maskz_shuffle_f32x4(all, a[m], a[4 + m], 0x44);
    const __m512 v1 = _mm512_maskz_shuffle_f32x4(all, a[m], a[4 + m], 0xEE);
    const __m512 v2 = _mm512_maskz_shuffle_f32x4(all, a[8 + m], a[12 + m], 0x44);
    const __m512 v3 = _mm512_maskz_shuffle_f32x4(all, a[8 + m], a[12 + m], 0xEE);
    _mm512_storeu_ps(dst + m * ldd, _mm512_maskz_shuffle_f32x4(all, v0, v2, 0x88));
    _mm512_storeu_ps(dst + (4 + m) * ldd, _mm512_maskz_shuffle_f32x4(all, v0, v2, 0xDD));
    _mm512_storeu_ps(dst + (8 + m) * ldd, _mm512_maskz_shuffle_f32x4(all, v1, v3, 0x88));
    _mm512_storeu_ps(dst + (12 + m) * ldd, _mm512_maskz_shuffle_f32x4(all, v1, v3, 0xDD));
  }
}
#endif

// The rows [i0, i0 + run) of src (run <= kTransposeRun), every column, into dst.
template <class T>
void transpose_run(const T* src, int64_t lds, T* dst, int64_t ldd, int64_t i0, int64_t run, int64_t cols,
                   bool blocks = true) {
  int64_t j0 = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>)
    if (blocks && run == kTransposeRun)
      for (; j0 + kTransposeRun <= cols; j0 += kTransposeRun)
        transpose16(src + i0 * lds + j0, lds, dst + j0 * ldd + i0, ldd);
#else
  (void)blocks;  // the plain loop is the only form here
#endif
  for (int64_t j = j0; j < cols; ++j)
    for (int64_t i = i0; i < i0 + run; ++i) dst[j * ldd + i] = src[i * lds + j];
}

// The whole matrix; `blocks` false keeps to the plain loop (the reference the tests compare with).
template <class T>
void transpose(const T* src, int64_t lds, T* dst, int64_t ldd, int64_t rows, int64_t cols, bool blocks = true) {
  for (int64_t i0 = 0; i0 < rows; i0 += kTransposeRun)
    transpose_run(src, lds, dst, ldd, i0, std::min(kTransposeRun, rows - i0), cols, blocks);
}

}  // namespace copper::cpu
