// test_kernels.cpp — the vectorised f32 fast paths of tensor/cpu/ against their references.
//
// tests/test_ops.cpp checks every op's f32 forward against a double reference on small
// shapes; this file adds what it does not reach: exp_fast and the GELU/sigmoid/SiLU fast
// forms over wide ranges, cross-entropy over a wide vocabulary, the f32 backwards (the
// harness gradchecks in f64, which takes the reference path), causal_softmax against the
// masked softmax it replaces, and the lane helpers of the kernels written with intrinsics.
// (The attention's block products: test_block_gemm.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include <omp.h>

#include "tensor/backend.h"
#include "tensor/cpu/cope_interp.h"
#include "tensor/cpu/cope_term.h"
#include "tensor/cpu/fast_math.h"
#include "tensor/cpu/lanes.h"
#include "tensor/cpu/transpose.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace copper;

TEST(FastMath, ExpFastMatchesStdExp) {
  double worst = 0;
  for (float x = -86.5f; x < 88.7f; x += 0.001953125f) {  // 2^-9 steps: ~90k points
    const double ref = std::exp(double(x));
    worst = std::max(worst, std::abs(double(cpu::exp_fast(x)) - ref) / ref);
  }
  EXPECT_LT(worst, 3e-7);  // about 2 ulp of float
}

TEST(FastMath, ExpFastEdges) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(cpu::exp_fast(0.0f), 1.0f);
  EXPECT_EQ(cpu::exp_fast(-inf), 0.0f);
  EXPECT_EQ(cpu::exp_fast(-100.0f), 0.0f);
  EXPECT_EQ(cpu::exp_fast(inf), inf);
  EXPECT_EQ(cpu::exp_fast(100.0f), inf);
  EXPECT_TRUE(std::isnan(cpu::exp_fast(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isfinite(cpu::exp_fast(88.7f)));
  EXPECT_NEAR(cpu::exp_fast(88.7f) / std::exp(double(88.7f)), 1.0, 1e-6);
}

#if defined(__AVX512F__)
TEST(FastMath, Exp16IsExpFastOnEveryLane) {
  // The same steps, over the range and at the edges: equal to the last bit where the compiler
  // fuses exp_fast's multiply-adds as exp16 does (an optimized build), within 2 ulp otherwise.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> xs = {0.0f, -0.0f, -inf, inf, nan, -100.0f, 100.0f, -86.6f, -86.7f, 88.7f, 88.72283f, 88.8f};
  for (float x = -90.0f; x < 90.0f; x += 0.0078125f) xs.push_back(x);
  while (xs.size() % 16 != 0) xs.push_back(1.0f);
  for (size_t i = 0; i < xs.size(); i += 16) {
    alignas(64) float y[16];
    _mm512_store_ps(y, cpu::exp16(_mm512_loadu_ps(xs.data() + i)));
    for (size_t l = 0; l < 16; ++l) {
      const float want = cpu::exp_fast(xs[i + l]);
      if (std::isnan(want)) EXPECT_TRUE(std::isnan(y[l])) << xs[i + l];
      else if (std::isinf(want) || want == 0.0f) EXPECT_EQ(y[l], want) << "x = " << xs[i + l];
      else EXPECT_LE(std::abs(double(y[l]) - double(want)), 2.5e-7 * double(want)) << "x = " << xs[i + l];
    }
  }
}

// sigmoid16 against 1 / (1 + exp(-x)) in double: within 4 ulp over the range (as is
// 1 / (1 + exp_fast(-x))), the far tails (past the exp cap the sigmoid is tiny, not 0), and
// NaN through.
TEST(FastMath, Sigmoid16MatchesTheDefinition) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> xs = {0.0f, -0.0f, inf, -inf, nan, 100.0f, -100.0f, 86.6f, 87.0f, -79.0f, -81.0f, 17.0f, -17.0f};
  for (float x = -90.0f; x < 90.0f; x += 0.0068359375f) xs.push_back(x);
  while (xs.size() % 16 != 0) xs.push_back(0.5f);
  for (size_t i = 0; i < xs.size(); i += 16) {
    alignas(64) float y[16];
    _mm512_store_ps(y, cpu::sigmoid16(_mm512_loadu_ps(xs.data() + i)));
    for (size_t l = 0; l < 16; ++l) {
      const float x = xs[i + l];
      if (std::isnan(x)) {
        EXPECT_TRUE(std::isnan(y[l]));
        continue;
      }
      const double want = 1.0 / (1.0 + std::exp(-double(x)));
      if (-x > cpu::kSigmoidExpCap) {
        EXPECT_LE(double(y[l]), 1.0 / (1.0 + std::exp(double(cpu::kSigmoidExpCap)))) << x;
        continue;
      } EXPECT_LE(std::abs(double(y[l]) - want), 4.0 * std::ldexp(1.0, std::ilogb(want) - 23)) << "x = " << x;
    }
  }
}
#endif

// lanes.h and cope_interp.h's vector forms, for the instruction set this build has, against
// their definitions one lane at a time: the masks, the prefix and suffix sums (on whole
// numbers, so every order of addition gives the exact sum), the suffix maxima, the folds, the
// first and last lane, and the table positions of CoPE's interpolation.
#if defined(__AVX512F__)
TEST(Lanes, Avx512FormsAreTheirDefinitions) {
  for (int64_t count = -1; count <= 17; ++count)
    EXPECT_EQ(cpu::first_lanes(count), count <= 0 ? 0u : count >= 16 ? 0xFFFFu : (1u << count) - 1) << count;
  alignas(64) float x[16], y[16];
  alignas(64) double xd[8], yd[8];
  for (int l = 0; l < 16; ++l) x[l] = float((l * 7) % 11) - 3.0f;
  for (int l = 0; l < 8; ++l) xd[l] = double((l * 5) % 9) - 2.0;
  _mm512_store_ps(y, cpu::scan16(_mm512_load_ps(x)));
  _mm512_store_pd(yd, cpu::scan8(_mm512_load_pd(xd)));
  float sum = 0, mx = x[0];
  for (int l = 0; l < 16; ++l) {
    sum += x[l];
    mx = std::max(mx, x[l]);
    EXPECT_EQ(y[l], sum) << "lane " << l;
  }
  _mm512_store_ps(y, cpu::suffix_sums16(_mm512_load_ps(x)));
  for (int l = 15, suffix = 0; l >= 0; --l) EXPECT_EQ(y[l], float(suffix += int(x[l]))) << "lane " << l;
  alignas(64) float nonneg[16];
  for (int l = 0; l < 16; ++l) nonneg[l] = float((l * 7) % 5);
  _mm512_store_ps(y, cpu::suffix_max16(_mm512_load_ps(nonneg)));
  for (int l = 15; l >= 0; --l) EXPECT_EQ(y[l], *std::max_element(nonneg + l, nonneg + 16)) << "lane " << l;
  _mm512_store_ps(y, cpu::first_lane(_mm512_load_ps(x)));
  for (int l = 0; l < 16; ++l) EXPECT_EQ(y[l], x[0]);
  double sumd = 0;
  for (int l = 0; l < 8; ++l) EXPECT_EQ(yd[l], sumd += xd[l]) << "lane " << l;
  EXPECT_EQ(cpu::lanes_sum(_mm512_load_ps(x)), sum);
  EXPECT_EQ(cpu::lanes_max(_mm512_load_ps(x)), mx);
  _mm512_store_ps(y, cpu::last_lane(_mm512_load_ps(x)));
  _mm512_store_pd(yd, cpu::last_lane(_mm512_load_pd(xd)));
  for (int l = 0; l < 16; ++l) EXPECT_EQ(y[l], x[15]);
  for (int l = 0; l < 8; ++l) EXPECT_EQ(yd[l], xd[7]);
  for (int l = 0; l < 16; ++l) x[l] = 0.37f * float(l * l);  // whole and fractional positions
  x[3] = 5.0f;
  const cpu::CopeInterp16 v(_mm512_load_ps(x));
  alignas(64) int32_t lo[16];
  _mm512_store_epi32(lo, v.lo);
  _mm512_store_ps(y, v.w);
  for (int l = 0; l < 16; ++l) {
    const cpu::CopeInterp<float> want(x[l]);
    EXPECT_EQ(lo[l], want.lo);
    EXPECT_EQ(y[l], want.w);
  }
  // The table in registers read at positions over its 40 entries, the last one (the cap) too.
  float z[40];
  for (int i = 0; i < 40; ++i) z[i] = float((i * 13) % 17) - 8.0f;
  const cpu::CopeTableInRegisters table(z, 40);
  for (int l = 0; l < 16; ++l) x[l] = 2.6f * float(l);  // up to 39
  x[3] = 17.0f;
  const cpu::CopeInterp16 at(_mm512_load_ps(x));
  alignas(64) float step[16];
  _mm512_store_ps(y, table.at(at));
  _mm512_store_ps(step, table.step_at(at));
  for (int l = 0; l < 16; ++l) {
    const cpu::CopeInterp<float> want(x[l]);
    EXPECT_NEAR(y[l], want.at(z), 1e-5f) << "lane " << l;  // one fused multiply-add, or two steps
    EXPECT_EQ(step[l], want.lo == 39 ? 0.0f : z[want.lo + 1] - z[want.lo]) << "lane " << l;
  }
}

// CopeTableWindowed against CopeTableGathered, which reads the same entries one by one: on a
// walk's vectors (counts falling from lane 0 to lane 15 by gates of at most 1, the last at
// the table's top, past its end, or at 0 with the lanes above masked to 0 as key_gradients16
// loads them) and on vectors whose floors lie too far apart for one window (a NaN count read
// at the cap), which it must hand to the gathers. The two must agree to the bit.
TEST(Lanes, CopeWindowedTableIsTheGatheredOne) {
  for (int64_t npos : {65, 80, 200}) {
    std::vector<float> z(static_cast<size_t>(npos));
    for (int64_t i = 0; i < npos; ++i) z[size_t(i)] = float((i * 29) % 31) * 0.25f - 3.5f;
    const cpu::CopeTableWindowed windowed{z.data(), npos};
    const cpu::CopeTableGathered gathered{z.data(), npos};
    const float cap = float(npos - 1);
    std::vector<std::vector<float>> vectors;
    for (float top : {0.0f, 3.3f, 40.0f, cap - 14.5f, cap - 3.0f, cap, cap + 20.0f}) {
      std::vector<float> c(16);
      float count = top;
      for (int l = 15; l >= 0; --l) {  // gates of 1, 0 and in between, up from the last lane
        c[size_t(l)] = std::min(count, cap);
        count += l % 5 == 0 ? 1.0f : l % 3 == 0 ? 0.0f : 0.61f;
      }
      vectors.push_back(c);
    }
    std::vector<float> masked(16, 0.0f);  // key_gradients16's last vector: 5 keys, the rest 0
    for (int l = 0; l < 5; ++l) masked[size_t(l)] = 4.5f - 0.9f * float(l);
    vectors.push_back(masked);
    std::vector<float> spread(16, 2.25f);  // a NaN count taken at the cap among low ones
    spread[4] = cap;
    vectors.push_back(spread);
    for (const std::vector<float>& c : vectors) {
      const cpu::CopeInterp16 ip(_mm512_loadu_ps(c.data()));
      alignas(64) float got[16], want[16], got_step[16], want_step[16];
      _mm512_store_ps(got, windowed.at(ip));
      _mm512_store_ps(want, gathered.at(ip));
      _mm512_store_ps(got_step, windowed.step_at(ip));
      _mm512_store_ps(want_step, gathered.step_at(ip));
      for (int l = 0; l < 16; ++l) {
        EXPECT_EQ(got[l], want[l]) << "npos " << npos << " lane " << l << " count " << c[size_t(l)];
        EXPECT_EQ(got_step[l], want_step[l]) << "npos " << npos << " lane " << l << " count " << c[size_t(l)];
      }
    }
  }
}
#elif defined(__AVX2__)
TEST(Lanes, Avx2FormsAreTheirDefinitions) {
  for (int64_t count = -1; count <= 9; ++count) {
    alignas(32) int32_t m[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(m), cpu::first_lanes8(count));
    for (int64_t l = 0; l < 8; ++l) EXPECT_EQ(m[l], l < count ? -1 : 0) << count << " lane " << l;
  }
  alignas(32) float x[8], y[8];
  alignas(32) double xd[4], yd[4];
  for (int l = 0; l < 8; ++l) x[l] = float((l * 7) % 11) - 3.0f;
  for (int l = 0; l < 4; ++l) xd[l] = double((l * 5) % 9) - 2.0;
  _mm256_store_ps(y, cpu::scan8(_mm256_load_ps(x)));
  _mm256_store_pd(yd, cpu::scan4(_mm256_load_pd(xd)));
  float sum = 0;
  for (int l = 0; l < 8; ++l) EXPECT_EQ(y[l], sum += x[l]) << "lane " << l;
  _mm256_store_ps(y, cpu::suffix_sums8(_mm256_load_ps(x)));
  for (int l = 7, suffix = 0; l >= 0; --l) EXPECT_EQ(y[l], float(suffix += int(x[l]))) << "lane " << l;
  alignas(32) float nonneg[8];
  for (int l = 0; l < 8; ++l) nonneg[l] = float((l * 7) % 5);
  _mm256_store_ps(y, cpu::suffix_max8(_mm256_load_ps(nonneg)));
  for (int l = 7; l >= 0; --l) EXPECT_EQ(y[l], *std::max_element(nonneg + l, nonneg + 8)) << "lane " << l;
  _mm256_store_ps(y, cpu::first_lane(_mm256_load_ps(x)));
  for (int l = 0; l < 8; ++l) EXPECT_EQ(y[l], x[0]);
  double sumd = 0;
  for (int l = 0; l < 4; ++l) EXPECT_EQ(yd[l], sumd += xd[l]) << "lane " << l;
  _mm256_store_ps(y, cpu::last_lane(_mm256_load_ps(x)));
  _mm256_store_pd(yd, cpu::last_lane(_mm256_load_pd(xd)));
  for (int l = 0; l < 8; ++l) EXPECT_EQ(y[l], x[7]);
  for (int l = 0; l < 4; ++l) EXPECT_EQ(yd[l], xd[3]);
  const float z[8] = {1.0f, -2.0f, 4.0f, 0.5f, 3.0f, -1.0f, 2.0f, 7.0f};
  for (int l = 0; l < 8; ++l) x[l] = 0.83f * float(l);  // whole and fractional positions in [0, 7)
  x[5] = 3.0f;
  const cpu::CopeInterp8 v(_mm256_load_ps(x));
  alignas(32) int32_t lo[8], hi[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lo), v.lo);
  _mm256_store_si256(reinterpret_cast<__m256i*>(hi), v.hi);
  _mm256_store_ps(y, cpu::cope_table_at(z, v));
  for (int l = 0; l < 8; ++l) {
    const cpu::CopeInterp<float> want(x[l]);
    EXPECT_EQ(lo[l], want.lo);
    EXPECT_EQ(hi[l], want.hi);
    EXPECT_NEAR(y[l], want.at(z), 1e-6f) << "lane " << l;  // one fused multiply-add, or two steps
  }
}
#endif

// CopeTerm's walk down a row (cope_term.h), in f32 (on AVX-512 sixteen keys at a time, with the
// table in registers up to 64 entries and read through a window past them; on AVX2 the
// counts eight at a time) against the same walk in f64 (the
// plain loops): the logits (the capped keys' as the softmax finishes them), and the gates and
// counts kept for the backward. The rows mix gates of every size, saturated ones (0 and 1)
// and tiny ones among them, so that the f32 counts, summed in another order, must still
// never fall as j falls (what CopeTerm::grad's runs of floors rely on).
TEST(CopeWalk, F32RowsAreTheF64Walk) {
  const int64_t nq = 40, kv = 150, shift = kv - nq;
  Generator gen(17);
  for (int64_t npos : {5, 40, 64, 65, 200})
    for (bool official : {false, true}) {
      const std::vector<double> u = rand({nq * kv}, DType::f64, &gen).to_vector<double>(),
                                n = randn({nq * kv + nq * npos}, DType::f64, &gen).to_vector<double>();
      std::vector<float> sf(size_t(nq * kv)), zf(size_t(nq * npos));
      std::vector<double> sd(sf.size()), zd(zf.size());
      for (size_t i = 0; i < sf.size(); ++i) {  // logits: a quarter saturated either way, a tenth tiny gates
        const double x = u[i] < 0.12 ? -400.0 : u[i] < 0.25 ? 400.0 : u[i] < 0.35 ? -40.0 - 60.0 * u[i] : 3.0 * n[i];
        sd[i] = double(sf[i] = float(x));
      }
      for (size_t i = 0; i < zf.size(); ++i) zd[i] = double(zf[i] = float(n[sf.size() + i]));
      const float scale = 0.35f;
      cpu::CopeTerm<float> tf{scale, nq, npos, official};
      cpu::CopeTerm<double> td{double(scale), nq, npos, official};
      auto scf = tf.scratch(nq * kv, kv);
      auto scd = td.scratch(nq * kv, kv);
      scf.z = zf.data();
      scd.z = zd.data();
      tf.logits(sf.data(), nq, kv, 0, 0, shift, scf, true);
      td.logits(sd.data(), nq, kv, 0, 0, shift, scd, true);
      // The logits, the capped keys' finished as the softmax does (x scale + the row's term).
      auto logit = [&](const auto& rows, const auto& sc, const auto& term, int64_t r, int64_t j) {
        const double x = double(rows[size_t(r * kv + j)]);
        return j < sc.start[size_t(r)] ? x * double(term.scale) + double(sc.capped_term[size_t(r)]) : x;
      };
      for (int64_t r = 0; r < nq; ++r) {
        const int64_t keys = r + shift + 1, start = scf.start[size_t(r)];
        for (int64_t j = 0; j < keys; ++j) {
          const double want = logit(sd, scd, td, r, j);
          EXPECT_NEAR(logit(sf, scf, tf, r, j), want, 2e-4 * (1.0 + std::abs(want)))
              << "npos " << npos << " official " << official << " row " << r << " key " << j;
        }
        const float* c = scf.c.data() + r * kv;
        const float* g = scf.g.data() + r * kv;
        for (int64_t j = std::max(start, scd.start[size_t(r)]); j < keys; ++j) {
          EXPECT_NEAR(g[j], scd.g[size_t(r * kv + j)], 1e-6) << "row " << r << " key " << j;
          EXPECT_NEAR(c[j], scd.c[size_t(r * kv + j)], 1e-4) << "row " << r << " key " << j;
        }
        for (int64_t j = start; j + 1 < keys; ++j)
          ASSERT_GE(c[j], c[j + 1]) << "npos " << npos << " row " << r << ": the count fell at key " << j;
        if (start > 0) {
          EXPECT_EQ(c[start], float(npos - 1)) << "the first kept key is capped";
        }
      }
    }
}

// transpose.h's blocks (transpose16 on AVX-512) against its plain loop, on sizes with whole
// 16 x 16 blocks and edges, strided rows on both sides; and CpuBackend::copy making a
// transposed view contiguous, which runs them, against the element-by-element definition.
TEST(Transpose, BlocksAreThePlainLoop) {
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{16, 16}, {37, 50}, {64, 33}, {5, 80}}) {
    const int64_t lds = cols + 3, ldd = rows + 5;
    std::vector<float> src(size_t(rows * lds));
    for (size_t i = 0; i < src.size(); ++i) src[i] = float(i % 977) * 0.5f - 100.0f;
    std::vector<float> fast(size_t(cols * ldd), -1.0f), plain(size_t(cols * ldd), -1.0f);
    cpu::transpose(src.data(), lds, fast.data(), ldd, rows, cols, true);
    cpu::transpose(src.data(), lds, plain.data(), ldd, rows, cols, false);
    EXPECT_EQ(fast, plain) << rows << " x " << cols;
    EXPECT_EQ(plain[size_t(3 * ldd + 2)], src[size_t(2 * lds + 3)]);  // dst[j][i] = src[i][j]
  }
}

TEST(Transpose, CopyMakesATransposedViewContiguous) {
  for (DType t : {DType::f32, DType::f64, DType::bf16}) {
    Tensor a = randn({37, 50}).to(t);
    Tensor c = a.t().contiguous();
    ASSERT_EQ(c.shape(), (Shape{50, 37}));
    const std::vector<double> av = a.to_vector<double>(), cv = c.to_vector<double>();
    for (int64_t i = 0; i < 50; ++i)
      for (int64_t j = 0; j < 37; ++j) ASSERT_EQ(cv[size_t(i * 37 + j)], av[size_t(j * 50 + i)]) << dtype_name(t);
  }
}

namespace {
// max |a - b| / (1 + |b|) over all elements
double max_rel_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]) / (1 + std::abs(y[i])));
  return m;
}
}  // namespace

TEST(FastKernels, SoftmaxF32MatchesF64OnLongRows) {
  Generator g(3);
  for (bool log : {false, true}) {
    Tensor x = mul(randn({7, 1000}, DType::f64, &g), 5.0);  // wide logits
    Tensor y64 = log ? log_softmax(x, -1) : softmax(x, -1);
    Tensor y32 = log ? log_softmax(x.to(DType::f32), -1) : softmax(x.to(DType::f32), -1);
    EXPECT_LT(max_rel_diff(y32, y64), 2e-6) << (log ? "log_softmax" : "softmax");
  }
}

TEST(FastKernels, SoftmaxF32MaskedRow) {
  const float inf = std::numeric_limits<float>::infinity();
  Tensor x = from_vector(std::vector<float>{-inf, -inf, -inf, 1, -inf, 1}, {2, 3});
  std::vector<float> y = softmax(x, -1).to_vector<float>();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isnan(y[size_t(i)]) || y[size_t(i)] == 0 || y[size_t(i)] == 1.0f / 3);
  EXPECT_FLOAT_EQ(y[3], 0.5f);
  EXPECT_FLOAT_EQ(y[4], 0.0f);
  EXPECT_FLOAT_EQ(y[5], 0.5f);
}

TEST(FastKernels, SoftmaxBackwardF32MatchesF64) {
  Generator g(5);
  for (bool log : {false, true}) {
    Tensor x64 = randn({5, 300}, DType::f64, &g).requires_grad_();
    Tensor x32 = x64.detach().to(DType::f32).requires_grad_();
    Tensor r = randn({5, 300}, DType::f64, &g);
    Tensor y64 = log ? log_softmax(x64, -1) : softmax(x64, -1);
    Tensor y32 = log ? log_softmax(x32, -1) : softmax(x32, -1);
    sum(mul(y64, r)).backward();
    sum(mul(y32, r.to(DType::f32))).backward();
    EXPECT_LT(max_rel_diff(x32.grad(), x64.grad()), 1e-5) << (log ? "log_softmax" : "softmax");
  }
}

TEST(FastKernels, CrossEntropyF32MatchesF64) {
  Generator g(11);
  Tensor x64 = mul(randn({9, 5000}, DType::f64, &g), 4.0).requires_grad_();  // a wide vocabulary
  Tensor x32 = x64.detach().to(DType::f32).requires_grad_();
  Tensor targets = from_vector(std::vector<int64_t>{0, 4999, 17, -100, 2500, 3, 3, 4000, 1});
  Tensor l64 = cross_entropy(x64, targets), l32 = cross_entropy(x32, targets);
  EXPECT_LT(max_rel_diff(l32, l64), 2e-6);
  l64.backward();
  l32.backward();
  EXPECT_LT(max_rel_diff(x32.grad(), x64.grad()), 1e-6);
}

TEST(FastKernels, LayerNormF32MatchesF64) {
  Generator g(9);
  Tensor x = add(randn({6, 777}, DType::f64, &g), 3.0);  // an offset mean: cancellation matters
  Tensor w = randn({777}, DType::f64, &g), b = randn({777}, DType::f64, &g);
  Tensor y64 = layer_norm(x, w, b);
  Tensor y32 = layer_norm(x.to(DType::f32), w.to(DType::f32), b.to(DType::f32));
  EXPECT_LT(max_rel_diff(y32, y64), 1e-5);
}

TEST(FastMath, GeluPartsFastMatchesErf) {
  double worst_cdf = 0, worst_pdf = 0;
  for (float x = -12.0f; x < 12.0f; x += 0.0009765625f) {  // 2^-10 steps: ~25k points
    const double cdf = 0.5 * std::erfc(-double(x) / std::sqrt(2.0));
    const double pdf = std::exp(-0.5 * double(x) * double(x)) / std::sqrt(2 * 3.14159265358979323846);
    const cpu::GeluParts p = cpu::gelu_parts_fast(x);
    worst_cdf = std::max(worst_cdf, std::abs(double(p.cdf) - cdf));
    // relative to exp_fast's 2.5e-7 plus the float rounding of the argument x²/2
    worst_pdf = std::max(worst_pdf, std::abs(double(p.pdf) - pdf) / pdf / (1 + double(x) * double(x)));
  }
  EXPECT_LT(worst_cdf, 3e-7);  // the rational form's 7.5e-8 plus float rounding
  EXPECT_LT(worst_pdf, 3e-7);
  // the far negative tail keeps a relative accuracy (1 - (1 - tail) in float would be ~20 %
  // off here): Φ(-5) = 2.87e-7
  EXPECT_NEAR(cpu::gelu_parts_fast(-5.0f).cdf / 2.866515718791939e-7, 1.0, 5e-3);
}

// The f32 unary ops that take fast_math.h forms, forward and backward, against f64 (libm).
TEST(FastKernels, GeluSigmoidSiluF32MatchF64) {
  std::vector<double> xs;
  for (double x = -20; x < 20; x += 0.003) xs.push_back(x);
  const int64_t n = int64_t(xs.size());
  Tensor x64 = from_vector(xs, {n}).requires_grad_();
  Tensor x32 = x64.detach().to(DType::f32).requires_grad_();
  Generator g(11);
  Tensor r = randn({n}, DType::f64, &g);
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> ops = {
      {"gelu", [](const Tensor& t) { return gelu(t); }},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }},
      {"silu", [](const Tensor& t) { return silu(t); }}};
  for (const auto& [name, f] : ops) {
    x64.zero_grad();
    x32.zero_grad();
    Tensor y64 = f(x64), y32 = f(x32);
    EXPECT_LT(max_rel_diff(y32, y64), 1e-6) << name;
    sum(mul(y64, r)).backward();
    sum(mul(y32, r.to(DType::f32))).backward();
    EXPECT_LT(max_rel_diff(x32.grad(), x64.grad()), 2e-6) << name;
  }
}

// A norm's weight and bias gradients are column sums over all rows. The CPU sums them in
// chunks of rows on every thread (rows_and_column_sums); every chunk must count, whichever
// thread ran it. Against the sums written out with plain ops, on enough rows for many
// chunks and both threads.
TEST(FastKernels, LayerNormColumnSumsCoverEveryRow) {
  const int64_t rows = 700, n = 64;
  Generator g(13);
  Tensor x = randn({rows, n}, DType::f64, &g), r = randn({rows, n}, DType::f64, &g);
  Tensor w = randn({n}, DType::f64, &g).requires_grad_(), b = randn({n}, DType::f64, &g).requires_grad_();
  sum(mul(layer_norm(x, w, b), r)).backward();
  const Tensor centred = sub(x, mean(x, Shape{1}, true));
  const Tensor xhat = div(centred, sqrt(add(mean(mul(centred, centred), Shape{1}, true), 1e-5)));
  EXPECT_LT(max_rel_diff(w.grad(), sum(mul(r, xhat), Shape{0})), 1e-12);
  EXPECT_LT(max_rel_diff(b.grad(), sum(r, Shape{0})), 1e-12);
}

// A sum over many rows (a bias's gradient over the tokens) runs in chunks of rows on every
// thread, the chunks' partial sums then added in order: against a plain loop in double, for
// sums of whole rows and over the middle axis, with the same bits on one thread and on two.
TEST(FastKernels, ColumnSumsInChunksOfRowsCoverEveryRow) {
  Generator g(14);
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& shape : std::vector<Shape>{{1000, 300}, {2, 700, 40}, {3, 257, 2}}) {
      const Tensor x = randn(shape, dt, &g);
      const int64_t outer = shape.size() == 3 ? shape[0] : 1, n = shape[shape.size() - 2], inner = shape.back();
      const std::vector<double> v = x.to_vector<double>();
      std::vector<double> want(size_t(outer * inner), 0.0);
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < n; ++j)
          for (int64_t i = 0; i < inner; ++i) want[size_t(o * inner + i)] += v[size_t((o * n + j) * inner + i)];
      const int before = omp_get_max_threads();
      omp_set_num_threads(1);
      const std::vector<double> one = sum(x, Shape{int64_t(shape.size()) - 2}).to_vector<double>();
      omp_set_num_threads(2);
      const std::vector<double> two = sum(x, Shape{int64_t(shape.size()) - 2}).to_vector<double>();
      omp_set_num_threads(before);
      EXPECT_EQ(one, two) << dtype_name(dt) << " " << shape_str(shape);
      const double tol = dt == DType::f64 ? 1e-12 : 1e-5;
      for (size_t i = 0; i < want.size(); ++i)
        ASSERT_NEAR(two[i], want[i], tol * (1.0 + std::abs(want[i]))) << dtype_name(dt) << " " << shape_str(shape) << " " << i;
    }
}

// bias + GELU: the CPU's fused kernel (y and the slope in one pass, the backward a product
// with the slope) against Backend's default composition of binary, unary, unary_backward
// and reduce, which backends without a fused kernel (CUDA) run.
TEST(FastKernels, BiasGeluFusedMatchesTheDefaultComposition) {
  Backend& be = backend_for(kCPU);
  const int64_t rows = 300, n = 70;  // many chunks of rows, spread over the threads
  for (DType dt : {DType::f64, DType::f32}) {
    SCOPED_TRACE(dtype_name(dt));
    Generator g(12);
    const Tensor x = mul(randn({rows, n}, dt, &g), 3.0), bias = randn({n}, dt, &g), gr = randn({rows, n}, dt, &g);
    auto empty = [&](const Shape& s) { return Tensor::empty(s, dt); };
    Tensor y1 = empty({rows, n}), s1 = empty({rows, n}), y2 = empty({rows, n}), s2 = empty({rows, n});
    be.bias_gelu(x, bias, y1, s1, rows, n);
    be.Backend::bias_gelu(x, bias, y2, s2, rows, n);
    Tensor y3 = empty({rows, n});
    be.bias_gelu(x, bias, y3, Tensor(), rows, n);  // no slope wanted
    const double tol = dt == DType::f64 ? 1e-14 : 1e-6;
    EXPECT_LT(max_rel_diff(y1, y2), tol);
    EXPECT_LT(max_rel_diff(s1, s2), tol);
    EXPECT_EQ(max_rel_diff(y1, y3), 0.0);
    Tensor dx1 = empty({rows, n}), db1 = empty({n}), dx2 = empty({rows, n}), db2 = empty({n});
    be.bias_gelu_backward(s1, gr, dx1, db1, rows, n);
    be.Backend::bias_gelu_backward(s1, gr, dx2, db2, rows, n);
    EXPECT_LT(max_rel_diff(dx1, dx2), tol);
    EXPECT_LT(max_rel_diff(db1, db2), 100 * tol);
    EXPECT_LT(max_rel_diff(db1, sum(dx1, Shape{0})), 100 * tol) << "fused";
    EXPECT_LT(max_rel_diff(db2, sum(dx1, Shape{0})), 100 * tol) << "default";
  }
}

// causal_softmax is the fast path of attention's softmax(masked_fill(x, causal_mask, -inf)):
// the same values and gradients, in f64 and f32, square and with more keys than queries.
TEST(FastKernels, CausalSoftmaxMatchesMaskedSoftmax) {
  Generator g(13);
  for (DType dt : {DType::f64, DType::f32})
    for (Shape shape : {Shape{2, 3, 37, 37}, Shape{2, 5, 9}, Shape{1, 1}}) {
      const int64_t T = shape[shape.size() - 2], S = shape.back();
      Tensor x0 = mul(randn(shape, DType::f64, &g), 4.0);
      Tensor r = randn(shape, DType::f64, &g).to(dt);
      Tensor xf = x0.to(dt).requires_grad_(), xr = x0.to(dt).requires_grad_();
      Tensor yf = causal_softmax(xf);
      Tensor yr = softmax(masked_fill(xr, causal_mask(T, S, dt), -std::numeric_limits<double>::infinity()), -1);
      const double tol = dt == DType::f64 ? 1e-14 : 1e-6;
      EXPECT_LT(max_rel_diff(yf, yr), tol) << shape_str(shape) << " " << dtype_name(dt);
      sum(mul(yf, r)).backward();
      sum(mul(yr, r)).backward();
      EXPECT_LT(max_rel_diff(xf.grad(), xr.grad()), tol) << shape_str(shape) << " " << dtype_name(dt);
      // hidden keys: probability and gradient exactly 0
      std::vector<double> y = yf.to_vector<double>(), gx = xf.grad().to_vector<double>();
      for (size_t e = 0; e < y.size(); ++e) {
        const int64_t i = int64_t(e) / S % T, j = int64_t(e) % S;
        if (j > i + (S - T)) {
          EXPECT_EQ(y[e], 0.0);
          EXPECT_EQ(gx[e], 0.0);
        }
      }
    }
}

TEST(FastKernels, CausalSoftmaxRejectsMoreQueriesThanKeys) {
  try {
    causal_softmax(zeros({3, 2}));
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("causal_softmax"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[3,2]"), std::string::npos) << e.what();
  }
}
