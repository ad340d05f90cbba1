// fast_math.h — float math functions written so that the compiler can vectorise them.
//
// A loop that calls std::exp makes one libm call per element, which GCC vectorises only
// under -ffast-math (glibc declares its vector variants for that mode only). exp_fast is
// plain arithmetic, so a `#pragma omp simd` loop over it becomes vector code: AVX-512, or
// AVX2 given -fno-trapping-math (set in CMakeLists.txt), which lets GCC turn the clamping
// ternaries into blends. It is used for f32 only; f64 and the reference paths keep std::exp.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace copper::cpu {

// exp(x) for float: x = n ln2 + r with |r| <= ln2/2 (Cody–Waite, ln2 split in two parts),
// exp(r) by a degree-6 polynomial (Cephes expf coefficients), 2^n put into the exponent
// bits. Relative error below 2.5e-7 (about 2 ulp) for x in [-86.6, 88.7]. Edge cases:
// x < -86.6 gives 0 (the true value is below 2.5e-38, at the bottom of the normal range),
// x > 88.72 gives +inf, NaN gives NaN.
inline constexpr float kExpLo = -86.6f, kExpHi = 88.72283f;  // exp_fast's range, as above
inline float exp_fast(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float xc = x < kExpLo ? kExpLo : x;
  xc = xc > kExpHi ? kExpHi : xc;
  const float t = xc * kLog2e + kShift;  // the low mantissa bits of t hold n = round(x log2 e)
  const float n = t - kShift;
  const float r = xc - n * kLn2Hi - n * kLn2Lo;
  float p = 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &t, sizeof bits);
  // 2^(n-1) from the exponent field, times 2 below: n = 128 (x near 88.7) stays finite
  const int32_t e = (bits - 0x4B400000 + 126) << 23;
  float scale;
  std::memcpy(&scale, &e, sizeof scale);
  float y = (p * scale) * 2.0f;
  y = x < kExpLo ? 0.0f : y;
  y = x > kExpHi ? __builtin_inff() : y;
  return x != x ? x : y;  // NaN in, NaN out
}

#if defined(__AVX512F__)
// exp_fast's arithmetic on sixteen lanes, for x already clamped to [kExpLo, kExpHi] (a NaN
// lane gives NaN): the part of exp16 below that callers who clamp x themselves can use alone.
inline __m512 exp16_clamped(__m512 xc) {
  const __mmask16 all = 0xFFFF;  // (the maskz forms: GCC 12 warns on the plain ones' undefined source)
  const __m512 shift = _mm512_set1_ps(12582912.0f);
  const __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), shift);
  const __m512 n = _mm512_sub_ps(t, shift);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.3981999507e-3f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  const __m512i e = _mm512_maskz_slli_epi32(
      all, _mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000)), _mm512_set1_epi32(126)),
      23);
  return _mm512_mul_ps(_mm512_mul_ps(p, _mm512_castsi512_ps(e)), _mm512_set1_ps(2.0f));
}

// exp_fast on sixteen lanes at once, the same steps in the same order, for kernels written
// with intrinsics (masked row tails, where a `#pragma omp simd` loop would finish one element
// at a time). tests/test_kernels.cpp holds it to exp_fast.
inline __m512 exp16(__m512 x) {
  const __m512 lo = _mm512_set1_ps(kExpLo), hi = _mm512_set1_ps(kExpHi);
  const __mmask16 all = 0xFFFF;
  __m512 y = exp16_clamped(_mm512_maskz_min_ps(all, _mm512_maskz_max_ps(all, x, lo), hi));
  y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), _mm512_setzero_ps());
  y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), _mm512_set1_ps(__builtin_inff()));
  return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);  // NaN in, NaN out
}

// The logistic sigmoid 1 / (1 + exp(-x)) on sixteen lanes: exp16's arithmetic on -x clamped
// to [kExpLo, kSigmoidExpCap], then the reciprocal from its 14-bit estimate and one Newton
// step, r (2 - d r), instead of a division (whose throughput is a small fraction of a
// multiply's). Within 4 units in the last place (tests/test_kernels.cpp). The cap keeps the
// denominator finite (a Newton step from the zero estimate of an infinite one gives NaN);
// the sigmoid there is below 1.8e-35 instead of a smaller number or 0. At the low end
// exp(-86.6) = 2.4e-38 leaves 1 + that = 1. NaN in, NaN out (min's and max's second operand
// is what a NaN passes on).
inline constexpr float kSigmoidExpCap = 80.0f;
inline __m512 sigmoid16(__m512 x) {
  const __mmask16 all = 0xFFFF;
  const __m512 minus_x = _mm512_sub_ps(_mm512_setzero_ps(), x);
  const __m512 clamped = _mm512_maskz_max_ps(
      all, _mm512_set1_ps(kExpLo), _mm512_maskz_min_ps(all, _mm512_set1_ps(kSigmoidExpCap), minus_x));
  const __m512 d = _mm512_add_ps(exp16_clamped(clamped), _mm512_set1_ps(1.0f));
  const __m512 r = _mm512_maskz_rcp14_ps(all, d);
  return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}
#endif

// The two halves of the exact GELU, x·Φ(x), and its derivative Φ(x) + x·φ(x), for float.
// Φ comes from the upper tail P(Z > |x|) = erfc(a)/2 with a = |x|/√2, by the rational form
// of Abramowitz & Stegun 7.1.26: erfc(a) ≈ (a1 s + a2 s² + ... + a5 s⁵)·exp(-a²), s = 1/(1 + p a),
// absolute error below 1.5e-7 (the form PyTorch's vectorised erf uses too). exp(-a²) is
// exp(-x²/2), so the density φ costs nothing more. Writing Φ(x) = tail for x < 0 (not
// 1 - (1 - tail)) keeps the far negative side accurate. The f64 path keeps std::erf.
struct GeluParts {
  float cdf;  // Φ(x)
  float pdf;  // φ(x)
};
inline GeluParts gelu_parts_fast(float x) {
  constexpr float kP = 0.3275911f, kA1 = 0.254829592f, kA2 = -0.284496736f, kA3 = 1.421413741f,
                  kA4 = -1.453152027f, kA5 = 1.061405429f;
  constexpr float kSqrt1_2 = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;
  const float a = (x < 0 ? -x : x) * kSqrt1_2;
  const float s = 1.0f / (1.0f + kP * a);
  const float e = exp_fast(-a * a);
  const float tail = 0.5f * s * (kA1 + s * (kA2 + s * (kA3 + s * (kA4 + s * kA5)))) * e;
  return {x >= 0 ? 1.0f - tail : tail, kInvSqrt2Pi * e};
}

}  // namespace copper::cpu
