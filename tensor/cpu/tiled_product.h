// tiled_product.h — what the products on a register tile (packed_gemm.cpp, bf16_gemm.cpp)
// share around their tiles: a thread's reusable buffer for packed operands, the rows of C each
// thread takes, C for a product with no terms, and a bias added to every row after a reference
// product.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <utility>

namespace copper::cpu {

// At least `count` elements of T for the calling thread, 64-byte aligned: a work buffer grown
// when a call needs more, never shrunk, kept from call to call with the contents its last use
// left. Each Tag names a separate buffer, so that one thread can hold several.
template <class Tag, class T>
T* thread_scratch(int64_t count) {
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<T, Free> buffer;
  thread_local int64_t capacity = 0;
  if (count > capacity) {
    const int64_t bytes = (count * int64_t(sizeof(T)) + 63) / 64 * 64;
    buffer.reset(static_cast<T*>(std::aligned_alloc(64, size_t(bytes))));
    capacity = buffer ? count : 0;
    if (!buffer) throw std::bad_alloc();
  }
  return buffer.get();
}

// The rows [first, second) of an m-row C that thread t of `threads` takes: whole tiles of
// `tile_rows` rows, split as evenly as they go (the last tile may be short).
inline std::pair<int64_t, int64_t> thread_rows(int64_t m, int64_t tile_rows, int64_t t, int64_t threads) {
  const int64_t tiles = (m + tile_rows - 1) / tile_rows;
  return {std::min(m, tiles * t / threads * tile_rows), std::min(m, tiles * (t + 1) / threads * tile_rows)};
}

// bias[j] added to every row of the m × n matrix C.
inline void add_bias_to_rows(int64_t m, int64_t n, const float* bias, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] += bias[j];
}

// C for a product with no terms (K = 0): 0, or C as it was with `accumulate`, plus the bias.
inline void product_without_terms(int64_t m, int64_t n, bool accumulate, float* c, int64_t ldc, const float* bias) {
  if (!accumulate)
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
  if (bias) add_bias_to_rows(m, n, bias, c, ldc);
}

}  // namespace copper::cpu
