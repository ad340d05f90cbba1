// lanes.h — work across the lanes of one vector register, for the kernels written with
// intrinsics (the fused attention's rows, CoPE's term): the masks of a row's last, partial
// vector, prefix and suffix sums across the lanes, a vector's sum and largest lane, its first
// or last lane in every lane. AVX-512 forms, and the AVX2 forms that CoPE's term and the
// register tile use without AVX-512.
#pragma once
#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace copper::cpu {

#if defined(__AVX512F__)
// The mask of the first `count` of sixteen lanes (all of them for count >= 16, none for <= 0).
inline __mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : count > 0 ? __mmask16((1u << count) - 1) : __mmask16(0);
}

// x with its lanes moved up by N, zeros coming in at the bottom. (The maskz forms of the
// intrinsics, all lanes set: GCC 12 warns on the plain ones' undefined source.)
template <int N>
__m512 lanes_up(__m512 x) {
  return _mm512_castsi512_ps(
      _mm512_maskz_alignr_epi32(__mmask16(0xFFFF), _mm512_castps_si512(x), _mm512_setzero_si512(), 16 - N));
}
template <int N>
__m512d lanes_up(__m512d x) {
  return _mm512_castsi512_pd(
      _mm512_maskz_alignr_epi64(__mmask8(0xFF), _mm512_castpd_si512(x), _mm512_setzero_si512(), 8 - N));
}
// x with its lanes moved down by N, zeros coming in at the top.
template <int N>
__m512 lanes_down(__m512 x) {
  return _mm512_castsi512_ps(
      _mm512_maskz_alignr_epi32(__mmask16(0xFFFF), _mm512_setzero_si512(), _mm512_castps_si512(x), N));
}
// Each lane combined with all the lanes below it (a prefix) or above it (a suffix) in log2(16)
// steps, each with the vector's lanes moved by 1, 2, 4 and 8: their sum, or for x >= 0 their
// largest (the zeros moved in at the edge change nothing).
inline __m512 lanes_scan16(__m512 x, bool suffix, bool max) {
  const __mmask16 all = 0xFFFF;
  auto step = [&](__m512 y) { return max ? _mm512_maskz_max_ps(all, x, y) : _mm512_add_ps(x, y); };
  x = step(suffix ? lanes_down<1>(x) : lanes_up<1>(x));
  x = step(suffix ? lanes_down<2>(x) : lanes_up<2>(x));
  x = step(suffix ? lanes_down<4>(x) : lanes_up<4>(x));
  return step(suffix ? lanes_down<8>(x) : lanes_up<8>(x));
}
// Inclusive prefix sums across the lanes; suffix sums (lane l: lanes l..15); suffix maxima.
inline __m512 scan16(__m512 x) { return lanes_scan16(x, false, false); }
inline __m512 suffix_sums16(__m512 x) { return lanes_scan16(x, true, false); }
inline __m512 suffix_max16(__m512 x) { return lanes_scan16(x, true, true); }
inline __m512d scan8(__m512d x) {
  x = _mm512_add_pd(x, lanes_up<1>(x));
  x = _mm512_add_pd(x, lanes_up<2>(x));
  return _mm512_add_pd(x, lanes_up<4>(x));
}
// The sum and the largest of the sixteen lanes of x (in a tree: halves, quarters, ...).
inline __m512 lanes_fold(__m512 x, bool max) {
  const __mmask16 all = 0xFFFF;
  auto step = [&](__m512 y) { return max ? _mm512_maskz_max_ps(all, x, y) : _mm512_add_ps(x, y); };
  x = step(_mm512_maskz_shuffle_f32x4(all, x, x, 0x4E));  // 256-bit halves swapped
  x = step(_mm512_maskz_shuffle_f32x4(all, x, x, 0xB1));  // 128-bit quarters swapped in pairs
  x = step(_mm512_maskz_permute_ps(all, x, 0x4E));        // 64-bit pairs swapped
  x = step(_mm512_maskz_permute_ps(all, x, 0xB1));        // neighbours swapped
  return x;
}
inline float lanes_sum(__m512 x) { return _mm512_cvtss_f32(lanes_fold(x, false)); }
inline float lanes_max(__m512 x) { return _mm512_cvtss_f32(lanes_fold(x, true)); }
// The first lane of x in every lane.
inline __m512 first_lane(__m512 x) {
  return _mm512_maskz_permutexvar_ps(__mmask16(0xFFFF), _mm512_setzero_si512(), x);
}
// The last lane of x in every lane.
inline __m512 last_lane(__m512 x) { return _mm512_maskz_permutexvar_ps(__mmask16(0xFFFF), _mm512_set1_epi32(15), x); }
inline __m512d last_lane(__m512d x) { return _mm512_maskz_permutexvar_pd(__mmask8(0xFF), _mm512_set1_epi64(7), x); }
#elif defined(__AVX2__)
// The first `count` of eight 32-bit lanes set (all of them for count >= 8, none for <= 0), as
// AVX2's masked loads and stores take a mask: the lanes' sign bits.
inline __m256i first_lanes8(int64_t count) {
  const int32_t k = int32_t(count < 0 ? 0 : count > 8 ? 8 : count);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The AVX2 forms: inclusive prefix sums across the lanes of one vector, each 128-bit half
// scanned by byte shifts (which stay inside a half) and then the low half's total added to
// the high half; suffix sums and maxima likewise; the first or last lane in every lane.
inline __m256 scan8(__m256 x) {
  x = _mm256_add_ps(x, _mm256_castsi256_ps(_mm256_slli_si256(_mm256_castps_si256(x), 4)));
  x = _mm256_add_ps(x, _mm256_castsi256_ps(_mm256_slli_si256(_mm256_castps_si256(x), 8)));
  const __m256 totals = _mm256_permute_ps(x, 0xFF);  // each half's last lane, in all four of its lanes
  return _mm256_add_ps(x, _mm256_permute2f128_ps(totals, totals, 0x08));  // + (0, the low half's total)
}
inline __m256d scan4(__m256d x) {
  x = _mm256_add_pd(x, _mm256_castsi256_pd(_mm256_slli_si256(_mm256_castpd_si256(x), 8)));
  const __m256d totals = _mm256_permute_pd(x, 0xF);
  return _mm256_add_pd(x, _mm256_permute2f128_pd(totals, totals, 0x08));
}
// The same from the top: lane l gets the sum of lanes l..7 (each half by byte shifts, then
// the high half's total added to the low half), or for x >= 0 their largest.
inline __m256 lanes_suffix8(__m256 x, bool max) {
  auto step = [&](__m256 y) { return max ? _mm256_max_ps(x, y) : _mm256_add_ps(x, y); };
  x = step(_mm256_castsi256_ps(_mm256_srli_si256(_mm256_castps_si256(x), 4)));
  x = step(_mm256_castsi256_ps(_mm256_srli_si256(_mm256_castps_si256(x), 8)));
  const __m256 firsts = _mm256_permute_ps(x, 0x00);  // each half's first lane, in all four of its lanes
  return step(_mm256_permute2f128_ps(firsts, firsts, 0x81));  // (the high half's, 0)
}
inline __m256 suffix_sums8(__m256 x) { return lanes_suffix8(x, false); }
inline __m256 suffix_max8(__m256 x) { return lanes_suffix8(x, true); }
inline __m256 first_lane(__m256 x) { return _mm256_permutevar8x32_ps(x, _mm256_setzero_si256()); }
inline __m256 last_lane(__m256 x) { return _mm256_permutevar8x32_ps(x, _mm256_set1_epi32(7)); }
inline __m256d last_lane(__m256d x) { return _mm256_permute4x64_pd(x, 0xFF); }
#endif

}  // namespace copper::cpu
