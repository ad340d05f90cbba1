// bf16_gemm.h — the mixed-precision products (tensor/autocast.h) on the CPU: bf16 operands,
// f32 sums and result. With AVX512_BF16 (Zen 4, Cooper Lake, Sapphire Rapids) the register
// tile multiplies the bf16 pairs directly (VDPBF16PS: two products and their sum into each
// f32 lane), twice the f32 tile's multiply-adds per instruction; elsewhere the operands are
// widened to f32 (exactly) and cblas_sgemm multiplies them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "tensor/dtype.h"

namespace copper::cpu {

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
inline constexpr bool kBf16Tiled = true;
#else
inline constexpr bool kBf16Tiled = false;
#endif

// C = op(A) op(B), or C += op(A) op(B) with `accumulate`, and bias[j] added to every row if
// bias is given; A and B bf16, C and the bias f32, row-major:
//   op(A)[i, k] = a[i·lda + k], or a[k·lda + i] with trans_a      (i < m, k < K)
//   op(B)[k, j] = b[k·ldb + j], or b[j·ldb + k] with trans_b      (j < n)
//   C[i, j]     = c[i·ldc + j]
// Each product of two bf16 values is exact in f32; the sums round in f32 (in an order of the
// tile's choosing), and the tile's instruction treats subnormal inputs and results as zero.
// Without AVX512_BF16 this is bf16_gemm_reference.
void bf16_gemm(int64_t m, int64_t n, int64_t K, const bf16* a, int64_t lda, bool trans_a, const bf16* b, int64_t ldb,
               bool trans_b, bool accumulate, float* c, int64_t ldc, const float* bias = nullptr);

// Storage on 64-byte boundaries: each of the tile's loads is then one cache line.
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  friend bool operator==(const CacheLineAllocator&, const CacheLineAllocator&) { return true; }
};

// op(B) [K, n] (as in bf16_gemm) packed once for several products that read it: the fused
// attention packs each head's keys and values once and multiplies every block of queries by
// them (tensor/cpu/attention.cpp). With AVX512_BF16 these are the tile's panels of words;
// elsewhere op(B) copied into rows, for bf16_gemm_reference.
class Bf16Panels {
 public:
  void pack(int64_t K, int64_t n, const bf16* b, int64_t ldb, bool trans_b);
  int64_t depth() const { return K_; }
  int64_t width() const { return n_; }

 private:
  friend void bf16_gemm_panels(int64_t, int64_t, int64_t, const bf16*, int64_t, bool, const Bf16Panels&, bool, float*,
                               int64_t);
  int64_t K_ = 0, n_ = 0;
  std::vector<uint32_t, CacheLineAllocator<uint32_t>> words_;  // panels of 64 columns, (K + 1) / 2 words deep
  std::vector<bf16> rows_;  // without the tile: op(B), [K, n]
};

// C = op(A) B' (+ C with `accumulate`), where B' is the first K rows and n columns of the
// packed op(B) (K <= b.depth(), n <= b.width()), on the calling thread alone: the product of
// one block inside a parallel loop. With K odd and less than b.depth(), the row K of op(B)
// shares a word with row K - 1, and is multiplied by zero.
void bf16_gemm_panels(int64_t m, int64_t n, int64_t K, const bf16* a, int64_t lda, bool trans_a, const Bf16Panels& b,
                      bool accumulate, float* c, int64_t ldc);

// The same product with both operands widened to f32 and multiplied by cblas_sgemm, then the
// bias added: what bf16_gemm is tested against (tests/test_block_gemm.cpp).
void bf16_gemm_reference(int64_t m, int64_t n, int64_t K, const bf16* a, int64_t lda, bool trans_a, const bf16* b,
                         int64_t ldb, bool trans_b, bool accumulate, float* c, int64_t ldc,
                         const float* bias = nullptr);

}  // namespace copper::cpu
