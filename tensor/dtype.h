// dtype.h — element types and the half-precision storage formats.
//
// f32 is the compute type, f64 is for references and gradient checks, i32/i64 hold
// indices, bf16/f16 are storage formats: kernels convert them to f32 to compute.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace copper {

enum class DType : uint8_t { f32, f64, i32, i64, bf16, f16 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::bf16: return 2;
    case DType::f16: return 2;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
  }
  return "?";
}

// Parse "f32", "float32", ... ; throws copper::Error listing the valid names.
DType dtype_from_name(const std::string& name);

inline bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16; }
inline bool is_integer(DType t) { return t == DType::i32 || t == DType::i64; }

// bfloat16: the top 16 bits of an IEEE f32, rounded to nearest even.
struct bf16 {
  uint16_t bits = 0;
};
// IEEE 754 binary16.
struct f16 {
  uint16_t bits = 0;
};

inline float bf16_to_float(bf16 h) {
  uint32_t u = uint32_t(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline bf16 float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};  // keep NaN a NaN
  uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);  // round half to even
  return bf16{uint16_t((u + rounding) >> 16)};
}

float f16_to_float(f16 h);
f16 float_to_f16(float f);

}  // namespace copper
