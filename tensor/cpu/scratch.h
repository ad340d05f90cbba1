// scratch.h — a thread's reusable, 64-byte-aligned work buffer for the products' packed
// operands (packed_gemm.cpp, bf16_gemm.cpp): grown when a call needs more, never shrunk, kept
// from call to call. Each Tag names a separate buffer, so that one thread can hold several.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace copper::cpu {

// At least `count` elements of T for the calling thread, aligned to 64 bytes; the contents are
// left from the thread's previous use of the same Tag.
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

}  // namespace copper::cpu
