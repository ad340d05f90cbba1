// dtype.cpp — dtype names and IEEE half-precision conversion (round to nearest even).
#include "tensor/dtype.h"

#include "tensor/error.h"

namespace copper {

DType dtype_from_name(const std::string& n) {
  if (n == "f32" || n == "float32" || n == "float") return DType::f32;
  if (n == "f64" || n == "float64" || n == "double") return DType::f64;
  if (n == "i32" || n == "int32") return DType::i32;
  if (n == "i64" || n == "int64") return DType::i64;
  if (n == "bf16" || n == "bfloat16") return DType::bf16;
  if (n == "f16" || n == "float16" || n == "half") return DType::f16;
  COPPER_THROW("dtype", "unknown dtype '{}'. HINT: use one of f32, f64, i32, i64, bf16, f16", n);
}

float f16_to_float(f16 h) {
  uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  uint32_t exp = (h.bits >> 10) & 0x1fu;
  uint32_t mant = h.bits & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;  // signed zero
    } else {     // subnormal: normalise the mantissa
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      u = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | mant << 13;  // inf or NaN
  } else {
    u = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

f16 float_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return f16{uint16_t(sign | 0x7e00u)};  // NaN
  if (absu >= 0x477ff000u) return f16{uint16_t(sign | 0x7c00u)};  // overflow to inf (>= 65520)
  if (absu < 0x38800000u) {                                        // below the smallest normal half
    if (absu < 0x33000000u) return f16{sign};                      // rounds to zero
    uint32_t e = absu >> 23;
    uint32_t mant = (absu & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;  // 14 + (112 - e) + ... : bits to drop so the result is a subnormal
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return f16{uint16_t(sign | half)};
  }
  uint32_t rounded = absu + 0xfffu + ((absu >> 13) & 1u);  // round half to even on the 13 dropped bits
  return f16{uint16_t(sign | ((rounded - 0x38000000u) >> 13))};
}

}  // namespace copper
