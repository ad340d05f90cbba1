// test_cuda.cpp — the CUDA backend against the CPU, kernel by kernel.
//
// Each test runs one Backend kernel on the CPU and on cuda:0 on the same random inputs (never
// zeros) and compares the results by relative error: at most 1e-5 of the largest reference
// value for f32, 1e-12 for f64, exact for integers and moves. Every GPU output is filled with
// NaN (integers: a sentinel) before the kernel runs, so an element the kernel forgot to write
// fails, and a NaN passes only where the CPU has a NaN too.
//
// Without a GPU (or in a build without CUDA, where COPPER_HAS_CUDA is undefined) every GPU test
// prints one line "no CUDA device: <reason>" and skips; NoDevice checks that asking for a GPU
// then fails with a copper::Error instead of crashing.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "tensor/backend.h"
#include "tensor/ops.h"
#include "tensor/autocast.h"
#include "tensor/random.h"

#include "tests/gpu_skip.h"

#ifdef COPPER_HAS_CUDA
#include "cuda/cublas_loader.h"
#include "cuda/cuda.h"
#endif

namespace copper {
namespace {

using test::kGPU;
using test::no_gpu_reason;

constexpr double kRelF32 = 1e-5;
constexpr double kRelF64 = 1e-12;
constexpr int64_t kIntPoison = -777777;

Generator& gen() {
  static Generator g(1234);
  return g;
}

// Random normal values times `scale` (positive and away from 0 where `positive`, for log,
// sqrt, pow, ...), made in f64 and then converted.
Tensor rnd(const Shape& s, DType t = DType::f32, double scale = 1, bool positive = false) {
  Tensor x = randn(s, DType::f64, &gen());
  if (positive) x = add(abs(x), 0.25);
  return mul(x, scale).to(t);
}

Backend& cpu() { return backend_for(kCPU); }
Backend& gpu() { return backend_for(kGPU); }
Tensor on_gpu(const Tensor& t) { return t.to(kGPU); }

// An uninitialised-looking output: NaN for floats, a sentinel for integers.
Tensor poisoned(const Shape& s, DType t, Device d) {
  Tensor out = Tensor::empty(s, t, d);
  backend_for(d).fill(out, is_integer(t) ? double(kIntPoison) : std::nan(""));
  return out;
}

double tolerance(DType t) { return t == DType::f64 ? kRelF64 : kRelF32; }

// GPU result `got` (any device) against the CPU's `want`: same shape, and every element
// within rel * max|want| (exact when rel == 0); NaN only where want is NaN.
void expect_close(const Tensor& want, const Tensor& got, double rel, const std::string& what) {
  ASSERT_EQ(want.shape(), got.shape()) << what;
  const std::vector<double> w = want.to_vector<double>(), g = got.to(kCPU).to_vector<double>();
  double scale = 0;
  for (double v : w)
    if (std::isfinite(v)) scale = std::max(scale, std::abs(v));
  const double tol = rel * std::max(scale, 1e-30);
  int bad = 0;
  for (size_t i = 0; i < w.size() && bad < 5; ++i) {
    const bool ok = std::isnan(w[i]) ? std::isnan(g[i]) : (w[i] == g[i] || std::abs(w[i] - g[i]) <= tol);
    if (!ok) {
      ADD_FAILURE() << what << ": element " << i << " cpu " << w[i] << " cuda " << g[i] << " (tolerance " << tol << ")";
      ++bad;
    }
  }
}

// ---------------- what the backend sees ----------------

// Prints the GPUs as `copper info` does (so that a bare GPU machine, where only this test binary
// runs, reports them too).
TEST(Cuda, PrintDevices) {
#ifdef COPPER_HAS_CUDA
  const cuda::SystemInfo s = cuda::system_info();
  fmt::print("cuda runtime {}, driver {}, code for {}\n", cuda::version_string(s.runtime_version),
             s.driver_version ? cuda::version_string(s.driver_version) : "none", s.built_architectures);
  for (const cuda::DeviceProperties& d : s.devices)
    fmt::print("cuda:{} {}, compute {}.{}, {} SMs, {:.1f} GiB ({:.1f} GiB free)\n", d.index, d.name, d.major, d.minor,
               d.multiprocessors, double(d.total_bytes) / double(1 << 30), double(d.free_bytes) / double(1 << 30));
#endif
  SKIP_WITHOUT_GPU();
}

// ---------------- without a GPU ----------------

TEST(Cuda, NoDevice) {
  if (!no_gpu_reason().empty()) {
    // asking for a GPU fails with a message, never a crash
    try {
      Tensor t = zeros({2}).to(kGPU);
      ADD_FAILURE() << "a cuda:0 tensor was made without a GPU";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
    }
    SKIP_WITHOUT_GPU();
  }
  EXPECT_NO_THROW(synchronize(kGPU));
}

#ifdef COPPER_HAS_CUDA
// Whether this process has cuBLAS mapped (/proc/self/maps names every mapped file).
bool cublas_mapped() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    if (line.find("libcublas") != std::string::npos) return true;
  return false;
}
// Taken before main(): copper_cuda does not link cuBLAS, so a process starts without it.
const bool kCublasMappedAtStart = cublas_mapped();

// cuBLAS is opened at the first GPU product (cuda/cublas_loader.h), never by CPU work: it
// would add some 150 MB to every process. With or without a GPU.
TEST(Cuda, CublasIsOpenedByTheFirstGpuProductOnly) {
  EXPECT_FALSE(kCublasMappedAtStart) << "cuBLAS was mapped before main(): is it linked again?";
  const Tensor a = rnd({4, 5}), b = rnd({5, 3});
  const Tensor c = matmul(a, b);
  if (no_gpu_reason().empty()) {  // (a whole-binary run may have multiplied on the GPU already)
    expect_close(c, matmul(on_gpu(a), on_gpu(b)).to(kCPU), kRelF32, "matmul through the opened cuBLAS");
  } else {
    EXPECT_FALSE(cuda::cublas::loaded());
    EXPECT_FALSE(cublas_mapped()) << "a CPU product mapped cuBLAS";
    cuda::cublas::load();  // what the first product does: open it and look up its functions
  }
  EXPECT_TRUE(cuda::cublas::loaded());
  EXPECT_TRUE(cublas_mapped()) << cuda::cublas::library_name();
}
#endif

// ---------------- devices, transfers, the allocator ----------------

TEST(Cuda, TransferRoundTripEveryDtype) {
  SKIP_WITHOUT_GPU();
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64, DType::bf16, DType::f16}) {
    Tensor x = rnd({3, 5, 7}, DType::f32, 10).to(t);
    Tensor back = on_gpu(x).to(kCPU);
    expect_close(x.to(DType::f64), back.to(DType::f64), 0, std::string("round trip ") + dtype_name(t));
  }
  Tensor x = rnd({4, 4});
  expect_close(x, on_gpu(x).clone(), 0, "device-to-device clone");
  expect_close(x.t(), on_gpu(x.t()), 0, "transposed view to the GPU (contiguous copy first)");
}

TEST(Cuda, TransferIsDifferentiable) {
  SKIP_WITHOUT_GPU();
  Tensor x = rnd({3, 4}).requires_grad_();
  Tensor loss = sum(mul(on_gpu(x), 2.0));
  loss.backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_TRUE(x.grad().device().is_cpu());
  expect_close(full({3, 4}, 2.0), x.grad(), 0, "gradient back through to()");
}

TEST(Cuda, DeviceMismatchNamesBothDevices) {
  SKIP_WITHOUT_GPU();
  Tensor a = rnd({2, 3}), b = on_gpu(rnd({2, 3}));
  try {
    add(a, b);
    ADD_FAILURE() << "add of a cpu and a cuda tensor did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[add] tensors on cpu and cuda:0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(matmul(b, a.t()), Error);
  EXPECT_THROW(index_select(b, 0, from_vector(std::vector<int64_t>{0})), Error);
}

TEST(Cuda, BadDeviceIndexIsAnError) {
  SKIP_WITHOUT_GPU();
  try {
    zeros({2}).to(Device{DeviceType::cuda, 1000});
    ADD_FAILURE() << "cuda:1000 did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:1000"), std::string::npos) << e.what();
  }
}

TEST(Cuda, AllocatorCachesAndEmpties) {
  SKIP_WITHOUT_GPU();
  Allocator& a = allocator_for(kGPU);
  { Tensor warm = Tensor::empty({1 << 20}, DType::f32, kGPU); }
  const AllocatorStats before = a.stats();
  EXPECT_GT(before.cached_bytes, 0);
  { Tensor again = Tensor::empty({1 << 20}, DType::f32, kGPU); }
  const AllocatorStats after = a.stats();
  EXPECT_EQ(after.reserved_bytes, before.reserved_bytes) << "the second block came from cudaMalloc, not the cache";
  EXPECT_EQ(after.num_cache_hits, before.num_cache_hits + 1);
  EXPECT_GE(after.peak_bytes, int64_t(4) << 20);
  a.empty_cache();
  EXPECT_EQ(a.stats().cached_bytes, 0);
  // Blocks in use stay reserved (each at its size class, which is at least what it counts as allocated).
  EXPECT_GE(a.stats().reserved_bytes, a.stats().allocated_bytes) << "after empty_cache only blocks in use stay reserved";
}

TEST(Cuda, OutOfMemoryIsAnErrorWithStatistics) {
  SKIP_WITHOUT_GPU();
  try {
    Tensor huge = Tensor::empty({int64_t(1) << 46}, DType::f32, kGPU);  // 256 TiB
    ADD_FAILURE() << "a 256 TiB tensor was allocated";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("out of memory"), std::string::npos) << m;
    EXPECT_NE(m.find("peak"), std::string::npos) << m;
  }
  Tensor ok = rnd({4}).to(kGPU);  // the device still works after the failed allocation
  expect_close(ok.to(kCPU), ok, 0, "after OOM");
}

// ---------------- kernels ----------------

TEST(Cuda, CopyStridedWithCasts) {
  SKIP_WITHOUT_GPU();
  const std::vector<DType> types = {DType::f32, DType::f64, DType::i32, DType::i64, DType::bf16, DType::f16};
  Tensor base = rnd({4, 6}, DType::f32, 8);
  for (DType from : types)
    for (DType to : types) {
      Tensor src = base.to(from);
      // a transposed and flipped view: negative and non-unit strides
      Tensor view_cpu = src.t().flip({0});
      Tensor view_gpu = on_gpu(src).t().flip({0});
      Tensor want = Tensor::empty(view_cpu.shape(), to);
      cpu().copy(view_cpu, want);
      Tensor got = poisoned(view_cpu.shape(), to, kGPU);
      gpu().copy(view_gpu, got);
      expect_close(want.to(DType::f64), got.to(kCPU).to(DType::f64), 0,
                   fmt::format("copy {} -> {}", dtype_name(from), dtype_name(to)));
    }
  // dense tensors, the wide path (4 elements a thread) with a tail of 3, and from an element
  // offset that leaves the pointer unaligned for it
  Tensor long_row = rnd({1, 4099});
  for (int64_t start : {0, 1})
    for (DType to : {DType::bf16, DType::f64, DType::f32}) {
      Tensor src = long_row.narrow(1, start, 4099 - start);
      Tensor want = src.to(to);
      Tensor got = poisoned(src.shape(), to, kGPU);
      gpu().copy(on_gpu(long_row).narrow(1, start, 4099 - start), got);
      expect_close(want.to(DType::f64), got.to(kCPU).to(DType::f64), 0,
                   fmt::format("dense copy f32 -> {} from element {}", dtype_name(to), start));
    }
  // broadcast source (stride 0)
  Tensor row = rnd({1, 5});
  Tensor want = Tensor::empty({3, 5});
  cpu().copy(row.expand({3, 5}), want);
  Tensor got = poisoned({3, 5}, DType::f32, kGPU);
  gpu().copy(on_gpu(row).expand({3, 5}), got);
  expect_close(want, got, 0, "copy of a broadcast row");
}

TEST(Cuda, Fill) {
  SKIP_WITHOUT_GPU();
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64, DType::bf16, DType::f16}) {
    Tensor got = poisoned({3, 4}, t, kGPU);
    gpu().fill(got.slice(1, 0, 4, 2), 2.5);  // every other column: strided
    gpu().fill(got.slice(1, 1, 4, 2), -1.0);
    Tensor want = Tensor::empty({3, 4}, t);
    cpu().fill(want.slice(1, 0, 4, 2), 2.5);
    cpu().fill(want.slice(1, 1, 4, 2), -1.0);
    expect_close(want.to(DType::f64), got.to(kCPU).to(DType::f64), 0, std::string("fill ") + dtype_name(t));
  }
}

const std::vector<UnaryOp> kUnaryOps = {
    UnaryOp::neg, UnaryOp::exp, UnaryOp::log, UnaryOp::sqrt, UnaryOp::rsqrt, UnaryOp::pow, UnaryOp::square,
    UnaryOp::sin, UnaryOp::cos, UnaryOp::tanh, UnaryOp::sigmoid, UnaryOp::relu, UnaryOp::gelu_erf,
    UnaryOp::gelu_tanh, UnaryOp::silu, UnaryOp::abs, UnaryOp::clamp, UnaryOp::floor, UnaryOp::ceil,
};
bool needs_positive(UnaryOp op) {
  return op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::rsqrt || op == UnaryOp::pow;
}
// pow: exponent a; clamp: [a, b]
constexpr double kUnaryA = -0.5, kUnaryB = 0.7, kPowExponent = 1.5;

TEST(Cuda, UnaryAndBackward) {
  SKIP_WITHOUT_GPU();
  for (DType t : {DType::f32, DType::f64})
    for (UnaryOp op : kUnaryOps) {
      const double a = op == UnaryOp::pow ? kPowExponent : kUnaryA;
      const std::string name = fmt::format("unary {} {}", int(op), dtype_name(t));
      Tensor x = rnd({5, 7}, t, 1, needs_positive(op));
      // forward on a transposed view
      Tensor want = Tensor::empty({7, 5}, t);
      cpu().unary(op, x.t(), want, a, kUnaryB);
      Tensor got = poisoned({7, 5}, t, kGPU);
      gpu().unary(op, on_gpu(x).t(), got, a, kUnaryB);
      expect_close(want, got, tolerance(t), name);
      // backward on contiguous x, y, grad
      Tensor y = Tensor::empty({5, 7}, t);
      cpu().unary(op, x, y, a, kUnaryB);
      Tensor g = rnd({5, 7}, t);
      Tensor dwant = Tensor::empty({5, 7}, t);
      cpu().unary_backward(op, x, y, g, dwant, a, kUnaryB);
      Tensor dgot = poisoned({5, 7}, t, kGPU);
      gpu().unary_backward(op, on_gpu(x), on_gpu(y), on_gpu(g), dgot, a, kUnaryB);
      expect_close(dwant, dgot, tolerance(t), name + " backward");
    }
}

// gelu(x + bias) with and without its slope, and the backward's dx and bias gradient (the
// Backend default on the GPU: a product and a column sum in two passes).
TEST(Cuda, BiasGeluAndBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 300, n = 37;
  for (DType t : {DType::f32, DType::f64})
    for (bool with_slope : {false, true}) {
      const std::string name = fmt::format("bias_gelu {} slope={}", dtype_name(t), with_slope);
      Tensor x = rnd({rows, n}, t, 2), bias = rnd({n}, t);
      Tensor y = Tensor::empty({rows, n}, t), slope = with_slope ? Tensor::empty({rows, n}, t) : Tensor();
      cpu().bias_gelu(x, bias, y, slope, rows, n);
      Tensor yg = poisoned({rows, n}, t, kGPU), sg = with_slope ? poisoned({rows, n}, t, kGPU) : Tensor();
      gpu().bias_gelu(on_gpu(x), on_gpu(bias), yg, sg, rows, n);
      expect_close(y, yg, tolerance(t), name);
      if (!with_slope) continue;
      expect_close(slope, sg, tolerance(t), name + " slope");
      Tensor g = rnd({rows, n}, t);
      Tensor dx = Tensor::empty({rows, n}, t), db = Tensor::empty({n}, t);
      cpu().bias_gelu_backward(slope, g, dx, db, rows, n);
      Tensor dxg = poisoned({rows, n}, t, kGPU), dbg = poisoned({n}, t, kGPU);
      gpu().bias_gelu_backward(on_gpu(slope), on_gpu(g), dxg, dbg, rows, n);
      expect_close(dx, dxg, tolerance(t), name + " dx");
      expect_close(db, dbg, tolerance(t), name + " dbias");
    }
}

TEST(Cuda, BinaryBroadcast) {
  SKIP_WITHOUT_GPU();
  const std::vector<BinaryOp> ops = {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div,
                                     BinaryOp::maximum, BinaryOp::minimum, BinaryOp::eq, BinaryOp::ne,
                                     BinaryOp::lt, BinaryOp::le, BinaryOp::gt, BinaryOp::ge};
  const Shape out_shape = {4, 3, 5};
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64})
    for (BinaryOp op : ops) {
      if (is_integer(t) && op == BinaryOp::div) continue;  // the ops divide floats only
      Tensor a = rnd({4, 1, 5}, DType::f64, 4).to(t), b = rnd({3, 5}, DType::f64, 4, true).to(t);
      if (op == BinaryOp::eq || op == BinaryOp::ne) b = a.select(0, 1).expand({3, 5}).contiguous();  // some equal
      Tensor want = Tensor::empty(out_shape, t);
      cpu().binary(op, a.expand(out_shape), b.expand(out_shape), want);
      Tensor got = poisoned(out_shape, t, kGPU);
      gpu().binary(op, on_gpu(a).expand(out_shape), on_gpu(b).expand(out_shape), got);
      expect_close(want.to(DType::f64), got.to(kCPU).to(DType::f64), is_integer(t) ? 0 : tolerance(t),
                   fmt::format("binary {} {}", int(op), dtype_name(t)));
    }
}

TEST(Cuda, Where) {
  SKIP_WITHOUT_GPU();
  for (DType ct : {DType::f32, DType::i64, DType::bf16})
    for (DType t : {DType::f32, DType::f64}) {
      Tensor cond = gt(rnd({3, 1, 4}), zeros({3, 1, 4})).to(ct), a = rnd({2, 4}, t), b = rnd({3, 2, 1}, t);
      const Shape s = {3, 2, 4};
      Tensor want = Tensor::empty(s, t);
      cpu().where(cond.expand(s), a.expand(s), b.expand(s), want);
      Tensor got = poisoned(s, t, kGPU);
      gpu().where(on_gpu(cond).expand(s), on_gpu(a).expand(s), on_gpu(b).expand(s), got);
      expect_close(want, got, 0, fmt::format("where cond {} values {}", dtype_name(ct), dtype_name(t)));
    }
}

TEST(Cuda, Reduce) {
  SKIP_WITHOUT_GPU();
  struct Case { int64_t outer, n, inner; };
  for (DType t : {DType::f32, DType::f64})
    // [2, 1000, 37] and [1, 4099, 5]: sums in two passes (kernels.h, column_chunks), the second
    // with runs past the end that stay empty
    for (Case c : {Case{3, 1000, 1}, Case{2, 7, 33}, Case{1, 5, 1}, Case{4, 300, 3}, Case{2, 1000, 37},
                   Case{1, 4099, 5}})
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::argmax}) {
        Tensor x = rnd({c.outer, c.n, c.inner}, t);
        const DType ot = op == ReduceOp::argmax ? DType::i64 : t;
        Tensor want = Tensor::empty({c.outer, c.inner}, ot);
        cpu().reduce(op, x, c.outer, c.n, c.inner, want);
        Tensor got = poisoned({c.outer, c.inner}, ot, kGPU);
        gpu().reduce(op, on_gpu(x), c.outer, c.n, c.inner, got);
        expect_close(want.to(DType::f64), got.to(kCPU).to(DType::f64), op == ReduceOp::sum ? tolerance(t) : 0,
                     fmt::format("reduce {} {} [{},{},{}]", int(op), dtype_name(t), c.outer, c.n, c.inner));
      }
}

TEST(Cuda, Gemm) {
  SKIP_WITHOUT_GPU();
  const int64_t batch = 3, n = 17, k = 33, m = 9;
  for (DType t : {DType::f32, DType::f64})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (bool broadcast_b : {false, true})
          for (bool accumulate : {false, true}) {
            // a: [batch, n, k] row-major, or the transpose of a [batch, k, n] tensor (column-major)
            Tensor a = ta ? rnd({batch, k, n}, t).transpose(1, 2) : rnd({batch, n, k}, t);
            Tensor b1 = tb ? rnd({1, m, k}, t).transpose(1, 2) : rnd({1, k, m}, t);
            Tensor b = broadcast_b ? b1.expand({batch, k, m}) : (tb ? rnd({batch, m, k}, t).transpose(1, 2)
                                                                    : rnd({batch, k, m}, t));
            Tensor c0 = rnd({batch, n, m}, t);
            Tensor want = c0.clone();
            cpu().gemm(a, b, want, accumulate);
            Tensor got = accumulate ? on_gpu(c0) : poisoned({batch, n, m}, t, kGPU);
            Tensor ag = ta ? on_gpu(a.transpose(1, 2).contiguous()).transpose(1, 2) : on_gpu(a);
            Tensor bg = broadcast_b ? (tb ? on_gpu(b1.transpose(1, 2).contiguous()).transpose(1, 2) : on_gpu(b1))
                                          .expand({batch, k, m})
                                    : (tb ? on_gpu(b.transpose(1, 2).contiguous()).transpose(1, 2) : on_gpu(b));
            gpu().gemm(ag, bg, got, accumulate);
            expect_close(want, got, tolerance(t),
                         fmt::format("gemm {} ta={} tb={} broadcast_b={} accumulate={}", dtype_name(t), ta, tb,
                                     broadcast_b, accumulate));
          }
}

// Mixed precision: bf16 operands into an f32 result on the tensor cores, against the CPU's
// widened sgemm (the same products; only the order of the f32 sums differs). Then the op under
// an AutocastGuard, forward and backward, and the TF32 switch (about 1e-3 relative).
TEST(Cuda, MixedPrecisionGemmIsTheCpusBf16Product) {
  SKIP_WITHOUT_GPU();
  const int64_t batch = 3, n = 17, k = 200, m = 9;
  for (bool ta : {false, true})
    for (bool accumulate : {false, true}) {
      Tensor a = ta ? rnd({batch, k, n}, DType::bf16).transpose(1, 2) : rnd({batch, n, k}, DType::bf16);
      Tensor b = rnd({batch, k, m}, DType::bf16);
      Tensor c0 = rnd({batch, n, m});
      Tensor want = c0.clone();
      cpu().gemm(a, b, want, accumulate);
      Tensor got = accumulate ? on_gpu(c0) : poisoned({batch, n, m}, DType::f32, kGPU);
      Tensor ag = ta ? on_gpu(a.transpose(1, 2).contiguous()).transpose(1, 2) : on_gpu(a);
      gpu().gemm(ag, on_gpu(b), got, accumulate);
      expect_close(want, got, kRelF32, fmt::format("bf16 gemm ta={} accumulate={}", ta, accumulate));
    }
  Tensor x = rnd({4, 6, 96}), w = rnd({32, 96}), dy = rnd({4, 6, 32});
  auto run = [&](Device d) {
    // detach(): on the CPU to() returns x itself, whose flag must stay off for the GPU's run
    Tensor xd = x.detach().to(d).requires_grad_(), wd = w.detach().to(d).requires_grad_();
    Tensor y;
    {
      AutocastGuard ag(DType::bf16);
      y = linear(xd, wd, Tensor());
    }
    sum(mul(y, dy.to(d))).backward();
    return std::vector<Tensor>{y, xd.grad(), wd.grad()};
  };
  const std::vector<Tensor> c = run(kCPU), g = run(kGPU);
  for (size_t i = 0; i < c.size(); ++i) expect_close(c[i], g[i], kRelF32, fmt::format("autocast linear output {}", i));
  Tensor a32 = rnd({2, 64, 300}), b32 = rnd({2, 300, 48});
  Tensor want = Tensor::empty({2, 64, 48}, DType::f32);
  cpu().gemm(a32, b32, want, false);
  set_allow_tf32(true);
  Tensor got = poisoned({2, 64, 48}, DType::f32, kGPU);
  gpu().gemm(on_gpu(a32), on_gpu(b32), got, false);
  set_allow_tf32(false);
  expect_close(want, got, 1e-3, "tf32 gemm");
}

// Clipping's squared global norm: many tensors, f32 and f64, in one launch, against the CPU
// (both sum in f64, in different orders).
TEST(Cuda, SumSquaresOfManyTensorsInOneLaunch) {
  SKIP_WITHOUT_GPU();
  const int64_t c = Backend::kSumSquaresChunk;
  std::vector<Tensor> host, dev;
  for (int64_t n : {int64_t(1), c - 1, c + 1, 5 * c + 3, int64_t(300000), int64_t(0)}) {
    host.push_back(rnd({n}, n % 2 ? DType::f64 : DType::f32));
    dev.push_back(on_gpu(host.back()));
  }
  Tensor want = Tensor::empty({}, DType::f64), got = poisoned({}, DType::f64, kGPU);
  cpu().sum_squares(host, want);
  gpu().sum_squares(dev, got);
  expect_close(want, got, kRelF64, "sum_squares");
  Tensor none = poisoned({}, DType::f64, kGPU);
  gpu().sum_squares({}, none);
  EXPECT_EQ(none.item(), 0.0);
}

// rand/randn made on the GPU equal the CPU's from the same generator state: uniforms bit for
// bit, normals to the last bits of the device's log/sin/cos.
TEST(Cuda, RandomFactoriesMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  for (DType t : {DType::f32, DType::f64}) {
    Generator c1(3), g1(3);
    expect_close(rand({1001}, t, &c1, -2, 5), rand({1001}, t, &g1, -2, 5, kGPU), 0, "rand");
    expect_close(randn({1001}, t, &c1, 1, 3), randn({1001}, t, &g1, 1, 3, kGPU), 1e-6, "randn");
  }
}

TEST(Cuda, SoftmaxAndBackward) {
  SKIP_WITHOUT_GPU();
  for (DType t : {DType::f32, DType::f64})
    for (int64_t n : {1, 7, 300, 1000})
      for (bool log : {false, true}) {
        const int64_t rows = 6;
        Tensor x = rnd({rows, n}, t, 3);
        Tensor want = Tensor::empty({rows, n}, t);
        cpu().softmax(x, want, rows, n, log);
        Tensor got = poisoned({rows, n}, t, kGPU);
        gpu().softmax(on_gpu(x), got, rows, n, log);
        const std::string name = fmt::format("{} {} n={}", log ? "log_softmax" : "softmax", dtype_name(t), n);
        expect_close(want, got, tolerance(t), name);
        Tensor dy = rnd({rows, n}, t);
        Tensor dwant = Tensor::empty({rows, n}, t);
        cpu().softmax_backward(want, dy, dwant, rows, n, log);
        Tensor dgot = poisoned({rows, n}, t, kGPU);
        gpu().softmax_backward(on_gpu(want), on_gpu(dy), dgot, rows, n, log);
        expect_close(dwant, dgot, tolerance(t), name + " backward");
      }
}

TEST(Cuda, CausalSoftmaxAndBackward) {
  SKIP_WITHOUT_GPU();
  struct Case { int64_t t, n; };
  for (DType dt : {DType::f32, DType::f64})
    for (Case c : {Case{5, 5}, Case{5, 9}, Case{64, 300}}) {
      const int64_t rows = 3 * c.t;
      Tensor x = rnd({rows, c.n}, dt, 3);
      Tensor want = Tensor::empty({rows, c.n}, dt);
      cpu().causal_softmax(x, want, rows, c.t, c.n);
      Tensor got = poisoned({rows, c.n}, dt, kGPU);
      gpu().causal_softmax(on_gpu(x), got, rows, c.t, c.n);
      const std::string name = fmt::format("causal_softmax {} t={} n={}", dtype_name(dt), c.t, c.n);
      expect_close(want, got, tolerance(dt), name);
      Tensor dy = rnd({rows, c.n}, dt);
      Tensor dwant = Tensor::empty({rows, c.n}, dt);
      cpu().causal_softmax_backward(want, dy, dwant, rows, c.t, c.n);
      Tensor dgot = poisoned({rows, c.n}, dt, kGPU);
      gpu().causal_softmax_backward(on_gpu(want), on_gpu(dy), dgot, rows, c.t, c.n);
      expect_close(dwant, dgot, tolerance(dt), name + " backward");
    }
}

TEST(Cuda, CrossEntropyAndBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t ignore = -100, rows = 9;
  for (DType t : {DType::f32, DType::f64})
    for (int64_t n : {3, 1000}) {
      Tensor x = rnd({rows, n}, t, 2);
      std::vector<int64_t> tv = randint(0, n, {rows}, DType::i64, &gen()).to_vector<int64_t>();
      tv[4] = ignore;  // row 4 is ignored
      Tensor targets = from_vector(tv);
      Tensor loss_w = Tensor::empty({rows}, t), lse_w = Tensor::empty({rows}, t);
      cpu().cross_entropy(x, targets, loss_w, lse_w, ignore);
      Tensor loss_g = poisoned({rows}, t, kGPU), lse_g = poisoned({rows}, t, kGPU);
      gpu().cross_entropy(on_gpu(x), on_gpu(targets), loss_g, lse_g, ignore);
      const std::string name = fmt::format("cross_entropy {} n={}", dtype_name(t), n);
      expect_close(loss_w, loss_g, tolerance(t), name + " loss");
      expect_close(lse_w, lse_g, tolerance(t), name + " lse");
      const Tensor scale = full({}, 1.0 / 8, t);
      Tensor dwant = Tensor::empty({rows, n}, t);
      cpu().cross_entropy_backward(x, targets, lse_w, dwant, scale, ignore);
      Tensor dgot = poisoned({rows, n}, t, kGPU);
      gpu().cross_entropy_backward(on_gpu(x), on_gpu(targets), on_gpu(lse_w), dgot, on_gpu(scale), ignore);
      expect_close(dwant, dgot, tolerance(t), name + " backward");
    }
}

// Device indices and targets are not checked on the host (that would wait for the GPU); the
// kernels guard themselves: an out-of-range index reads NaN, a bad target makes its row NaN.
TEST(Cuda, BadIndicesAndTargetsGiveNaNNotACrash) {
  SKIP_WITHOUT_GPU();
  Tensor w = rnd({5, 3});
  Tensor rows = index_select(on_gpu(w), 0, on_gpu(from_vector(std::vector<int64_t>{1, 7, -1}))).to(kCPU);
  const float* r = rows.data<float>();
  for (int j = 0; j < 3; ++j) {
    EXPECT_EQ(r[j], w.data<float>()[3 + j]) << "row 0 reads w[1]";
    EXPECT_TRUE(std::isnan(r[3 + j]) && std::isnan(r[6 + j])) << "rows 1 and 2 have indices 7 and -1";
  }
  Tensor logits = on_gpu(rnd({3, 4})).detach().requires_grad_();
  Tensor loss = cross_entropy(logits, on_gpu(from_vector(std::vector<int64_t>{0, 4, -100})));
  EXPECT_TRUE(std::isnan(loss.item())) << "target 4 of 4 classes";
  loss.backward();
  Tensor g = logits.grad().to(kCPU);
  for (int j = 0; j < 4; ++j) {
    EXPECT_TRUE(std::isnan(g.data<float>()[4 + j])) << "the bad row's gradient";
    EXPECT_EQ(g.data<float>()[8 + j], 0.0f) << "the ignored row's gradient";
  }
}

TEST(Cuda, Cumsum) {
  SKIP_WITHOUT_GPU();
  struct Case { int64_t outer, n, inner; };
  for (DType t : {DType::f32, DType::f64})
    for (Case c : {Case{3, 50, 1}, Case{2, 9, 17}})
      for (bool reverse : {false, true}) {
        Tensor x = rnd({c.outer, c.n, c.inner}, t);
        Tensor want = Tensor::empty(x.shape(), t);
        cpu().cumsum(x, want, c.outer, c.n, c.inner, reverse);
        Tensor got = poisoned(x.shape(), t, kGPU);
        gpu().cumsum(on_gpu(x), got, c.outer, c.n, c.inner, reverse);
        expect_close(want, got, tolerance(t), fmt::format("cumsum {} reverse={}", dtype_name(t), reverse));
      }
}

TEST(Cuda, RotatePairs) {
  SKIP_WITHOUT_GPU();
  const int64_t outer = 6, t = 33, p = 8;
  for (DType dt : {DType::f32, DType::f64})
    for (bool inverse : {false, true}) {
      Tensor x = rnd({outer, t, p, 2}, dt), cs = rnd({t, p}, dt), sn = rnd({t, p}, dt);
      Tensor want = Tensor::empty(x.shape(), dt);
      cpu().rotate_pairs(x, cs, sn, want, outer, t, p, inverse);
      Tensor got = poisoned(x.shape(), dt, kGPU);
      gpu().rotate_pairs(on_gpu(x), on_gpu(cs), on_gpu(sn), got, outer, t, p, inverse);
      expect_close(want, got, tolerance(dt), fmt::format("rotate_pairs {} inverse={}", dtype_name(dt), inverse));
    }
}

// Dropout's mask from the Philox stream: the GPU keeps exactly the CPU's elements (bit-equal,
// not within a tolerance), over a size that ends inside a block; and dropout() itself on a GPU
// tensor draws the same mask as on the CPU from the same generator state.
TEST(Cuda, DropoutMaskIsTheCpusBitForBit) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 100003;
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor want = Tensor::empty({n}, dt);
    cpu().dropout_mask(want, 0.1, 0x1234abcdull);
    Tensor got = poisoned({n}, dt, kGPU);
    gpu().dropout_mask(got, 0.1, 0x1234abcdull);
    EXPECT_EQ(want.to_vector<double>(), got.to(kCPU).to_vector<double>()) << dtype_name(dt);
  }
  Generator a(5), b(5);
  Tensor x = rnd({64, 33}, DType::f32);
  EXPECT_EQ(dropout(x, 0.25, true, &a).to_vector<float>(),
            dropout(on_gpu(x), 0.25, true, &b).to(kCPU).to_vector<float>());
}

// CoPE's counted positions: a row longer than one warp (the kernel scans 32 keys at a time),
// queries at an offset (a KV cache), and npos small enough that the clamp bites.
// The fused attention kernels (cuda/attention.cu) against the CPU's (tensor/cpu/attention.cpp):
// plain and with CoPE (both scalings, a clamp that bites and one that does not), dropout,
// queries over more keys, heads wider than a warp. The CUDA backend keeps has_fused_attention()
// false until this passes on a GPU; the kernels are called through the Backend directly.
TEST(Cuda, FusedAttentionIsTheCpusKernel) {
  SKIP_WITHOUT_GPU();
  struct Case { int64_t bh, Tq, Tk, Dh, npos; bool official; double p; };
  for (DType dt : {DType::f32, DType::f64})
    for (Case c : {Case{6, 70, 75, 16, 0, false, 0.2}, Case{6, 70, 75, 40, 9, false, 0.2},
                   Case{3, 130, 130, 64, 200, true, 0.0}, Case{4, 1, 50, 8, 6, true, 0.1}}) {
      const std::string name = fmt::format("attention {} bh={} Tq={} Tk={} Dh={} npos={}{}", dtype_name(dt), c.bh, c.Tq,
                                           c.Tk, c.Dh, c.npos, c.official ? " official" : "");
      const double scale = 1.0 / std::sqrt(double(c.Dh));
      const uint64_t key = 0x5eed1234abcdULL;
      Tensor q = rnd({c.bh, c.Tq, c.Dh}, dt), k = rnd({c.bh, c.Tk, c.Dh}, dt), v = rnd({c.bh, c.Tk, c.Dh}, dt);
      Tensor z = c.npos ? rnd({c.bh, c.Tq, c.npos}, dt) : Tensor(), dout = rnd({c.bh, c.Tq, c.Dh}, dt);
      Tensor out = Tensor::empty(q.shape(), dt), lse = Tensor::empty({c.bh, c.Tq}, dt);
      cpu().attention(q, k, v, out, lse, c.bh, c.Tq, c.Tk, c.Dh, scale, c.p, key,
                      AttentionCope{z, Tensor(), c.official}, AttentionRotation{}, dt);
      Tensor gz = z.defined() ? on_gpu(z) : Tensor();
      Tensor gout = poisoned(q.shape(), dt, kGPU), glse = poisoned(lse.shape(), dt, kGPU);
      gpu().attention(on_gpu(q), on_gpu(k), on_gpu(v), gout, glse, c.bh, c.Tq, c.Tk, c.Dh, scale, c.p, key,
                      AttentionCope{gz, Tensor(), c.official}, AttentionRotation{}, dt);
      expect_close(out, gout, tolerance(dt), name + " out");
      expect_close(lse, glse, tolerance(dt), name + " lse");
      Tensor dq = Tensor::empty(q.shape(), dt), dk = Tensor::empty(k.shape(), dt), dv = Tensor::empty(v.shape(), dt);
      Tensor dz = z.defined() ? Tensor::empty(z.shape(), dt) : Tensor();
      cpu().attention_backward(q, k, v, out, lse, dout, dq, dk, dv, c.bh, c.Tq, c.Tk, c.Dh, scale, c.p, key,
                               AttentionCope{z, dz, c.official}, AttentionRotation{}, dt);
      Tensor gdq = poisoned(q.shape(), dt, kGPU), gdk = poisoned(k.shape(), dt, kGPU), gdv = poisoned(v.shape(), dt, kGPU);
      Tensor gdz = z.defined() ? poisoned(z.shape(), dt, kGPU) : Tensor();
      gpu().attention_backward(on_gpu(q), on_gpu(k), on_gpu(v), on_gpu(out), on_gpu(lse), on_gpu(dout), gdq, gdk, gdv,
                               c.bh, c.Tq, c.Tk, c.Dh, scale, c.p, key, AttentionCope{gz, gdz, c.official},
                               AttentionRotation{}, dt);
      expect_close(dq, gdq, tolerance(dt), name + " dq");
      expect_close(dk, gdk, tolerance(dt), name + " dk");
      expect_close(dv, gdv, tolerance(dt), name + " dv");
      if (z.defined()) expect_close(dz, gdz, tolerance(dt), name + " dz");
    }
}

TEST(Cuda, CopePositions) {
  SKIP_WITHOUT_GPU();
  struct Case { int64_t rows, Tq, Tk, t0, npos; };
  for (DType dt : {DType::f32, DType::f64})
    for (Case c : {Case{24, 70, 70, 0, 8}, Case{10, 5, 77, 72, 65}, Case{6, 3, 40, 1, 64}}) {
      const std::string name = fmt::format("cope_positions {} Tq={} Tk={} t0={} npos={}", dtype_name(dt), c.Tq, c.Tk,
                                           c.t0, c.npos);
      Tensor lg = rnd({c.rows, c.Tk}, dt), z = rnd({c.rows, c.npos}, dt), dterm = rnd({c.rows, c.Tk}, dt);
      Tensor term = Tensor::empty(lg.shape(), dt), gates = Tensor::empty(lg.shape(), dt),
             pos = Tensor::empty(lg.shape(), dt);
      cpu().cope_positions(lg, z, term, gates, pos, c.rows, c.Tq, c.Tk, c.t0, c.npos);
      Tensor gterm = poisoned(lg.shape(), dt, kGPU), ggates = poisoned(lg.shape(), dt, kGPU),
             gpos = poisoned(lg.shape(), dt, kGPU);
      gpu().cope_positions(on_gpu(lg), on_gpu(z), gterm, ggates, gpos, c.rows, c.Tq, c.Tk, c.t0, c.npos);
      expect_close(term, gterm, tolerance(dt), name + " term");
      expect_close(gates, ggates, tolerance(dt), name + " gates");
      expect_close(pos, gpos, tolerance(dt), name + " positions");
      // The backward from the CPU's saved gates and positions, so that both sides start equal.
      Tensor dl = Tensor::empty(lg.shape(), dt), dz = Tensor::empty(z.shape(), dt);
      cpu().cope_positions_backward(dterm, z, gates, pos, dl, dz, c.rows, c.Tq, c.Tk, c.t0, c.npos);
      Tensor gdl = poisoned(lg.shape(), dt, kGPU), gdz = poisoned(z.shape(), dt, kGPU);
      gpu().cope_positions_backward(on_gpu(dterm), on_gpu(z), on_gpu(gates), on_gpu(pos), gdl, gdz, c.rows, c.Tq,
                                    c.Tk, c.t0, c.npos);
      expect_close(dl, gdl, tolerance(dt), name + " dgate_logits");
      expect_close(dz, gdz, tolerance(dt), name + " dz");
    }
}

TEST(Cuda, IndexSelectAndAdd) {
  SKIP_WITHOUT_GPU();
  const int64_t outer = 3, n = 6, inner = 5;
  Tensor index = from_vector(std::vector<int64_t>{5, 0, 2, 2, 5, 1, 0});  // repeats add up
  const int64_t k = index.numel();
  for (DType t : {DType::f32, DType::f64, DType::i64, DType::bf16}) {
    Tensor x = rnd({outer, n, inner}, DType::f64, 9).to(t);
    Tensor want = Tensor::empty({outer, k, inner}, t);
    cpu().index_select(x, index, want, outer, n, inner);
    Tensor got = poisoned({outer, k, inner}, t, kGPU);
    gpu().index_select(on_gpu(x), on_gpu(index), got, outer, n, inner);
    expect_close(want.to(DType::f64), got.to(kCPU).to(DType::f64), 0, std::string("index_select ") + dtype_name(t));
  }
  for (DType t : {DType::f32, DType::f64}) {
    Tensor base = rnd({outer, n, inner}, t), src = rnd({outer, k, inner}, t);
    Tensor want = base.clone();
    cpu().index_add(want, index, src, outer, n, inner);
    Tensor got = on_gpu(base);
    gpu().index_add(got, on_gpu(index), on_gpu(src), outer, n, inner);
    expect_close(want, got, tolerance(t), std::string("index_add ") + dtype_name(t));
  }
}

TEST(Cuda, GatherAndScatterAdd) {
  SKIP_WITHOUT_GPU();
  const int64_t outer = 4, n = 7, k = 5, inner = 3;
  Tensor index = randint(0, n, {outer, k, inner}, DType::i64, &gen());
  for (DType t : {DType::f32, DType::f64, DType::i32}) {
    Tensor x = rnd({outer, n, inner}, DType::f64, 9).to(t);
    Tensor want = Tensor::empty({outer, k, inner}, t);
    cpu().gather(x, index, want, outer, n, k, inner);
    Tensor got = poisoned({outer, k, inner}, t, kGPU);
    gpu().gather(on_gpu(x), on_gpu(index), got, outer, n, k, inner);
    expect_close(want.to(DType::f64), got.to(kCPU).to(DType::f64), 0, std::string("gather ") + dtype_name(t));
  }
  for (DType t : {DType::f32, DType::f64}) {
    Tensor base = rnd({outer, n, inner}, t), src = rnd({outer, k, inner}, t);
    Tensor want = base.clone();
    cpu().scatter_add(want, index, src, outer, n, k, inner);
    Tensor got = on_gpu(base);
    gpu().scatter_add(got, on_gpu(index), on_gpu(src), outer, n, k, inner);
    expect_close(want, got, tolerance(t), std::string("scatter_add ") + dtype_name(t));
  }
}

TEST(Cuda, LayerNormAndBackward) {
  SKIP_WITHOUT_GPU();
  const double eps = 1e-5;
  for (DType t : {DType::f32, DType::f64})
    for (int64_t n : {8, 700})
      for (bool affine : {false, true})
        for (int64_t rows : {10, 1000}) {  // 1000: the weight's gradient in many runs of rows
          Tensor x = add(rnd({rows, n}, t, 2), 0.5);
          Tensor w = affine ? rnd({n}, t) : Tensor(), b = affine ? rnd({n}, t) : Tensor();
          Tensor wg = affine ? on_gpu(w) : Tensor(), bg = affine ? on_gpu(b) : Tensor();
          Tensor y = Tensor::empty({rows, n}, t), mean = Tensor::empty({rows}, t), rstd = Tensor::empty({rows}, t);
          cpu().layer_norm(x, w, b, y, mean, rstd, rows, n, eps);
          Tensor yg = poisoned({rows, n}, t, kGPU), mg = poisoned({rows}, t, kGPU), rg = poisoned({rows}, t, kGPU);
          gpu().layer_norm(on_gpu(x), wg, bg, yg, mg, rg, rows, n, eps);
          const std::string name = fmt::format("layer_norm {} rows={} n={} affine={}", dtype_name(t), rows, n, affine);
          expect_close(y, yg, tolerance(t), name);
          expect_close(mean, mg, tolerance(t), name + " mean");
          expect_close(rstd, rg, tolerance(t), name + " rstd");
          Tensor dy = rnd({rows, n}, t);
          Tensor dx = Tensor::empty({rows, n}, t);
          Tensor dw = affine ? Tensor::empty({n}, t) : Tensor(), db = affine ? Tensor::empty({n}, t) : Tensor();
          cpu().layer_norm_backward(x, w, mean, rstd, dy, dx, dw, db, rows, n);
          Tensor dxg = poisoned({rows, n}, t, kGPU);
          Tensor dwg = affine ? poisoned({n}, t, kGPU) : Tensor(), dbg = affine ? poisoned({n}, t, kGPU) : Tensor();
          gpu().layer_norm_backward(on_gpu(x), wg, on_gpu(mean), on_gpu(rstd), on_gpu(dy), dxg, dwg, dbg, rows, n);
          expect_close(dx, dxg, tolerance(t), name + " dx");
          if (affine) {
            expect_close(dw, dwg, tolerance(t), name + " dweight");
            expect_close(db, dbg, tolerance(t), name + " dbias");
          }
        }
}

TEST(Cuda, RmsNormAndBackward) {
  SKIP_WITHOUT_GPU();
  const double eps = 1e-6;
  for (DType t : {DType::f32, DType::f64})
    for (int64_t n : {8, 700})
      for (bool affine : {false, true})
        for (int64_t rows : {10, 1000}) {  // 1000: the weight's gradient in many runs of rows
          Tensor x = rnd({rows, n}, t);
          Tensor w = affine ? rnd({n}, t) : Tensor();
          Tensor wg = affine ? on_gpu(w) : Tensor();
          Tensor y = Tensor::empty({rows, n}, t), rstd = Tensor::empty({rows}, t);
          cpu().rms_norm(x, w, y, rstd, rows, n, eps);
          Tensor yg = poisoned({rows, n}, t, kGPU), rg = poisoned({rows}, t, kGPU);
          gpu().rms_norm(on_gpu(x), wg, yg, rg, rows, n, eps);
          const std::string name = fmt::format("rms_norm {} rows={} n={} affine={}", dtype_name(t), rows, n, affine);
          expect_close(y, yg, tolerance(t), name);
          expect_close(rstd, rg, tolerance(t), name + " rstd");
          Tensor dy = rnd({rows, n}, t);
          Tensor dx = Tensor::empty({rows, n}, t), dw = affine ? Tensor::empty({n}, t) : Tensor();
          cpu().rms_norm_backward(x, w, rstd, dy, dx, dw, rows, n);
          Tensor dxg = poisoned({rows, n}, t, kGPU), dwg = affine ? poisoned({n}, t, kGPU) : Tensor();
          gpu().rms_norm_backward(on_gpu(x), wg, on_gpu(rstd), on_gpu(dy), dxg, dwg, rows, n);
          expect_close(dx, dxg, tolerance(t), name + " dx");
          if (affine) expect_close(dw, dwg, tolerance(t), name + " dweight");
        }
}

TEST(Cuda, AdamW) {
  SKIP_WITHOUT_GPU();
  for (DType t : {DType::f32, DType::f64}) {
    const Shape s = {1000};
    Tensor p = rnd(s, t), g = rnd(s, t), m = rnd(s, t, 0.1), v = rnd(s, t, 0.01, true);
    Tensor pg = on_gpu(p), gg = on_gpu(g), mg = on_gpu(m), vg = on_gpu(v);
    const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, bc1 = 1 - std::pow(b1, 3),
                 bc2 = 1 - std::pow(b2, 3);
    cpu().adamw_step(p, g, m, v, lr, b1, b2, eps, wd, bc1, bc2);
    gpu().adamw_step(pg, gg, mg, vg, lr, b1, b2, eps, wd, bc1, bc2);
    const std::string name = std::string("adamw ") + dtype_name(t);
    expect_close(p, pg, tolerance(t), name + " p");
    expect_close(m, mg, tolerance(t), name + " m");
    expect_close(v, vg, tolerance(t), name + " v");
  }
}

// Every parameter in one launch: sizes from 1 element to more than one block's grid stride,
// each with its own weight decay and bias corrections, against the CPU's one call each.
TEST(Cuda, AdamWStepsInOneLaunch) {
  SKIP_WITHOUT_GPU();
  for (DType t : {DType::f32, DType::f64}) {
    std::vector<Backend::AdamWParam> on_cpu, on_dev;
    const int64_t sizes[] = {1, 7, 256, 1000, 300000};
    for (size_t i = 0; i < std::size(sizes); ++i) {
      const Shape s = {sizes[i]};
      Tensor p = rnd(s, t), g = rnd(s, t), m = rnd(s, t, 0.1), v = rnd(s, t, 0.01, true);
      const double wd = 0.05 * double(i), bc1 = 1 - std::pow(0.9, double(i + 1)), bc2 = 1 - std::pow(0.95, double(i + 1));
      on_cpu.push_back({p, g, m, v, wd, bc1, bc2});
      on_dev.push_back({on_gpu(p), on_gpu(g), on_gpu(m), on_gpu(v), wd, bc1, bc2});
    }
    cpu().adamw_steps(on_cpu, 1e-2, 0.9, 0.95, 1e-8);
    gpu().adamw_steps(on_dev, 1e-2, 0.9, 0.95, 1e-8);
    for (size_t i = 0; i < on_cpu.size(); ++i) {
      const std::string name = fmt::format("adamw_steps {} param {}", dtype_name(t), i);
      expect_close(on_cpu[i].p, on_dev[i].p, tolerance(t), name + " p");
      expect_close(on_cpu[i].m, on_dev[i].m, tolerance(t), name + " m");
      expect_close(on_cpu[i].v, on_dev[i].v, tolerance(t), name + " v");
    }
  }
}

// ---------------- ops end to end ----------------

// A small two-layer network, forward and backward, through the ops (not the kernels): the
// same loss and gradients on cuda:0 as on the CPU.
TEST(Cuda, OpsForwardBackwardMatchCpu) {
  SKIP_WITHOUT_GPU();
  const int64_t batch = 8, d_in = 16, d_hidden = 32, classes = 5;
  Tensor x = rnd({batch, d_in}), w1 = rnd({d_in, d_hidden}, DType::f32, 0.3), w2 = rnd({d_hidden, classes}, DType::f32, 0.3);
  Tensor gamma = add(rnd({d_hidden}, DType::f32, 0.1), 1.0);
  Tensor targets = randint(0, classes, {batch}, DType::i64, &gen());
  auto run = [&](Device d) {
    Tensor a = w1.to(d).detach().requires_grad_(), b = w2.to(d).detach().requires_grad_();
    Tensor gm = gamma.to(d).detach().requires_grad_();
    Tensor h = gelu(layer_norm(matmul(x.to(d), a), gm, Tensor()));
    Tensor loss = cross_entropy(matmul(softmax(h, -1), b), targets.to(d));
    loss.backward();
    return std::vector<Tensor>{loss.detach(), a.grad(), b.grad(), gm.grad()};
  };
  const std::vector<Tensor> want = run(kCPU), got = run(kGPU);
  const char* names[] = {"loss", "dw1", "dw2", "dgamma"};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(got[i].device() == kGPU) << names[i];
    expect_close(want[i], got[i], 1e-4, names[i]);  // a chain of f32 kernels, each within ~1e-6
  }
}

}  // namespace
}  // namespace copper
