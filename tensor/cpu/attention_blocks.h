// attention_blocks.h — what the fused attention's kernels (attention.cpp) and the terms
// they add to a block's logits (cope_term.h) share: the block of queries, the block
// products, and the heads of a (..., T, Dh) tensor as matrices.
#pragma once
#include <cblas.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "tensor/cpu/block_gemm.h"
#include "tensor/cpu/fast_math.h"
#include "tensor/tensor.h"

namespace copper::cpu {

// Queries per block: the scratch rows (kQueryBlock x Tk) stay in L2 for Tk up to a few thousand.
constexpr int64_t kQueryBlock = 64;

// The block products, C = alpha op(A) B (+ C with `accumulate`), row-major: op(A) is [m, K],
// A itself or (trans_a) the transpose of a [K, m] matrix; B is [K, n]. f32 runs block_gemm
// (block_gemm.h), whose AVX-512 tile reads both operands in place; f64, the gradchecks' type,
// runs BLAS. `causal` and `shift` say what the causal mask lets the tile skip; BLAS computes all.
inline void product(bool trans_a, int64_t m, int64_t n, int64_t K, double alpha, const float* a, int64_t lda,
                    const float* b, int64_t ldb, bool accumulate, float* c, int64_t ldc, Causal causal = Causal::none,
                    int64_t shift = 0) {
  block_gemm(trans_a, m, n, K, float(alpha), a, lda, b, ldb, accumulate, c, ldc, causal, shift);
}
inline void product(bool trans_a, int64_t m, int64_t n, int64_t K, double alpha, const double* a, int64_t lda,
                    const double* b, int64_t ldb, bool accumulate, double* c, int64_t ldc, Causal = Causal::none,
                    int64_t = 0) {
  if (m == 0 || n == 0) return;
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, CblasNoTrans, int(m), int(n), int(K), alpha, a,
              int(lda), b, int(ldb), accumulate ? 1.0 : 0.0, c, int(ldc));
}

// The (T, Dh) matrices of a (..., T, Dh) tensor with a unit last stride: where matrix b (the
// leading indices in row-major order) starts, and the row stride the products take as its
// leading dimension. Heads split off a (B, T, H·Dh) projection are such views, read in place.
template <class T>
struct Mats {
  T* base;
  std::vector<int64_t> start;
  int64_t ld;
  Mats(const Tensor& t, int64_t count) : base(static_cast<T*>(t.raw_data())), start(size_t(count)), ld(t.stride(-2)) {
    const int64_t lead = t.dim() - 2;
    std::vector<int64_t> idx(size_t(lead), 0);
    int64_t off = 0;
    for (int64_t b = 0; b < count; ++b) {
      start[size_t(b)] = off;
      for (int64_t d = lead - 1; d >= 0; --d) {  // the next leading index, last dim fastest
        off += t.stride(d);
        if (++idx[size_t(d)] < t.size(d)) break;
        off -= t.stride(d) * t.size(d);
        idx[size_t(d)] = 0;
      }
    }
  }
  T* operator()(int64_t b, int64_t row = 0) const { return base + start[size_t(b)] + row * ld; }
};

// The keys of a block's rows whose logits a term leaves for the softmax to finish (CoPE's
// capped keys, whose term is one constant per row): in row r the keys j < start[r] hold x_j,
// and their logit is x_j a + b[r] (a > 0); the keys after them hold their logits over the
// softmax's scale, as without a term. Default: no such keys.
template <class T>
struct CappedKeys {
  const int64_t* start = nullptr;
  const T* b = nullptr;
  T a = 0;
  int64_t count(int64_t r) const { return start ? start[r] : 0; }
};

inline float exp_of(float x) { return exp_fast(x); }
inline double exp_of(double x) { return std::exp(x); }

}  // namespace copper::cpu
