// test_block_gemm.cpp — cpu::block_gemm, the fused attention's f32 block products
// (tensor/cpu/block_gemm.h), against cblas_sgemm. Without AVX-512 block_gemm is that same
// call, and the test holds trivially.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "tensor/cpu/block_gemm.h"

using namespace copper;

// block_gemm (the fused attention's f32 products) against cblas_sgemm, over the shapes its
// tiles cut unevenly: rows around the tile's 6, columns around its 16-float vectors and
// 64-column panels, K from 0, both forms of A, overwriting and accumulating, with row
// strides wider than the rows. An overwritten C starts as NaN: none of it may be read. With
// a causal mask, A has the mask's zeros and only the entries the mask needs are compared.
TEST(BlockGemm, MatchesBlas) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  int cases = 0;
  for (cpu::Causal causal : {cpu::Causal::none, cpu::Causal::output, cpu::Causal::a_rows, cpu::Causal::a_columns})
    for (int64_t shift : {-4, 0, 9})
      for (bool trans_a : {false, true})
        for (bool accumulate : {false, true})
          for (int64_t m : {1, 5, 6, 7, 13, 64})
            for (int64_t n : {1, 15, 16, 17, 63, 64, 65, 130})
              for (int64_t K : {0, 1, 7, 64}) {
                if (causal == cpu::Causal::none && shift != 0) continue;
                const bool keys_first = causal == cpu::Causal::a_columns;  // op(A) is [keys, queries]
                if (causal == cpu::Causal::a_rows && trans_a == keys_first) continue;
                const int64_t lda = (trans_a ? m : K) + 3, ldb = n + 5, ldc = n + 2;
                std::vector<float> a(size_t((trans_a ? K : m) * lda + 1)), b(size_t(K * ldb + 1)),
                    c0(size_t(m * ldc));
                for (float& x : a) x = normal(rng);
                for (float& x : b) x = normal(rng);
                for (float& x : c0) x = accumulate ? normal(rng) : nan;
                for (int64_t i = 0; i < m; ++i)  // the mask's zeros in op(A)
                  for (int64_t k = 0; k < K; ++k) {
                    float& x = trans_a ? a[size_t(k * lda + i)] : a[size_t(i * lda + k)];
                    if ((causal == cpu::Causal::a_rows && k > i + shift) ||
                        (causal == cpu::Causal::a_columns && k < i - shift))
                      x = 0;
                  }
                std::vector<float> fast = c0, ref = c0;
                cpu::block_gemm(trans_a, m, n, K, 0.75f, a.data(), lda, b.data(), ldb, accumulate, fast.data(), ldc,
                                causal, shift);
                cpu::block_gemm_reference(trans_a, m, n, K, 0.75f, a.data(), lda, b.data(), ldb, accumulate,
                                          ref.data(), ldc);
                double worst = 0;
                for (int64_t i = 0; i < m; ++i) {
                  const int64_t needed = causal == cpu::Causal::output ? std::clamp<int64_t>(i + shift + 1, 0, n) : n;
                  for (int64_t j = 0; j < needed; ++j) {
                    const size_t at = size_t(i * ldc + j);
                    worst = std::max(worst,
                                     std::abs(double(fast[at]) - double(ref[at])) / (1 + std::abs(double(ref[at]))));
                  }
                  for (int64_t j = n; j < ldc; ++j) {  // the columns past n are not C's: left as they were
                    const size_t at = size_t(i * ldc + j);
                    EXPECT_TRUE(std::isnan(fast[at]) ? std::isnan(c0[at]) : fast[at] == c0[at]);
                  }
                }
                EXPECT_LT(worst, 1e-5) << "causal " << int(causal) << " shift " << shift << " trans_a " << trans_a
                                       << " accumulate " << accumulate << " m " << m << " n " << n << " K " << K;
                ++cases;
              }
  EXPECT_GT(cases, 2000);
}
