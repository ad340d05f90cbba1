// ops.cpp — `copper bench ops`: copper's kernels beside the best the machine can do.
//
// Lines printed (one JSON object each):
//   env         the BLAS kernel and thread counts the numbers were taken with
//   matmul      copper::matmul vs raw cblas_sgemm on the same f32 operands, GFLOP/s, ratio
//   linear      x @ W^T (the transposed operand an nn.Linear uses), vs raw sgemm
//   add         copper::add (a new output each call) vs memcpy, GB/s, ratio
//   add_        the in-place x += y an optimizer uses, vs memcpy
//   add_small   add on 64K floats (in cache): per-call overhead and thread wake-up
//   add_bias    [rows, n] + [n]: the broadcast of a bias over rows
//   softmax, layer_norm, cumsum_rev, gelu: rows/s and GB/s on transformer-sized shapes
//   layer_norm_fwd_bwd  layer_norm forward and backward (dx, dweight, dbias)
//   cross_entropy  loss and gradient over [4096, 8192] logits: one pass per row vs two
//   causal_softmax  attention's masked softmax as one op vs masked_fill + softmax
//   cope        CoPE's gates -> positions -> logit term, forward and backward, the fused op vs
//               the composed reference (tensor/ops/cope.cpp, nn/pe/cope.cpp)
//   linear_cross_entropy  the LM head and its loss at lm-small's shape, forward and backward,
//               the one op vs cross_entropy(linear(...))
//   attention, cope_attention  one layer's causal attention at lm-long's shape, forward and
//               backward, the fused kernel vs the composed reference (tensor/ops/attention.cpp)
//   attention_views  the fused attention at lm-small's shape on heads that are views of a
//               (B, T, 3·H·Dh) product split in three vs on contiguous heads, forward and
//               backward, and the forward alone
//   rotary_attention  RoPE's attention at lm-small's and lm-long's shapes on heads viewed out
//               of one (B, T, 3·H·Dh) product, forward and backward: q and k turned inside
//               the fused kernel (causal_rotary_attention) vs turned first by rotate_pairs
//   block_gemm  the fused attention's block products on one thread (the kernel runs one per
//               thread), block_gemm (tensor/cpu/block_gemm.h) vs cblas_sgemm, GFLOP/s: whether
//               reading the operands in place beats BLAS's packing on this CPU
//   packed_gemm  the layers' products at lm-small's shapes, packed_gemm (tensor/cpu/packed_gemm.h)
//               vs cblas_sgemm on every thread, GFLOP/s, and whether CpuBackend::gemm takes it
//   bf16_gemm   mixed precision's products at lm-small's shapes, weight gradients included,
//               bf16_gemm (tensor/cpu/bf16_gemm.h) vs cblas_sgemm on the same values in f32
//   interleave  matmul and add in alternation vs each alone: shows thread pools fighting
// Traffic counted for GB/s: the arrays an op must read and write once each (add: 3,
// memcpy: 2); the hardware may move more (a write first reads its cache line).
#include <cblas.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "autograd/grad_mode.h"
#include "bench/bench.h"
#include "nn/pe/cope.h"
#include "tensor/backend.h"
#include "tensor/cpu/bf16_gemm.h"
#include "tensor/cpu/block_gemm.h"
#include "tensor/cpu/packed_gemm.h"
#include "tensor/ops.h"
#include "tensor/random.h"
#include "tensor/runtime.h"

namespace copper::bench {

namespace {

using json = nlohmann::ordered_json;

// A 64-byte aligned float buffer for the raw reference runs.
struct Buffer {
  explicit Buffer(size_t n) : p(static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64))) {
    std::memset(p, 0, n * sizeof(float));  // touch every page now, not inside a timing
  }
  ~Buffer() { std::free(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  float* p;
};

bool wanted(const Options& opt, const char* name) {
  return opt.filter.empty() || std::string(name).find(opt.filter) != std::string::npos;
}

double round3(double v) { return std::round(v * 1000.0) / 1000.0; }

void bench_env(std::FILE* out) {
  const RuntimeInfo r = runtime_info();
  emit(out, json{{"bench", "env"},
                 {"blas_core", r.blas_core},
                 {"blas_core_source", r.coretype_src},
                 {"blas_threads", r.blas_threads},
                 {"omp_threads", r.omp_threads},
                 {"omp_wait_policy", r.omp_wait_policy.empty() ? "unset" : r.omp_wait_policy},
                 {"blas_thread_timeout", r.blas_thread_timeout.empty() ? "unset" : r.blas_thread_timeout},
                 {"blas", r.blas_config}});
}

// c = a @ b for square n: copper::matmul and cblas_sgemm on the same data, alternated.
void bench_matmul(const Options& opt, std::FILE* out) {
  const std::vector<int64_t> sizes = opt.quick ? std::vector<int64_t>{64, 128} : std::vector<int64_t>{256, 512, 1024, 2048};
  for (int64_t n : sizes) {
    Tensor a = randn({n, n}), b = randn({n, n});
    Buffer c{size_t(n * n)};
    const float* ap = a.data<float>();
    const float* bp = b.data<float>();
    Tensor keep;
    auto run_copper = [&] { keep = matmul(a, b); };
    auto run_raw = [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), 1.0f, ap, int(n), bp, int(n), 0.0f,
                  c.p, int(n));
    };
    // `keep` holds the previous result while the next one is computed, as a training
    // loop holds its activations; the caching allocator serves both from its free list.
    auto [tc, tr] = time_pair(run_copper, run_raw, opt.budget_s);
    double diff = 0;
    const float* kp = keep.data<float>();
    for (int64_t i = 0; i < n * n; ++i) diff = std::max(diff, double(std::abs(kp[i] - c.p[i])));
    const double flop = 2.0 * double(n) * double(n) * double(n);
    emit(out, json{{"bench", "matmul"},
                   {"shape", fmt::format("{0}x{0}x{0}", n)},
                   {"copper_gflops", round3(flop / tc.median_s * 1e-9)},
                   {"sgemm_gflops", round3(flop / tr.median_s * 1e-9)},
                   {"ratio", round3(tr.median_s / tc.median_s)},
                   {"copper_ms", round3(tc.median_s * 1e3)},
                   {"sgemm_ms", round3(tr.median_s * 1e3)},
                   {"reps", tc.reps},
                   {"max_abs_diff", diff}});
  }
}

// y = x @ W^T with x [rows, in], W [out, in]: what nn.Linear does; BLAS gets W as "Trans".
void bench_linear(const Options& opt, std::FILE* out) {
  const int64_t rows = opt.quick ? 256 : 4096, in = opt.quick ? 64 : 512, outf = opt.quick ? 128 : 2048;
  Tensor x = randn({rows, in}), w = randn({outf, in});
  Buffer c{size_t(rows * outf)};
  Tensor keep;
  auto run_copper = [&] { keep = linear(x, w); };
  auto run_raw = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(outf), int(in), 1.0f, x.data<float>(), int(in),
                w.data<float>(), int(in), 0.0f, c.p, int(outf));
  };
  auto [tc, tr] = time_pair(run_copper, run_raw, opt.budget_s);
  const double flop = 2.0 * double(rows) * double(in) * double(outf);
  emit(out, json{{"bench", "linear"},
                 {"shape", fmt::format("[{},{}]x[{},{}]^T", rows, in, outf, in)},
                 {"copper_gflops", round3(flop / tc.median_s * 1e-9)},
                 {"sgemm_gflops", round3(flop / tr.median_s * 1e-9)},
                 {"ratio", round3(tr.median_s / tc.median_s)},
                 {"reps", tc.reps}});
}

// Large contiguous f32 arrays, well beyond the caches: a memory-bandwidth test.
void bench_add(const Options& opt, std::FILE* out) {
  const int64_t n = opt.quick ? (int64_t(1) << 18) : (int64_t(1) << 24);  // 64 MiB per array
  const double bytes = double(n) * sizeof(float);
  Tensor x = randn({n}), y = randn({n});
  Buffer dst{size_t(n)};
  const float* xp = x.data<float>();
  auto run_memcpy = [&] { std::memcpy(dst.p, xp, size_t(n) * sizeof(float)); };

  if (wanted(opt, "add")) {
    Tensor keep;
    auto run_add = [&] { keep = add(x, y); };
    // Warm up outside the fault count: the first two calls take fresh blocks from the OS
    // (one for the result, one for the result after it while `keep` holds the first).
    // From then on the caching allocator should serve every call without a page fault.
    run_add();
    run_add();
    const int64_t f0 = minor_faults();
    auto [ta, tm] = time_pair(run_add, run_memcpy, opt.budget_s);
    const double faults_per_rep = double(minor_faults() - f0) / double(ta.reps + 2);
    const double gb_add = 3 * bytes / ta.median_s * 1e-9, gb_mem = 2 * bytes / tm.median_s * 1e-9;
    emit(out, json{{"bench", "add"},
                   {"n", n},
                   {"copper_gbps", round3(gb_add)},
                   {"memcpy_gbps", round3(gb_mem)},
                   {"ratio", round3(gb_add / gb_mem)},
                   {"copper_ms", round3(ta.median_s * 1e3)},
                   {"memcpy_ms", round3(tm.median_s * 1e3)},
                   {"page_faults_per_call", round3(faults_per_rep)},
                   {"reps", ta.reps}});
  }
  if (wanted(opt, "add_")) {
    Tensor acc = zeros({n});
    auto run_inplace = [&] { add_(acc, y); };
    auto [ta, tm] = time_pair(run_inplace, run_memcpy, opt.budget_s);
    const double gb_add = 3 * bytes / ta.median_s * 1e-9, gb_mem = 2 * bytes / tm.median_s * 1e-9;
    emit(out, json{{"bench", "add_"},
                   {"n", n},
                   {"copper_gbps", round3(gb_add)},
                   {"memcpy_gbps", round3(gb_mem)},
                   {"ratio", round3(gb_add / gb_mem)},
                   {"reps", ta.reps}});
  }
  if (wanted(opt, "add_small")) {
    // 64K floats (256 KiB per array, in cache): just above the OpenMP threshold, so the
    // cost of waking the second thread shows here.
    const int64_t ns = int64_t(1) << 16;
    Tensor xs = x.narrow(0, 0, ns), ys = y.narrow(0, 0, ns), keep;
    Timing t = time_median([&] { keep = add(xs, ys); }, opt.budget_s / 2);
    emit(out, json{{"bench", "add_small"},
                   {"n", ns},
                   {"copper_us", round3(t.median_s * 1e6)},
                   {"copper_gbps", round3(3.0 * double(ns) * sizeof(float) / t.median_s * 1e-9)},
                   {"reps", t.reps}});
  }
  if (wanted(opt, "add_bias")) {
    const int64_t cols = 512, rows = n / cols;
    Tensor xm = x.view({rows, cols}), bias = randn({cols});
    Tensor keep;
    auto run = [&] { keep = add(xm, bias); };
    Timing t = time_median(run, opt.budget_s);
    emit(out, json{{"bench", "add_bias"},
                   {"shape", fmt::format("[{},{}]+[{}]", rows, cols, cols)},
                   {"copper_gbps", round3(2 * bytes / t.median_s * 1e-9)},
                   {"copper_ms", round3(t.median_s * 1e3)},
                   {"reps", t.reps}});
  }
}

// Row-wise ops on transformer-sized shapes. GB/s counts one read and one write.
void bench_rows(const Options& opt, std::FILE* out) {
  const int64_t rows = opt.quick ? 256 : 16384;
  auto report = [&](const char* name, const Shape& shape, const Timing& t) {
    const int64_t r = shape[0], n = shape[1];
    emit(out, json{{"bench", name},
                   {"shape", shape_str(shape)},
                   {"rows_per_s", std::round(double(r) / t.median_s)},
                   {"gbps", round3(2.0 * double(r * n) * sizeof(float) / t.median_s * 1e-9)},
                   {"ms", round3(t.median_s * 1e3)},
                   {"reps", t.reps}});
  };
  if (wanted(opt, "softmax")) {  // attention probabilities: [B*H*T, T]
    const Shape s{rows, 256};
    Tensor x = randn(s), keep;
    report("softmax", s, time_median([&] { keep = softmax(x, -1); }, opt.budget_s));
  }
  if (wanted(opt, "layer_norm")) {  // [B*T, D]
    const Shape s{rows, 512};
    Tensor x = randn(s), w = ones({512}), b = zeros({512}), keep;
    report("layer_norm", s, time_median([&] { keep = layer_norm(x, w, b); }, opt.budget_s));
    // forward and backward (dx, dw, db from dy); the leaves' gradients are dropped each time,
    // so no accumulation pass is timed
    Tensor xg = x.detach().requires_grad_(), wg = w.detach().requires_grad_(), bg = b.detach().requires_grad_();
    Tensor dy = randn(s);
    report("layer_norm_fwd_bwd", s, time_median([&] {
             for (Tensor* t : {&xg, &wg, &bg}) t->zero_grad();
             layer_norm(xg, wg, bg).backward(dy);
           }, opt.budget_s));
  }
  if (wanted(opt, "cumsum")) {  // CoPE's reverse cumulative sum of gates along the keys
    const Shape s{rows, 256};
    Tensor x = rand(s), keep;
    report("cumsum_rev", s, time_median([&] { keep = cumsum(x, -1, true); }, opt.budget_s));
  }
  if (wanted(opt, "gelu")) {
    const Shape s{rows, 512};
    Tensor x = randn(s), keep;
    report("gelu", s, time_median([&] { keep = gelu(x); }, opt.budget_s));
  }
  if (wanted(opt, "causal_softmax")) {  // attention's masked softmax, fused vs the two-op reference
    const int64_t T = 256, blocks = rows / T;
    Tensor x = randn({blocks, T, T}), mask = causal_mask(T, T), keep;
    Timing fused = time_median([&] { keep = causal_softmax(x); }, opt.budget_s);
    Timing ref = time_median([&] { keep = softmax(masked_fill(x, mask, -INFINITY), -1); }, opt.budget_s);
    emit(out, json{{"bench", "causal_softmax"},
                   {"shape", shape_str({blocks, T, T})},
                   {"fused_ms", round3(fused.median_s * 1e3)},
                   {"masked_fill_softmax_ms", round3(ref.median_s * 1e3)},
                   {"speedup", round3(ref.median_s / fused.median_s)},
                   {"reps", fused.reps}});
  }
  if (wanted(opt, "cope")) {  // one CoPE layer's term: (B, H, T, T) gates, npos = T + 1, f32
    const int64_t T = 256, H = 4, Dh = 16, B = std::max<int64_t>(1, rows / (H * T));
    Tensor q = randn({B, H, T, Dh}).requires_grad_(), gl = randn({B, H, T, T}).requires_grad_(),
           e = randn({T + 1, Dh}).requires_grad_(), w = randn({B, H, T, T});
    auto step = [&](bool reference) {
      nn::CopeTerm c = reference ? nn::cope_logit_term_reference(q, gl, e) : nn::cope_logit_term(q, gl, e);
      sum(c.term * w).backward();
    };
    Timing fused = time_median([&] { step(false); }, opt.budget_s);
    Timing ref = time_median([&] { step(true); }, opt.budget_s);
    emit(out, json{{"bench", "cope"},
                   {"shape", shape_str({B, H, T, T})},
                   {"fused_fwd_bwd_ms", round3(fused.median_s * 1e3)},
                   {"composed_fwd_bwd_ms", round3(ref.median_s * 1e3)},
                   {"speedup", round3(ref.median_s / fused.median_s)},
                   {"reps", fused.reps}});
  }
  // One layer's attention at lm-long's shape (B·H = 16, T = 1024, Dh = 64), forward and
  // backward: the fused kernel vs its composed reference, plain and with CoPE (npos 64).
  if (wanted(opt, "attention")) {
    const int64_t BH = opt.quick ? 4 : 16, T = opt.quick ? 256 : 1024, Dh = 64, npos = 64;
    const double scale = 1.0 / std::sqrt(double(Dh));
    Tensor q = randn({BH, T, Dh}).requires_grad_(), k = randn({BH, T, Dh}).requires_grad_(),
           v = randn({BH, T, Dh}).requires_grad_(), e = randn({npos, Dh}).requires_grad_(),
           w = randn({BH, T, Dh});
    for (bool cope : {false, true}) {
      auto step = [&](bool reference) {
        Tensor y = cope ? (reference ? causal_cope_attention_reference(q, k, v, e, scale, false)
                                     : causal_cope_attention(q, k, v, e, scale, false))
                        : (reference ? causal_attention_reference(q, k, v, scale) : causal_attention(q, k, v, scale));
        sum(y * w).backward();
      };
      Timing fused = time_median([&] { step(false); }, opt.budget_s);
      Timing ref = time_median([&] { step(true); }, opt.budget_s);
      emit(out, json{{"bench", cope ? "cope_attention" : "attention"},
                     {"shape", shape_str({BH, T, T})},
                     {"fused_fwd_bwd_ms", round3(fused.median_s * 1e3)},
                     {"composed_fwd_bwd_ms", round3(ref.median_s * 1e3)},
                     {"speedup", round3(ref.median_s / fused.median_s)},
                     {"reps", fused.reps}});
    }
  }
  // The loss of lm-small's head ([B·T, vocab] = [4096, 8192]) with its gradient: the CPU's
  // one pass per row (Backend::cross_entropy_with_grad, what cross_entropy runs when a gradient
  // will be wanted) vs the loss and then the gradient, each reading the logits.
  if (wanted(opt, "cross_entropy")) {
    const int64_t rows = opt.quick ? 512 : 4096, n = 8192;
    Tensor x = randn({rows, n}), t = randint(0, n, {rows}), loss = Tensor::empty({rows}),
           lse = Tensor::empty({rows}), dx = Tensor::empty({rows, n}), scale = full({}, 1.0 / double(rows));
    Backend& be = backend_of(x);
    const auto [fused, two] = time_pair([&] { be.cross_entropy_with_grad(x, t, loss, lse, dx, scale, -100); },
                                        [&] {
                                          be.cross_entropy(x, t, loss, lse, -100);
                                          be.cross_entropy_backward(x, t, lse, dx, scale, -100);
                                        },
                                        opt.budget_s);
    emit(out, json{{"bench", "cross_entropy"},
                   {"shape", shape_str({rows, n})},
                   {"one_pass_ms", round3(fused.median_s * 1e3)},
                   {"two_passes_ms", round3(two.median_s * 1e3)},
                   {"reps", fused.reps}});
  }
  // The LM head and its loss at lm-small's shape (4096 tokens, d 256, vocabulary 8192),
  // forward and backward: linear_cross_entropy (the gradient written over the logits) vs
  // cross_entropy(linear(...)) (a logits tensor and a gradient tensor).
  if (wanted(opt, "linear_cross_entropy")) {
    const int64_t rows = opt.quick ? 512 : 4096, d = 256, n = 8192;
    Tensor x = mul(randn({rows, d}), 0.1).requires_grad_(), w = mul(randn({n, d}), 0.1).requires_grad_();
    const Tensor t = randint(0, n, {rows});
    auto step = [&](bool fused) {
      (fused ? linear_cross_entropy(x, w, Tensor(), t) : cross_entropy(linear(x, w), t)).backward();
      x.zero_grad();
      w.zero_grad();
    };
    const auto [one_op, composed] = time_pair([&] { step(true); }, [&] { step(false); }, opt.budget_s);
    emit(out, json{{"bench", "linear_cross_entropy"},
                   {"shape", shape_str({rows, d}) + " x " + shape_str({n, d})},
                   {"one_op_fwd_bwd_ms", round3(one_op.median_s * 1e3)},
                   {"composed_fwd_bwd_ms", round3(composed.median_s * 1e3)},
                   {"reps", one_op.reps}});
  }
  // The fused attention at lm-small's shape, forward and backward, on heads that are views of
  // one (B, T, 3·H·Dh) product split in three (row stride 3·H·Dh, what nn/attention.cpp
  // passes) vs on contiguous (B, H, T, Dh) heads: what reading the views in place costs.
  if (wanted(opt, "attention_views")) {
    const int64_t B = opt.quick ? 2 : 16, T = 256, H = 4, Dh = 64, D = H * Dh;
    const double scale = 1.0 / std::sqrt(double(Dh));
    Tensor proj = randn({B, T, 3 * D}).requires_grad_();
    std::vector<Tensor> heads;
    for (int i = 0; i < 3; ++i) heads.push_back(randn({B, H, T, Dh}).requires_grad_());
    Tensor w = randn({B, H, T, Dh});
    auto attend = [&](bool views) {  // the layer's attention on views of proj or on `heads`
      const std::vector<Tensor> parts = split(proj, D, -1);
      auto head = [&](int i) { return views ? parts[size_t(i)].view({B, T, H, Dh}).transpose(1, 2) : heads[size_t(i)]; };
      return causal_attention(head(0), head(1), head(2), scale);
    };
    auto step = [&](bool views) {
      sum(attend(views) * w).backward();
      proj.zero_grad();
      for (Tensor& h : heads) h.zero_grad();
    };
    auto forward = [&](bool views) {  // the kernel's forward alone: no graph, no backward
      NoGradGuard ng;
      attend(views);
    };
    const auto [in_place, contiguous] = time_pair([&] { step(true); }, [&] { step(false); }, opt.budget_s);
    const auto [in_place_fwd, contiguous_fwd] = time_pair([&] { forward(true); }, [&] { forward(false); }, opt.budget_s);
    emit(out, json{{"bench", "attention_views"},
                   {"shape", shape_str({B, H, T, Dh})},
                   {"views_fwd_bwd_ms", round3(in_place.median_s * 1e3)},
                   {"contiguous_fwd_bwd_ms", round3(contiguous.median_s * 1e3)},
                   {"views_fwd_ms", round3(in_place_fwd.median_s * 1e3)},
                   {"contiguous_fwd_ms", round3(contiguous_fwd.median_s * 1e3)},
                   {"reps", in_place.reps}});
  }
  // RoPE's attention as nn/attention.cpp runs it, q, k and v split from one (B, T, 3·H·Dh)
  // product, forward and backward into the product's gradient: the rotation inside the
  // kernel vs rotate_pairs on q and k first (new contiguous heads; split then copies the
  // three gradients into one).
  if (wanted(opt, "rotary_attention")) {
    for (auto [B, T] : std::vector<std::pair<int64_t, int64_t>>{{16, 256}, {4, 1024}}) {
      if (opt.quick) B = 1;
      const int64_t H = 4, Dh = 64, D = H * Dh;
      const double scale = 1.0 / std::sqrt(double(Dh));
      std::vector<double> angle(size_t(T * Dh / 2));
      for (int64_t t = 0; t < T; ++t)
        for (int64_t m = 0; m < Dh / 2; ++m)
          angle[size_t(t * Dh / 2 + m)] = double(t) * std::pow(10000.0, -2.0 * double(m) / double(Dh));
      const Tensor angles = from_vector(angle, {T, Dh / 2});
      const Tensor cs = cos(angles).to(DType::f32), sn = sin(angles).to(DType::f32);
      Tensor proj = randn({B, T, 3 * D}).requires_grad_(), w = randn({B, H, T, Dh});
      auto step = [&](bool inside) {
        const std::vector<Tensor> parts = split(proj, D, -1);
        auto head = [&](int i) { return parts[size_t(i)].view({B, T, H, Dh}).transpose(1, 2); };
        Tensor y = inside ? causal_rotary_attention(head(0), head(1), head(2), cs, sn, scale)
                          : causal_attention(rotate_pairs(head(0), cs, sn), rotate_pairs(head(1), cs, sn), head(2),
                                             scale);
        sum(y * w).backward();
        proj.zero_grad();
      };
      const auto [inside, first] = time_pair([&] { step(true); }, [&] { step(false); }, opt.budget_s);
      emit(out, json{{"bench", "rotary_attention"},
                     {"shape", shape_str({B, H, T, Dh})},
                     {"inside_fwd_bwd_ms", round3(inside.median_s * 1e3)},
                     {"rotate_first_fwd_bwd_ms", round3(first.median_s * 1e3)},
                     {"reps", inside.reps}});
    }
  }
  // A block of 64 queries against 1024 keys, Dh = 64, the keys and values rows of a (T, 3·D)
  // product as the kernel reads them: the logits q kᵀ (the keys transposed, as the kernel
  // passes them), the output P v, and the backward's Pᵀ dO, each whole (no causal skip).
  if (wanted(opt, "block_gemm")) {
    const int64_t nq = 64, kv = opt.quick ? 256 : 1024, Dh = 64, ld = 3 * 256;
    const Tensor q = randn({nq, ld}), kt = randn({Dh, kv + 16}), v = randn({kv, ld}), p = rand({nq, kv});
    Tensor s = Tensor::empty({nq, kv}), o = Tensor::empty({nq, Dh}), dv = zeros({kv, Dh});
    auto f = [](const Tensor& t) { return t.data<float>(); };
    auto w = [](Tensor& t) { return static_cast<float*>(t.raw_data()); };
    // own: block_gemm, else cblas_sgemm
    auto gemm = [](bool own, bool trans_a, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                   const float* b, int64_t ldb, bool accumulate, float* c, int64_t ldc) {
      if (own) cpu::block_gemm(trans_a, m, n, k, 1.0f, a, lda, b, ldb, accumulate, c, ldc);
      else cpu::block_gemm_reference(trans_a, m, n, k, 1.0f, a, lda, b, ldb, accumulate, c, ldc);
    };
    struct Product {
      const char* name;
      std::function<void(bool)> run;  // its argument: `own` above
    };
    const std::vector<Product> products = {
        {"q kT", [&](bool own) { gemm(own, false, nq, kv, Dh, f(q), ld, f(kt), kv + 16, false, w(s), kv); }},
        {"P v", [&](bool own) { gemm(own, false, nq, Dh, kv, f(p), kv, f(v), ld, false, w(o), Dh); }},
        {"PT dO", [&](bool own) { gemm(own, true, kv, Dh, nq, f(p), kv, f(q), ld, true, w(dv), Dh); }},
    };
    const int before = openblas_get_num_threads();
    openblas_set_num_threads(1);
    for (const Product& product : products) {
      const auto [own, blas] = time_pair([&] { product.run(true); }, [&] { product.run(false); }, opt.budget_s);
      const double flop = 2.0 * double(nq * kv * Dh);
      emit(out, json{{"bench", "block_gemm"},
                     {"product", product.name},
                     {"shape", shape_str({nq, kv, Dh})},
                     {"block_gemm_gflops", round3(flop / own.median_s / 1e9)},
                     {"blas_gflops", round3(flop / blas.median_s / 1e9)},
                     {"reps", own.reps}});
    }
    openblas_set_num_threads(before);
  }
  // The products of a training step that packed_gemm serves (tensor/cpu/packed_gemm.h), at
  // lm-small's shapes (4096 rows of A: batch 16 by context 256, d 256): each layer's forward
  // x Wᵀ and input gradient dy W, and the head's, against cblas_sgemm on every thread.
  if (wanted(opt, "packed_gemm")) {
    struct Shape {
      const char* product;
      int64_t m, n, k;
      bool trans_b;
    };
    const int64_t rows = opt.quick ? 512 : 4096;
    const std::vector<Shape> shapes = {
        {"qkv x WT", rows, 768, 256, true},     {"proj x WT", rows, 256, 256, true},
        {"fc1 x WT", rows, 1024, 256, true},    {"fc2 x WT", rows, 256, 1024, true},
        {"head x WT", rows, 8192, 256, true},   {"qkv dy W", rows, 256, 768, false},
        {"proj dy W", rows, 256, 256, false},   {"fc1 dy W", rows, 256, 1024, false},
        {"fc2 dy W", rows, 1024, 256, false},   {"head dy W", rows, 8192 / 32, 8192, false},
        {"square 1024", 1024, 1024, 1024, false}, {"square 2048", 2048, 2048, 2048, false},
    };
    for (const Shape& sh : shapes) {
      const Tensor a = randn({sh.m, sh.k}), b = sh.trans_b ? randn({sh.n, sh.k}) : randn({sh.k, sh.n});
      Buffer c{size_t(sh.m * sh.n)};
      const int64_t ldb = sh.trans_b ? sh.k : sh.n;
      const auto [own, blas] = time_pair(
          [&] { cpu::packed_gemm(sh.m, sh.n, sh.k, a.data<float>(), sh.k, b.data<float>(), ldb, sh.trans_b, false, c.p, sh.n); },
          [&] {
            cpu::packed_gemm_reference(sh.m, sh.n, sh.k, a.data<float>(), sh.k, b.data<float>(), ldb, sh.trans_b, false,
                                       c.p, sh.n);
          },
          opt.budget_s);
      const double flop = 2.0 * double(sh.m) * double(sh.n) * double(sh.k);
      emit(out, json{{"bench", "packed_gemm"},
                     {"product", sh.product},
                     {"shape", shape_str({sh.m, sh.n, sh.k})},
                     {"taken", cpu::packed_gemm_takes(sh.m, sh.n, sh.k)},
                     {"packed_gflops", round3(flop / own.median_s / 1e9)},
                     {"blas_gflops", round3(flop / blas.median_s / 1e9)},
                     {"ratio", round3(blas.median_s / own.median_s)},
                     {"reps", own.reps}});
    }
  }
  // Mixed precision's products (tensor/cpu/bf16_gemm.h) at lm-small's shapes, the weight
  // gradients (transposed A) too: bf16_gemm on bf16 operands against cblas_sgemm on the same
  // values in f32, the product f32 training makes. "tiled": whether this build has the bf16
  // tile (AVX512_BF16); without it bf16_gemm widens the operands and calls sgemm.
  if (wanted(opt, "bf16_gemm")) {
    struct Shape {
      const char* product;
      int64_t m, n, k;
      bool trans_a, trans_b;
    };
    const int64_t rows = opt.quick ? 512 : 4096;
    const std::vector<Shape> shapes = {
        {"qkv x WT", rows, 768, 256, false, true},     {"fc1 x WT", rows, 1024, 256, false, true},
        {"fc2 x WT", rows, 256, 1024, false, true},    {"head x WT", rows, 8192, 256, false, true},
        {"qkv dy W", rows, 256, 768, false, false},    {"fc2 dy W", rows, 1024, 256, false, false},
        {"head dy W", rows, 256, 8192, false, false},  {"qkv dyT x", 768, 256, rows, true, false},
        {"fc1 dyT x", 1024, 256, rows, true, false},   {"head dyT x", 8192, 256, rows, true, false},
        {"square 1024", 1024, 1024, 1024, false, false},
    };
    for (const Shape& sh : shapes) {
      const Tensor a = sh.trans_a ? randn({sh.k, sh.m}) : randn({sh.m, sh.k});
      const Tensor b = sh.trans_b ? randn({sh.n, sh.k}) : randn({sh.k, sh.n});
      const Tensor a16 = a.to(DType::bf16), b16 = b.to(DType::bf16);
      const Tensor a32 = a16.to(DType::f32), b32 = b16.to(DType::f32);
      Buffer c{size_t(sh.m * sh.n)};
      const int64_t lda = sh.trans_a ? sh.m : sh.k, ldb = sh.trans_b ? sh.k : sh.n;
      const auto [own, blas] = time_pair(
          [&] {
            cpu::bf16_gemm(sh.m, sh.n, sh.k, a16.data<bf16>(), lda, sh.trans_a, b16.data<bf16>(), ldb, sh.trans_b,
                           false, c.p, sh.n);
          },
          [&] {
            cblas_sgemm(CblasRowMajor, sh.trans_a ? CblasTrans : CblasNoTrans, sh.trans_b ? CblasTrans : CblasNoTrans,
                        int(sh.m), int(sh.n), int(sh.k), 1.0f, a32.data<float>(), int(lda), b32.data<float>(),
                        int(ldb), 0.0f, c.p, int(sh.n));
          },
          opt.budget_s);
      const double flop = 2.0 * double(sh.m) * double(sh.n) * double(sh.k);
      emit(out, json{{"bench", "bf16_gemm"},
                     {"product", sh.product},
                     {"shape", shape_str({sh.m, sh.n, sh.k})},
                     {"tiled", cpu::kBf16Tiled},
                     {"bf16_gflops", round3(flop / own.median_s / 1e9)},
                     {"sgemm_gflops", round3(flop / blas.median_s / 1e9)},
                     {"ratio", round3(blas.median_s / own.median_s)},
                     {"reps", own.reps}});
    }
  }
}

// A training step alternates BLAS calls with OpenMP elementwise kernels. If the two
// thread pools spin-wait for each other's cores, the pair costs more than its parts
// (ratio < 1). runtime_init() sets OMP_WAIT_POLICY=passive for this reason (see
// tensor/runtime.h); `COPPER_NO_REEXEC=1 copper bench ops --filter interleave` shows
// the default spinning behaviour.
void bench_interleave(const Options& opt, std::FILE* out) {
  const int64_t n = opt.quick ? 128 : 512, m = opt.quick ? (1 << 16) : (1 << 20);
  Tensor a = randn({n, n}), b = randn({n, n}), x = randn({m}), y = randn({m});
  Tensor k1, k2;
  auto mm = [&] { k1 = matmul(a, b); };
  auto ad = [&] { k2 = add(x, y); };
  Timing t_mm = time_median(mm, opt.budget_s);
  Timing t_ad = time_median(ad, opt.budget_s);
  Timing t_both = time_median([&] { mm(); ad(); }, opt.budget_s);
  const double alone = t_mm.median_s + t_ad.median_s;
  emit(out, json{{"bench", "interleave"},
                 {"what", fmt::format("matmul {0}x{0}x{0} then add of {1} floats", n, m)},
                 {"alone_ms", round3(alone * 1e3)},
                 {"interleaved_ms", round3(t_both.median_s * 1e3)},
                 {"ratio", round3(alone / t_both.median_s)},
                 {"reps", t_both.reps}});
}

}  // namespace

void run_ops(const Options& opt, std::FILE* out) {
  manual_seed(1234);
  bench_env(out);
  if (wanted(opt, "matmul")) bench_matmul(opt, out);
  if (wanted(opt, "linear")) bench_linear(opt, out);
  if (wanted(opt, "add") || wanted(opt, "add_") || wanted(opt, "add_small") || wanted(opt, "add_bias"))
    bench_add(opt, out);
  bench_rows(opt, out);
  if (wanted(opt, "interleave")) bench_interleave(opt, out);
}

}  // namespace copper::bench
