// test_block_gemm.cpp — the f32 products on the AVX-512 register tile against cblas_sgemm:
// cpu::block_gemm, the fused attention's block products (tensor/cpu/block_gemm.h), and
// cpu::packed_gemm, the layers' products (tensor/cpu/packed_gemm.h), on AVX-512 (and
// packed_gemm on AVX2, in the *_avx2 build of these tests); and cpu::bf16_gemm, mixed
// precision's products (tensor/cpu/bf16_gemm.h), on AVX512_BF16 against the widened operands'
// sgemm. Elsewhere each is that same call, and the tests hold trivially.
#include <gtest/gtest.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "tensor/cpu/bf16_gemm.h"
#include "tensor/cpu/block_gemm.h"
#include "tensor/cpu/packed_gemm.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace copper;

namespace {

// How far a product C = op(A)·op(B) (+ C with accumulate, + bias) computed two ways is apart,
// as a fraction of what rounding allows: both sums round as they go, in different orders, so
// each is within K·eps of the sum of the terms' magnitudes (and C's, and the bias's), and the
// two within twice that; the worst element's gap over its bound (<= 1 passes). The columns
// past n, up to ldc, are not C's: they must be left as they were in c0 (NaN stays NaN).
template <class AAt, class BAt>
double worst_gap(const std::vector<float>& fast, const std::vector<float>& ref, const std::vector<float>& c0,
                 int64_t m, int64_t n, int64_t K, int64_t ldc, bool accumulate, const float* bias, AAt a_at,
                 BAt b_at) {
  double worst = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const size_t at = size_t(i * ldc + j);
      double magnitude = (accumulate ? std::abs(double(c0[at])) : 0.0) + (bias ? std::abs(double(bias[j])) : 0.0);
      for (int64_t k = 0; k < K; ++k) magnitude += std::abs(a_at(i, k) * b_at(k, j));
      const double bound = 2.0 * double(K + 1) * std::numeric_limits<float>::epsilon() * magnitude;
      worst = std::max(worst, std::abs(double(fast[at]) - double(ref[at])) / std::max(bound, 1e-30));
    }
    for (int64_t j = n; j < ldc; ++j) {
      const size_t at = size_t(i * ldc + j);
      EXPECT_TRUE(std::isnan(fast[at]) ? std::isnan(c0[at]) : fast[at] == c0[at]);
    }
  }
  return worst;
}

}  // namespace

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

// packed_gemm against cblas_sgemm, over the shapes it cuts unevenly: rows around the tile's 6
// and across the threads' split, columns around the 16-float vectors and 64-column panels
// (the last panel zero-padded), depths from 0 and across its 512-deep slices, B in rows and
// transposed, overwriting and accumulating, with and without a bias, with leading dimensions
// wider than the rows. An
// overwritten C starts as NaN: none of it may be read.
TEST(PackedGemm, MatchesBlas) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  int cases = 0;
  for (bool trans_b : {false, true})
    for (bool accumulate : {false, true})
      for (bool with_bias : {false, true})
      for (int64_t m : {1, 5, 6, 7, 13, 301})
        for (int64_t n : {1, 15, 16, 17, 64, 65, 130})
          for (int64_t K : {0, 1, 7, 64, 300, 520, 1100}) {
            const int64_t lda = K + 3, ldb = (trans_b ? K : n) + 5, ldc = n + 2;
            std::vector<float> a(size_t(m * lda)), b(size_t((trans_b ? n : K) * ldb + 1)), c0(size_t(m * ldc));
            for (float& x : a) x = normal(rng);
            for (float& x : b) x = normal(rng);
            for (float& x : c0) x = accumulate ? normal(rng) : nan;
            std::vector<float> bias(static_cast<size_t>(n));
            for (float& x : bias) x = normal(rng);
            const float* bp = with_bias ? bias.data() : nullptr;
            std::vector<float> fast = c0, ref = c0;
            cpu::packed_gemm(m, n, K, a.data(), lda, b.data(), ldb, trans_b, accumulate, fast.data(), ldc, bp);
            cpu::packed_gemm_reference(m, n, K, a.data(), lda, b.data(), ldb, trans_b, accumulate, ref.data(), ldc, bp);
            const auto a_at = [&](int64_t i, int64_t k) { return double(a[size_t(i * lda + k)]); };
            const auto b_at = [&](int64_t k, int64_t j) { return double(trans_b ? b[size_t(j * ldb + k)] : b[size_t(k * ldb + j)]); };
            const double worst = worst_gap(fast, ref, c0, m, n, K, ldc, accumulate, bp, a_at, b_at);
            EXPECT_LE(worst, 1.0) << "trans_b " << trans_b << " accumulate " << accumulate << " bias " << with_bias
                                  << " m " << m << " n " << n << " K " << K;
            ++cases;
          }
  EXPECT_EQ(cases, 2352);
}

// The rows split over any number of threads (CI's machines have more cores than this one):
// fewer rows than threads, a thread's share not a multiple of the tile, one thread alone.
TEST(PackedGemm, AnyThreadCountGivesTheSameProduct) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  const int before = omp_get_max_threads();
  for (int64_t m : {5, 13, 301}) {
    const int64_t n = 70, K = 40;
    std::vector<float> a(size_t(m * K)), b(size_t(K * n));
    for (float& x : a) x = normal(rng);
    for (float& x : b) x = normal(rng);
    std::vector<float> one(size_t(m * n));
    omp_set_num_threads(1);
    cpu::packed_gemm(m, n, K, a.data(), K, b.data(), n, false, false, one.data(), n);
    for (int threads : {2, 3, 7}) {
      omp_set_num_threads(threads);
      std::vector<float> many(size_t(m * n), std::numeric_limits<float>::quiet_NaN());
      cpu::packed_gemm(m, n, K, a.data(), K, b.data(), n, false, false, many.data(), n);
      EXPECT_EQ(many, one) << "m " << m << " threads " << threads;  // the same sums, row by row
    }
  }
  omp_set_num_threads(before);
}

// Which products CpuBackend::gemm hands to packed_gemm: a layer's, not a small one, not one
// where B is large both ways (packed_gemm.h); none without AVX-512 or AVX2.
TEST(PackedGemm, TakesTheLayersProducts) {
  EXPECT_EQ(cpu::packed_gemm_takes(4096, 768, 256), cpu::kPackedGemmTiled);   // x Wᵀ into q, k and v
  EXPECT_EQ(cpu::packed_gemm_takes(4096, 256, 8192), cpu::kPackedGemmTiled);  // the head's dy W
  EXPECT_FALSE(cpu::packed_gemm_takes(64, 768, 256));
  EXPECT_FALSE(cpu::packed_gemm_takes(4096, 768, 8));
  EXPECT_FALSE(cpu::packed_gemm_takes(2048, 2048, 2048));
  EXPECT_FALSE(cpu::packed_gemm_takes(4096, 2048, 512));  // wide and deep: BLAS
  EXPECT_EQ(cpu::packed_gemm_takes(4096, 256, 2048), cpu::kPackedGemmTiled);  // deep, narrow
}

// Through the op: a linear layer's product with its bias and its gradients at a shape
// packed_gemm takes (the forward x Wᵀ + b with the bias added in the product's pass, and the
// input gradient dy W; the weight gradient stays with BLAS), against the same in f64, which
// BLAS computes.
TEST(PackedGemm, LinearThroughTheOpMatchesF64) {
  manual_seed(11);
  ASSERT_TRUE(cpu::packed_gemm_takes(300, 80, 96) == cpu::kPackedGemmTiled);
  const Tensor x = randn({3, 100, 96}).requires_grad_(), w = randn({80, 96}).requires_grad_(),
               b = randn({80}).requires_grad_(), dy = randn({3, 100, 80});
  const Tensor x64 = x.detach().to(DType::f64).requires_grad_(), w64 = w.detach().to(DType::f64).requires_grad_(),
               b64 = b.detach().to(DType::f64).requires_grad_();
  const Tensor y = linear(x, w, b), y64 = linear(x64, w64, b64);
  sum(y * dy).backward();
  sum(y64 * dy.to(DType::f64)).backward();
  auto gap = [](const Tensor& f32, const Tensor& f64) { return max(abs(f32.to(DType::f64) - f64)).item(); };
  EXPECT_LT(gap(y.detach(), y64.detach()), 1e-4);
  EXPECT_LT(gap(x.grad(), x64.grad()), 1e-4);
  EXPECT_LT(gap(w.grad(), w64.grad()), 1e-3);  // sums over 300 rows
  EXPECT_LT(gap(b.grad(), b64.grad()), 1e-4);
}

// bf16_gemm (mixed precision's products) against the widened operands' sgemm, over the shapes
// its tile cuts unevenly: rows around the tile's 6, the threads' split and the 96-row bands,
// columns around the vectors and panels, depths odd and even (a pair of k per word, the last
// one half empty) and across the 1024-deep slices, both forms of A (in place, or packed
// band by band) and of B, overwriting and accumulating, with and without a bias, leading
// dimensions wider than the rows (odd ones too: words that straddle 4-byte boundaries).
// An overwritten C starts as NaN: none of it may be read.
TEST(Bf16Gemm, MatchesTheWidenedProduct) {
  std::mt19937 rng(13);
  std::normal_distribution<float> normal;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  int cases = 0;
  for (bool trans_a : {false, true})
    for (bool trans_b : {false, true})
      for (bool accumulate : {false, true})
        for (int64_t m : {1, 7, 13, 200})
          for (int64_t n : {1, 17, 64, 130})
            for (int64_t K : {0, 1, 2, 7, 64, 301, 1100, 2050}) {
              const bool with_bias = (m + n + K) % 2 == 1;
              const int64_t lda = (trans_a ? m : K) + 3, ldb = (trans_b ? K : n) + 5, ldc = n + 2;
              std::vector<bf16> a(size_t((trans_a ? K : m) * lda + 1)), b(size_t((trans_b ? n : K) * ldb + 1));
              for (bf16& x : a) x = float_to_bf16(normal(rng));
              for (bf16& x : b) x = float_to_bf16(normal(rng));
              std::vector<float> c0(static_cast<size_t>(m * ldc)), bias(static_cast<size_t>(n));
              for (float& x : c0) x = accumulate ? normal(rng) : nan;
              for (float& x : bias) x = normal(rng);
              const float* bp = with_bias ? bias.data() : nullptr;
              std::vector<float> fast = c0, ref = c0;
              cpu::bf16_gemm(m, n, K, a.data(), lda, trans_a, b.data(), ldb, trans_b, accumulate, fast.data(), ldc, bp);
              cpu::bf16_gemm_reference(m, n, K, a.data(), lda, trans_a, b.data(), ldb, trans_b, accumulate, ref.data(),
                                       ldc, bp);
              // The products of two bf16 values are exact in f32: only the sums round.
              const auto a_at = [&](int64_t i, int64_t k) {
                return double(bf16_to_float(trans_a ? a[size_t(k * lda + i)] : a[size_t(i * lda + k)]));
              };
              const auto b_at = [&](int64_t k, int64_t j) {
                return double(bf16_to_float(trans_b ? b[size_t(j * ldb + k)] : b[size_t(k * ldb + j)]));
              };
              const double worst = worst_gap(fast, ref, c0, m, n, K, ldc, accumulate, bp, a_at, b_at);
              EXPECT_LE(worst, 1.0) << "trans_a " << trans_a << " trans_b " << trans_b << " accumulate " << accumulate
                                    << " bias " << with_bias << " m " << m << " n " << n << " K " << K;
              ++cases;
            }
  EXPECT_EQ(cases, 1024);
}

// The rows split over any number of threads, A in place and packed: the same sums, row by row.
TEST(Bf16Gemm, AnyThreadCountGivesTheSameProduct) {
  std::mt19937 rng(17);
  std::normal_distribution<float> normal;
  const int before = omp_get_max_threads();
  for (bool trans_a : {false, true})
    for (int64_t m : {5, 13, 301}) {
      const int64_t n = 70, K = 40;
      std::vector<bf16> a(size_t(m * K)), b(size_t(K * n));
      for (bf16& x : a) x = float_to_bf16(normal(rng));
      for (bf16& x : b) x = float_to_bf16(normal(rng));
      const int64_t lda = trans_a ? m : K;
      std::vector<float> one(size_t(m * n));
      omp_set_num_threads(1);
      cpu::bf16_gemm(m, n, K, a.data(), lda, trans_a, b.data(), n, false, false, one.data(), n);
      for (int threads : {2, 3, 7}) {
        omp_set_num_threads(threads);
        std::vector<float> many(size_t(m * n), std::numeric_limits<float>::quiet_NaN());
        cpu::bf16_gemm(m, n, K, a.data(), lda, trans_a, b.data(), n, false, false, many.data(), n);
        EXPECT_EQ(many, one) << "trans_a " << trans_a << " m " << m << " threads " << threads;
      }
    }
  omp_set_num_threads(before);
}

// A B packed once, read by products of its first K rows and n columns (the fused attention's
// keys and values, of which a block of queries sees the first): the widened product of that
// part of B.
TEST(Bf16Gemm, PackedPanelsServeEveryLeadingPart) {
  std::mt19937 rng(23);
  std::normal_distribution<float> normal;
  for (bool trans_a : {false, true})
    for (bool trans_b : {false, true})
      for (bool accumulate : {false, true})
        for (int64_t K : {0, 1, 7, 64, 130, 1100}) {
          const int64_t full_k = K + 5, full_n = 150, ldb = (trans_b ? full_k : full_n) + 3;
          std::vector<bf16> b(size_t((trans_b ? full_n : full_k) * ldb));
          for (bf16& x : b) x = float_to_bf16(normal(rng));
          cpu::Bf16Panels panels;
          panels.pack(full_k, full_n, b.data(), ldb, trans_b);
          for (int64_t n : {1, 64, 65, 150})
            for (int64_t m : {1, 6, 13, 64}) {
              const int64_t lda = (trans_a ? m : K) + 2, ldc = n + 1;
              std::vector<bf16> a(size_t((trans_a ? K : m) * lda + 1));
              for (bf16& x : a) x = float_to_bf16(normal(rng));
              std::vector<float> c0(size_t(m * ldc));
              for (float& x : c0) x = accumulate ? normal(rng) : std::numeric_limits<float>::quiet_NaN();
              std::vector<float> fast = c0, ref = c0;
              cpu::bf16_gemm_panels(m, n, K, a.data(), lda, trans_a, panels, accumulate, fast.data(), ldc);
              cpu::bf16_gemm_reference(m, n, K, a.data(), lda, trans_a, b.data(), ldb, trans_b, accumulate, ref.data(),
                                       ldc);
              const auto a_at = [&](int64_t i, int64_t k) {
                return double(bf16_to_float(trans_a ? a[size_t(k * lda + i)] : a[size_t(i * lda + k)]));
              };
              const auto b_at = [&](int64_t k, int64_t j) {
                return double(bf16_to_float(trans_b ? b[size_t(j * ldb + k)] : b[size_t(k * ldb + j)]));
              };
              EXPECT_LE(worst_gap(fast, ref, c0, m, n, K, ldc, accumulate, nullptr, a_at, b_at), 1.0)
                  << "trans_a " << trans_a << " trans_b " << trans_b << " accumulate " << accumulate << " m " << m
                  << " n " << n << " K " << K;
            }
          std::vector<float> c(full_n + 1);
          EXPECT_THROW(cpu::bf16_gemm_panels(1, full_n + 1, K, b.data(), 1, false, panels, false, c.data(), full_n + 1),
                       Error);
        }
}

// Rows so far apart (2^28 values) that the gather's 32-bit offsets cannot reach sixteen of
// them: the words of a transposed B, and of A's rows at an odd depth, are then read one by
// one. Nine rows each, so that the last row's offset would overflow. The operands are mapped
// without reserving memory: only each row's first K values are touched, and the gigabytes
// between them stay unmapped zero pages.
TEST(Bf16Gemm, RowsTooFarApartForTheGatherAreReadOneByOne) {
  const int64_t ld = (int64_t(1) << 28) + 3, rows = 9;
  const size_t bytes = size_t((rows - 1) * ld + 64) * sizeof(bf16);
  auto map = [&] {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : static_cast<bf16*>(p);
  };
  bf16* a = map();
  bf16* b = map();
  if (!a || !b) GTEST_SKIP() << "could not map two regions of " << bytes << " bytes";
  std::mt19937 rng(19);
  std::normal_distribution<float> normal;
  for (int64_t K : {7, 40}) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < K; ++k) {
        a[r * ld + k] = float_to_bf16(normal(rng));
        b[r * ld + k] = float_to_bf16(normal(rng));
      }
    std::vector<float> fast(size_t(rows * rows)), ref(size_t(rows * rows));
    cpu::bf16_gemm(rows, rows, K, a, ld, false, b, ld, true, false, fast.data(), rows);
    cpu::bf16_gemm_reference(rows, rows, K, a, ld, false, b, ld, true, false, ref.data(), rows);
    const auto a_at = [&](int64_t i, int64_t k) { return double(bf16_to_float(a[i * ld + k])); };
    const auto b_at = [&](int64_t k, int64_t j) { return double(bf16_to_float(b[j * ld + k])); };
    EXPECT_LE(worst_gap(fast, ref, std::vector<float>(fast.size()), rows, rows, K, rows, false, nullptr, a_at, b_at),
              1.0)
        << "K " << K;
  }
  munmap(a, bytes);
  munmap(b, bytes);
}
