// rotate.h — one row of rotary position embedding: p pairs (x[2m], x[2m+1]) turned by the
// angles whose cosines and sines are c[m] and s[m]. Backend::rotate_pairs (rotate.cpp) runs
// it over whole tensors; the fused attention (attention.cpp) over the rows of one block.
#pragma once
#include <cstdint>

namespace copper::cpu {

// o = x turned by the row's angles (sign -1: by minus them). x and o must not overlap.
template <class T>
void rotate_row(const T* __restrict x, const T* __restrict c, const T* __restrict s, T* __restrict o, int64_t p,
                T sign) {
#pragma omp simd
  for (int64_t m = 0; m < p; ++m) {
    const T x0 = x[2 * m], x1 = x[2 * m + 1], sm = sign * s[m];
    o[2 * m] = x0 * c[m] - x1 * sm;
    o[2 * m + 1] = x0 * sm + x1 * c[m];
  }
}

}  // namespace copper::cpu
