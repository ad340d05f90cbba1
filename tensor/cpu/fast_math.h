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

namespace copper::cpu {

// exp(x) for float: x = n ln2 + r with |r| <= ln2/2 (Cody–Waite, ln2 split in two parts),
// exp(r) by a degree-6 polynomial (Cephes expf coefficients), 2^n put into the exponent
// bits. Relative error below 2.5e-7 (about 2 ulp) for x in [-86.6, 88.7]. Edge cases:
// x < -86.6 gives 0 (the true value is below 2.5e-38, at the bottom of the normal range),
// x > 88.72 gives +inf, NaN gives NaN.
inline float exp_fast(float x) {
  constexpr float kLo = -86.6f, kHi = 88.72283f;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float xc = x < kLo ? kLo : x;
  xc = xc > kHi ? kHi : xc;
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
  y = x < kLo ? 0.0f : y;
  y = x > kHi ? __builtin_inff() : y;
  return x != x ? x : y;  // NaN in, NaN out
}

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
