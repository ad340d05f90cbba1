// fast_math.h — float math functions written so that the compiler can vectorise them.
//
// A loop that calls std::exp makes one libm call per element, which GCC vectorises only
// under -ffast-math (glibc declares its vector variants for that mode only). exp_fast is
// plain arithmetic, so a `#pragma omp simd` loop over it becomes AVX-512 code (about 4x
// faster than the libm call on one core of the reference machine). It is used for f32
// only; f64 and the reference paths keep std::exp.
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

}  // namespace copper::cpu
