// test_tensor.cpp — the Tensor itself: dtypes and half-precision conversion, factories
// and seeded randomness, printing, views without copies, and the error messages that
// bad input must produce (never a crash).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <set>

#include "autograd/grad_mode.h"
#include "tensor/backend.h"
#include "tensor/ops.h"
#include "tensor/philox.h"
#include "tensor/random.h"

using namespace copper;

namespace {
Tensor F(std::vector<double> v, Shape s = {}) { return from_vector(v, s); }
std::vector<double> V(const Tensor& t) { return t.to_vector<double>(); }
float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The message of the copper::Error that `f` throws ("" and a test failure if none).
template <class Fn>
std::string error_of(Fn f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-copper exception: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "did not throw";
  return "";
}
#define EXPECT_ERROR_HAS(expr, text) \
  EXPECT_NE(error_of([&] { (void)(expr); }).find(text), std::string::npos) << "message: " << error_of([&] { (void)(expr); })
}  // namespace

// ---------------- dtypes ----------------

TEST(DType, SizesNamesAndParsing) {
  EXPECT_EQ(dtype_size(DType::f32), 4u);
  EXPECT_EQ(dtype_size(DType::f64), 8u);
  EXPECT_EQ(dtype_size(DType::i32), 4u);
  EXPECT_EQ(dtype_size(DType::i64), 8u);
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::f16), 2u);
  EXPECT_EQ(dtype_from_name("float32"), DType::f32);
  EXPECT_EQ(dtype_from_name("bf16"), DType::bf16);
  EXPECT_EQ(dtype_from_name("half"), DType::f16);
  EXPECT_ERROR_HAS(dtype_from_name("f8"), "unknown dtype 'f8'");
}

TEST(DType, IntegerAndFloatRoundTrips) {
  Tensor i = from_vector(std::vector<int64_t>{-3, 0, 7, int64_t(1) << 40});
  EXPECT_EQ(i.dtype(), DType::i64);
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{-3, 0, 7, int64_t(1) << 40}));
  EXPECT_EQ(i.to(DType::f64).to_vector<double>(), (std::vector<double>{-3, 0, 7, double(int64_t(1) << 40)}));
  Tensor i32 = from_vector(std::vector<int32_t>{-5, 5});
  EXPECT_EQ(i32.to(DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{-5, 5}));
  // float to int truncates toward zero, as a C++ cast
  EXPECT_EQ(F({-1.7, 2.9}).to(DType::i32).to_vector<int32_t>(), (std::vector<int32_t>{-1, 2}));
  Tensor f = from_vector(std::vector<float>{0.1f, -2.5f});
  EXPECT_EQ(f.to(DType::f64).to(DType::f32).to_vector<float>(), (std::vector<float>{0.1f, -2.5f}));
  EXPECT_THROW(f.data<double>(), Error);  // asking for the wrong element type
}

TEST(DType, BFloat16ExactRoundingAndSpecials) {
  EXPECT_EQ(float_to_bf16(1.0f).bits, 0x3f80);
  EXPECT_EQ(float_to_bf16(-2.0f).bits, 0xc000);
  EXPECT_EQ(bf16_to_float(bf16{0x4049}), 3.140625f);
  // halfway cases round to the even neighbour: 1 + 2^-8 lies between 1 and 1 + 2^-7
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20))), 1.0f + std::ldexp(1.0f, -7));
  // subnormals keep their top bits (bf16 has f32's exponent range)
  const float sub = bits_to_float(0x00010000u);
  EXPECT_EQ(bf16_to_float(float_to_bf16(sub)), sub);
  EXPECT_EQ(float_to_bf16(bits_to_float(0x00008000u)).bits, 0);  // a tie: to even (zero)
  // inf stays inf; NaN stays NaN (never rounds into inf)
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()).bits, 0x7f80);
  EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::infinity()).bits, 0xff80);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(bits_to_float(0x7f800001u)))));  // a NaN with low bits only
  // the largest finite float rounds up to inf, as IEEE rounding says
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()).bits, 0x7f80);
  // every bf16 value converts to float and back to itself
  for (uint32_t b = 0; b < 65536; ++b) {
    float f = bf16_to_float(bf16{uint16_t(b)});
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_bf16(f).bits, b) << "bf16 bits " << b;
  }
}

TEST(DType, Float16ExactRoundingSubnormalsAndSpecials) {
  EXPECT_EQ(float_to_f16(1.0f).bits, 0x3c00);
  EXPECT_EQ(float_to_f16(-2.0f).bits, 0xc000);
  EXPECT_EQ(float_to_f16(65504.0f).bits, 0x7bff);  // the largest half
  EXPECT_EQ(float_to_f16(65519.0f).bits, 0x7bff);  // still rounds down
  EXPECT_EQ(float_to_f16(65520.0f).bits, 0x7c00);  // rounds to inf
  EXPECT_EQ(f16_to_float(f16{0x3555}), 0.333251953125f);
  // ties to even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10
  EXPECT_EQ(float_to_f16(1.0f + std::ldexp(1.0f, -11)).bits, 0x3c00);
  EXPECT_EQ(float_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)).bits, 0x3c02);
  // subnormals: 2^-24 is the smallest; 2^-25 is a tie and goes to 0 (even); 1.5 * 2^-24 goes to 2 * 2^-24
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -24)).bits, 0x0001);
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -25)).bits, 0x0000);
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -25) * 1.01f).bits, 0x0001);
  EXPECT_EQ(float_to_f16(1.5f * std::ldexp(1.0f, -24)).bits, 0x0002);
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -14)).bits, 0x0400);  // the smallest normal
  EXPECT_EQ(f16_to_float(f16{0x03ff}), 1023 * std::ldexp(1.0f, -24));
  EXPECT_EQ(float_to_f16(-0.0f).bits, 0x8000);
  EXPECT_EQ(float_to_f16(std::numeric_limits<float>::infinity()).bits, 0x7c00);
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(f16_to_float(f16{0xfc00})));
  for (uint32_t b = 0; b < 65536; ++b) {
    float f = f16_to_float(f16{uint16_t(b)});
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_f16(f).bits, b) << "f16 bits " << b;
  }
}

TEST(DType, HalfTensorsConvertThroughCopy) {
  Tensor x = from_vector(std::vector<float>{1.0f, 0.1f, -65504.0f, 1e-6f});
  Tensor h = x.to(DType::f16), b = x.to(DType::bf16);
  EXPECT_EQ(h.dtype(), DType::f16);
  std::vector<float> hv = h.to_vector<float>(), bv = b.to(DType::f32).to_vector<float>();
  for (size_t i = 0; i < hv.size(); ++i) {
    float want = f16_to_float(float_to_f16(x.to_vector<float>()[i]));
    EXPECT_EQ(hv[i], want);
    EXPECT_EQ(bv[i], bf16_to_float(float_to_bf16(x.to_vector<float>()[i])));
  }
  EXPECT_EQ(hv[0], 1.0f);
  // half tensors are storage: compute ops ask for a conversion
  EXPECT_ERROR_HAS(add(h, h), "HINT: convert with .to(DType::f32)");
}

// ---------------- factories and randomness ----------------

TEST(Factory, ConstantsAndRanges) {
  EXPECT_EQ(V(zeros({2, 2})), (std::vector<double>{0, 0, 0, 0}));
  EXPECT_EQ(zeros({2}).dtype(), DType::f32);
  EXPECT_EQ(V(ones({3}, DType::i32)), (std::vector<double>{1, 1, 1}));
  EXPECT_EQ(V(full({2}, 2.5, DType::f64)), (std::vector<double>{2.5, 2.5}));
  Tensor t = F({1, 2, 3});
  EXPECT_EQ(V(zeros_like(t)), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(ones_like(t).dtype(), DType::f64);
  EXPECT_EQ(V(full_like(t, -1)), (std::vector<double>{-1, -1, -1}));
  EXPECT_EQ(scalar_tensor(4).dim(), 0);
  EXPECT_EQ(scalar_tensor(4).item(), 4);
  EXPECT_EQ(arange(4).dtype(), DType::i64);
  EXPECT_EQ(arange(4).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(V(arange(1, 2, 0.25, DType::f64)), (std::vector<double>{1, 1.25, 1.5, 1.75}));
  EXPECT_EQ(V(arange(3, 0, -1)), (std::vector<double>{3, 2, 1}));
  EXPECT_EQ(arange(3, 3).numel(), 0);
  EXPECT_THROW(arange(0, 1, 0), Error);
  EXPECT_EQ(from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}).shape(), (Shape{2, 3}));
  EXPECT_ERROR_HAS(from_vector(std::vector<double>{1, 2, 3}, {2, 2}), "[from_vector] 3 values for shape [2,2]");
  EXPECT_ERROR_HAS(zeros({2, -1}), "negative size");
}

TEST(Factory, RandomDrawsAreInRangeAndSeeded) {
  Generator g(1);
  Tensor u = rand({10000}, DType::f64, &g, -2, 3);
  std::vector<double> uv = V(u);
  for (double v : uv) ASSERT_TRUE(v >= -2 && v < 3);
  EXPECT_NEAR(mean(u).item(), 0.5, 0.05);
  Tensor n = randn({20000}, DType::f64, &g);
  EXPECT_NEAR(mean(n).item(), 0, 0.03);
  EXPECT_NEAR(mean(square(n)).item(), 1, 0.05);
  Tensor r = randint(-3, 4, {1000}, DType::i64, &g);
  std::vector<int64_t> rv = r.to_vector<int64_t>();
  std::set<int64_t> seen(rv.begin(), rv.end());
  EXPECT_EQ(seen, (std::set<int64_t>{-3, -2, -1, 0, 1, 2, 3}));
  EXPECT_THROW(randint(2, 2, {1}), Error);

  // the default generator: manual_seed makes draws repeat
  manual_seed(123);
  std::vector<double> a = V(randn({5}, DType::f64));
  manual_seed(123);
  EXPECT_EQ(V(randn({5}, DType::f64)), a);
  EXPECT_NE(V(randn({5}, DType::f64)), a);
  // two generators with one seed agree; the state can be saved and restored exactly
  Generator g1(9), g2(9);
  EXPECT_EQ(V(rand({4}, DType::f64, &g1)), V(rand({4}, DType::f64, &g2)));
  g1.normal();  // leaves a spare normal pending: it is part of the state
  auto st = g1.state();
  std::vector<double> next = V(randn({3}, DType::f64, &g1));
  g2.set_state(st);
  EXPECT_EQ(V(randn({3}, DType::f64, &g2)), next);
}

// rand and randn are the Philox streams of tensor/philox.h, keyed by one draw of the generator,
// at any thread count; bf16 is drawn in f32 and rounded; integer dtypes are refused.
TEST(Factory, RandomDrawsAreThePhiloxStreams) {
  Generator g(77), probe(77);
  const uint64_t key_u = probe.next_u64(), key_n = probe.next_u64();
  Tensor u = rand({4099}, DType::f32, &g, -1, 3), n = randn({4099}, DType::f64, &g, 0.5, 2);
  const std::vector<double> uv = V(u), nv = V(n);
  for (size_t i = 0; i < uv.size(); ++i) {
    // to rounding (the compiler may fuse a + b x into one multiply-add in one place only)
    ASSERT_NEAR(uv[i], -1 + 4 * double(philox::uniform_at(key_u, i)), 1e-6) << i;
    ASSERT_NEAR(nv[i], 0.5 + 2 * philox::normal_at(key_n, i), 1e-14) << i;
  }
  EXPECT_EQ(g.state(), probe.state());  // one draw per tensor, whatever its size
  Generator a(5), b(5);
  EXPECT_EQ(V(randn({10}, DType::bf16, &a)), V(randn({10}, DType::f32, &b).to(DType::bf16)));
  EXPECT_ERROR_HAS(rand({3}, DType::i64), "[rand] makes floating tensors");
}

// ---------------- printing ----------------

TEST(Print, NumpyLikeText) {
  EXPECT_EQ(F({1, 2, 3, 4}, {2, 2}).to(DType::f32).str(), "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], f32[2,2])");
  EXPECT_EQ(arange(3).str(), "tensor([0, 1, 2], i64[3])");
  EXPECT_EQ(scalar_tensor(2.5, DType::f64).str(), "tensor(2.5000, f64[])");
  EXPECT_EQ(zeros({0}).str(), "tensor([], f32[0])");
  EXPECT_EQ(Tensor().str(), "tensor(undefined)");
  EXPECT_EQ(fmt::format("{}", F({-1.5})), "tensor([-1.5000], f64[1])");
  // a transposed view prints its logical order
  EXPECT_EQ(arange(4).view({2, 2}).t().str(), "tensor([[0, 2],\n        [1, 3]], i64[2,2])");
  // big tensors are summarised with "..."
  std::string big = arange(2000).str();
  EXPECT_NE(big.find("[0, 1, 2, ..., 1997, 1998, 1999]"), std::string::npos) << big;
}

// ---------------- views ----------------

TEST(View, ViewsShareStorageAndCopyNothing) {
  Tensor x = arange(0, 12, 1, DType::f64).view({3, 4});
  const Tensor views[] = {x.view({4, 3}), x.reshape({2, 6}), x.t(), x.permute({1, 0}), x.narrow(1, 1, 2),
                          x.slice(0, 0, 3, 2), x.select(1, 2), x.unsqueeze(0), x.flip({0}), x.flatten(),
                          x.expand({2, 3, 4}), x.detach()};
  for (const Tensor& v : views) EXPECT_TRUE(v.same_storage(x)) << v.repr_shape();
  // writing through a view changes the base
  copy_(x.select(0, 1), F({-1, -2, -3, -4}));
  EXPECT_EQ(x.at({1, 2}), -3);
  EXPECT_EQ(x.t().at({2, 1}), -3);
}

TEST(View, StridesOffsetsAndContiguity) {
  Tensor x = zeros({2, 3, 4}, DType::f64);
  EXPECT_EQ(x.strides(), (Shape{12, 4, 1}));
  EXPECT_TRUE(x.is_contiguous());
  Tensor t = x.transpose(0, 2);
  EXPECT_EQ(t.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(t.strides(), (Shape{1, 4, 12}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(x.narrow(2, 1, 2).offset(), 1);
  EXPECT_EQ(x.slice(1, 1, 3).offset(), 4);
  // negative dims count from the end
  EXPECT_EQ(x.size(-1), 4);
  EXPECT_EQ(x.transpose(-1, -3).shape(), t.shape());
  EXPECT_EQ(x.unsqueeze(-1).shape(), (Shape{2, 3, 4, 1}));
  // expand makes stride-0 dims: every row reads the same memory
  Tensor e = F({1, 2, 3}).expand({4, 3});
  EXPECT_EQ(e.strides(), (Shape{0, 1}));
  EXPECT_EQ(V(sum(e, {0})), (std::vector<double>{4, 8, 12}));
  // flip has negative strides and an offset at the last element
  Tensor f = F({1, 2, 3}).flip({0});
  EXPECT_EQ(f.strides(), (Shape{-1}));
  EXPECT_EQ(f.offset(), 2);
  EXPECT_EQ(V(f), (std::vector<double>{3, 2, 1}));
  EXPECT_EQ(V(f.flip({0})), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(V(exp(f)), V(exp(F({3, 2, 1}))));  // kernels follow negative strides
  EXPECT_EQ(V(f.view({1, 3})), (std::vector<double>{3, 2, 1}));  // a flipped run is still viewable
  // dense: one block of memory, each element in its own place, in some order of the dims
  EXPECT_TRUE(x.is_dense());
  EXPECT_TRUE(t.is_dense());                     // a permutation of contiguous
  EXPECT_FALSE(e.is_dense());                    // broadcast: rows share memory
  EXPECT_FALSE(x.narrow(2, 1, 2).is_dense());    // gaps between the rows
  EXPECT_TRUE(x.narrow(0, 1, 1).is_dense());     // one whole block
}

TEST(View, ContiguousCopiesOnlyWhenNeeded) {
  Tensor x = zeros({3, 4});
  EXPECT_EQ(x.contiguous().impl(), x.impl());  // already contiguous: the same tensor
  Tensor c = x.t().contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_FALSE(c.same_storage(x));
  // size-1 dims do not break contiguity, whatever their stride
  EXPECT_TRUE(x.narrow(0, 1, 1).is_contiguous());
  EXPECT_TRUE(x.unsqueeze(1).is_contiguous());
}

TEST(View, ViewRefusesWhatReshapeCopies) {
  Tensor x = arange(0, 6, 1, DType::f64).view({2, 3});
  std::string msg = error_of([&] { x.t().view({6}); });
  EXPECT_NE(msg.find("[view] cannot view [3,2] with strides [1,3] as [6] without a copy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT: use reshape()"), std::string::npos) << msg;
  Tensor r = x.t().reshape({6});
  EXPECT_FALSE(r.same_storage(x));
  EXPECT_EQ(V(r), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  // a view that only splits or merges contiguous runs is allowed on a non-contiguous tensor
  Tensor n = arange(0, 24, 1, DType::f64).view({2, 3, 4}).narrow(2, 0, 2);  // [2,3,2], rows of 2 apart
  EXPECT_TRUE(n.view({6, 2}).same_storage(n));
  EXPECT_THROW(n.view({12}), Error);
  EXPECT_ERROR_HAS(x.view({4, 2}), "[view] shape [4,2] has 8 elements but the tensor [2,3] has 6");
  EXPECT_ERROR_HAS(x.view({-1, -1}), "only one dimension can be -1");
}

TEST(View, ZeroSizeDims) {
  Tensor z = zeros({0, 3}, DType::f64);
  EXPECT_EQ(z.numel(), 0);
  EXPECT_EQ(z.t().shape(), (Shape{3, 0}));
  EXPECT_EQ(z.reshape({3, 0, 5}).shape(), (Shape{3, 0, 5}));
  EXPECT_ERROR_HAS(z.view({0, -1}), "cannot infer -1");  // -1 next to a 0 could be anything
  EXPECT_EQ(V(sum(z, {0})), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(exp(z).shape(), (Shape{0, 3}));
  EXPECT_EQ(cat({z, ones({2, 3}, DType::f64)}).shape(), (Shape{2, 3}));
  EXPECT_EQ(z.flip({0}).shape(), (Shape{0, 3}));
  EXPECT_EQ(F({1, 2}).narrow(0, 2, 0).numel(), 0);
  EXPECT_EQ(V(z.expand({2, 0, 3})), std::vector<double>{});
  EXPECT_THROW(max(z), Error);   // the maximum of nothing
  EXPECT_THROW(mean(z), Error);  // the mean of nothing
}

TEST(View, ZeroDimTensors) {
  Tensor s = scalar_tensor(3, DType::f64);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.reshape({1, 1}).shape(), (Shape{1, 1}));
  EXPECT_EQ(s.unsqueeze(0).shape(), (Shape{1}));
  EXPECT_EQ(s.flatten().shape(), (Shape{1}));
  EXPECT_EQ(s.expand({2, 2}).shape(), (Shape{2, 2}));
  EXPECT_EQ(s.at({}), 3);
  EXPECT_EQ(sum(s).item(), 3);
  EXPECT_EQ(softmax(s).item(), 1);
  EXPECT_ERROR_HAS(s.size(0), "[size]");  // a 0-d tensor has no dim 0
}

// ---------------- error messages ----------------

TEST(Errors, MessagesNameTheOpAndTheShapes) {
  Tensor a = zeros({2, 3}), b = zeros({4, 5});
  EXPECT_ERROR_HAS(matmul(a, b), "[matmul] inner dimensions differ: [2,3] x [4,5]");
  EXPECT_ERROR_HAS(add(a, b), "[add] cannot broadcast shapes [2,3] and [4,5]");
  EXPECT_ERROR_HAS(mul(zeros({2, 3}), zeros({3, 2})), "[2,3] and [3,2]");
  EXPECT_ERROR_HAS(where(zeros({2}), zeros({3}), zeros({3})), "[where] cannot broadcast shapes [2] and [3]");
  EXPECT_ERROR_HAS(add(a, zeros({2, 3}, DType::f64)), "[add] dtypes differ: f32[2,3] vs f64[2,3]");
  EXPECT_ERROR_HAS(sum(a, {2}), "[sum] dimension 2 out of range for a tensor with 2 dims");
  EXPECT_ERROR_HAS(softmax(a, -3), "[softmax] dimension -3 out of range");
  EXPECT_ERROR_HAS(a.transpose(0, 5), "[transpose] dimension 5 out of range");
  EXPECT_ERROR_HAS(cumsum(a, 7), "[cumsum] dimension 7");
  EXPECT_ERROR_HAS(chunk(a, 2, 4), "[chunk] dimension 4");
  EXPECT_ERROR_HAS(a.select(0, 2), "[select] index 2 out of range for dim 0 of size 2");
  EXPECT_ERROR_HAS(a.narrow(1, 2, 2), "[narrow] range [2, 4) out of bounds for dim 1 of size 3");
  EXPECT_ERROR_HAS(a.at({0, 3}), "[at] index 3 out of range");
  EXPECT_ERROR_HAS(index_select(a, 0, from_vector(std::vector<int64_t>{0, 2})), "[index_select] index 2 out of range [0, 2)");
  EXPECT_ERROR_HAS(index_select(a, 0, from_vector(std::vector<int64_t>{-1})), "[index_select] index -1 out of range");
  EXPECT_ERROR_HAS(embedding(a, from_vector(std::vector<int64_t>{5})), "[index_select] index 5 out of range");
  EXPECT_ERROR_HAS(embedding(a, zeros({2})), "index must be i32 or i64");
  EXPECT_ERROR_HAS(gather(a, 1, from_vector(std::vector<int64_t>{0, 3}, {2, 1})), "[gather] index 3 out of range");
  EXPECT_ERROR_HAS(scatter_add(a, 0, from_vector(std::vector<int64_t>{0, 1, 2}, {1, 3}), zeros({1, 3})),
                   "[scatter_add] index 2 out of range");
  EXPECT_ERROR_HAS(cross_entropy(a, from_vector(std::vector<int64_t>{0})), "[cross_entropy] 1 targets for 2 rows");
  EXPECT_ERROR_HAS(a.expand({4, 3}), "[expand] cannot expand [2,3] to [4,3]");
  EXPECT_ERROR_HAS(a.permute({0, 0}), "[permute] dimension 0 repeated");
  EXPECT_ERROR_HAS(cat({a, zeros({2, 2})}, 0), "[cat] sizes differ outside dim 0");
  EXPECT_ERROR_HAS(stack({a, zeros({3, 2})}), "[stack] all shapes must be equal");
  EXPECT_ERROR_HAS(split(a, std::vector<int64_t>{1, 1}, 1), "[split] sizes add up to 2 but dim 1");
  EXPECT_ERROR_HAS(layer_norm(a, zeros({2}), Tensor()), "[layer_norm] weight [2] must be [3]");
  EXPECT_ERROR_HAS(linear(a, zeros({4, 2})), "[linear] input [2,3] does not match weight [4,2]");
  EXPECT_ERROR_HAS(a.item(), "[item] item() needs a one-element tensor");
  EXPECT_ERROR_HAS(zeros({2}, DType::i64).requires_grad_(), "only float tensors can require grad");
  EXPECT_ERROR_HAS(clamp(a, 1.0, 0.0), "[clamp] lower bound 1 above upper bound 0");
  EXPECT_ERROR_HAS(Tensor().shape(), "use of an undefined tensor");
  EXPECT_ERROR_HAS(exp(Tensor()), "[exp] input is an undefined tensor");
  const Device gpu{DeviceType::cuda, 0};
  if (!has_backend(DeviceType::cuda)) {
    EXPECT_ERROR_HAS(a.to(gpu), "[to] copy from cpu to cuda:0");
  } else {  // a build with the CUDA backend: either a GPU is there, or the error says which and what to do
    const std::string m = error_of([&] { (void)a.to(gpu); });
    if (!m.empty()) {
      EXPECT_NE(m.find("cuda:0"), std::string::npos) << m;
      EXPECT_NE(m.find("HINT"), std::string::npos) << m;
    }
  }
}

TEST(Errors, NoCrashOnAnyBadInput) {
  // each of these must throw copper::Error, never crash or read out of bounds
  const Tensor s = scalar_tensor(1), v = zeros({3}), m = zeros({2, 3}), e = zeros({0}), u;
  const Tensor idx = from_vector(std::vector<int64_t>{0});
  std::vector<std::function<void()>> bad = {
      [&] { cat({s, s}); },                                      // 0-d tensors cannot be joined
      [&] { cat({}); },
      [&] { stack({}); },
      [&] { s.size(0); },
      [&] { s.transpose(0, 1); },
      [&] { index_select(s, 0, idx); },
      [&] { gather(s, 0, idx); },
      [&] { linear(s, m); },
      [&] { argmax(e, 0); },                                     // the argmax of nothing
      [&] { max(e, 0); },
      [&] { v.expand({-2}); },
      [&] { zeros({1}).expand({-5}); },
      [&] { v.view({-1, 0}); },
      [&] { v.slice(0, 0, 3, 0); },
      [&] { v.narrow(0, -1, 2); },
      [&] { split(v, int64_t(0)); },
      [&] { chunk(v, 0); },
      [&] { matmul(s, v); },
      [&] { matmul(v, zeros({4})); },
      [&] { embedding(v, idx); },
      [&] { cross_entropy(v, from_vector(std::vector<int64_t>{3})); },
      [&] { layer_norm(e, Tensor(), Tensor()); },
      [&] { dropout(v, -0.1); },
      [&] { causal_mask(3, 2); },
      [&] { add(u, v); },
      [&] { sum(u); },
      [&] { u.item(); },
      [&] { m.permute({0}); },
      [&] { m.flip({0, 0}); },
      [&] { sum_to(v, {2, 3}); },
      [&] { copy_(m, zeros({3, 2})); },
      [&] { v.backward(); },                                     // does not require grad
      [&] { from_vector(std::vector<double>{1}).requires_grad_().backward(zeros({2}, DType::f64)); },
  };
  for (size_t i = 0; i < bad.size(); ++i) EXPECT_THROW(bad[i](), Error) << "bad input #" << i;
}

// Integer tensors take part in comparisons and integer arithmetic (no gradients, no div).
TEST(IntegerOps, ComparisonsAndArithmetic) {
  Tensor pred = from_vector(std::vector<int64_t>{1, 2, 3, 4});
  Tensor target = from_vector(std::vector<int64_t>{1, 0, 3, 0});
  EXPECT_EQ(eq(pred, target).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 1, 0}));
  EXPECT_EQ(sum(eq(pred, target).to(DType::f64)).item(), 2.0);
  EXPECT_EQ(add(pred, 10.0).to_vector<int64_t>(), (std::vector<int64_t>{11, 12, 13, 14}));
  EXPECT_THROW(div(pred, target), Error);
}

// The CPU caching allocator: size classes, and reuse when the sizes vary from step to step
// (the sequence length of a batch is that of its longest example).
TEST(Allocator, SizeClassesRoundUpByAtMostAQuarter) {
  size_t prev = 0;
  for (size_t n = 1; n < (size_t(1) << 24); n = n * 9 / 8 + 7) {
    const size_t c = cpu_size_class(n);
    EXPECT_GE(c, n);
    EXPECT_EQ(c % 64, 0u) << n;
    if (n > 4096) {
      EXPECT_LE(c, n + n / 4) << n;
    }
    EXPECT_GE(c, prev) << "size classes must grow with the request";
    prev = c;
  }
  EXPECT_EQ(cpu_size_class(0), 64u);
  EXPECT_EQ(cpu_size_class(4096), 4096u);
  EXPECT_EQ(cpu_size_class(8193), 10240u);  // 8 KiB + a quarter of it
}

TEST(Allocator, VaryingSizesAreServedFromTheCache) {
  Allocator& a = allocator_for(kCPU);
  // one "step" per length, as a training loop with batches of different lengths
  auto step = [](int64_t T) { Tensor x = zeros({32, T, 64}), y = x + 1.0f; };
  for (int64_t T : {200, 180, 160}) step(T);  // warm up with the longest first
  const AllocatorStats before = a.stats();
  for (int64_t T = 101; T <= 200; T += 7) step(T);
  const AllocatorStats after = a.stats();
  const int64_t allocs = after.num_allocs - before.num_allocs, hits = after.num_cache_hits - before.num_cache_hits;
  EXPECT_GT(allocs, 0);
  EXPECT_EQ(hits, allocs) << "every allocation of a shorter step should reuse a cached block";
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
}
