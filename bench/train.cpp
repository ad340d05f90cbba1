// train.cpp — `copper bench train`: training throughput of the benchmark model.
//
// The model is fixed by ../shared/bench/README.md (keys vocab/d/h/layers/ctx/batch/npos
// in a JSON file such as lm-small.json) so that another framework can build the same one;
// bench/torch_ref/bench_train.py is the PyTorch twin and prints the same JSON line.
//
// Per position encoding, one JSON line:
//   {"bench":"train","framework":"copper","pe":"cope","tokens_per_s":...,"step_ms":...,
//    "peak_rss_mb":...,"gflops":...,"mfu":...,  then the details: sgemm_gflops, sgemm_n,
//    fma_peak_gflops, peak_fraction, fma_unit (f32 on the CPU; null otherwise), flop_per_token,
//    params, threads, steps, loss, config, device, dtype, device_peak_mb, blas}
// --device cuda runs the model and the sgemm reference on a GPU; --dtype bf16 runs both under
// mixed precision (tensor/autocast.h). device_peak_mb is the device allocator's peak since the
// process started (on the CPU, peak_rss_mb is the one to read).
// A step is forward + backward + AdamW update; step_ms is the median of the steps after
// kWarmupSteps untimed ones. mfu is the model's FLOP/s over the FLOP/s of a square sgemm
// through copper::matmul measured in the same process right after the steps (so both see the
// same machine load); it says how close the step comes to doing nothing but big matmuls. On the
// CPU, peak_fraction is the same FLOP/s over the machine's FMA ceiling (bench/peak.cpp,
// fma_peak_gflops, fma_unit: the vectors it ran on), which no product can pass: how close the
// step comes to the hardware.
#include <cblas.h>
#include <omp.h>
#include <sys/resource.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "bench/bench.h"
#include "nn/optim.h"
#include "nn/transformer.h"
#include "tensor/autocast.h"
#include "tensor/backend.h"
#include "tensor/error.h"
#include "tensor/ops.h"
#include "tensor/profile.h"
#include "tensor/random.h"
#include "tensor/runtime.h"
#include "tensor/storage.h"

namespace copper::bench {

namespace {

using json = nlohmann::ordered_json;

// Hyper-parameters fixed by the benchmark spec (../shared/bench/README.md).
constexpr double kLr = 3e-4;
constexpr double kBeta1 = 0.9, kBeta2 = 0.999;
constexpr double kEps = 1e-8;  // PyTorch's AdamW default, so both frameworks run the same update
constexpr double kWeightDecay = 0.01;
constexpr uint64_t kDataSeed = 1234;  // inputs and targets; bench_train.py uses the same number
constexpr int kWarmupSteps = 2;
// The sgemm reference: a square n x n x n product with n = kSgemmWidthFactor * d (the MLP's
// [tokens, d] x [d, 4d] is the model's typical big product), clamped to this range.
constexpr int64_t kSgemmWidthFactor = 4;
constexpr int64_t kSgemmMin = 512, kSgemmMax = 2048;
// On a GPU a product of 2048³ is too small to fill the device, so the reference there is the
// size at which cuBLAS reaches its peak rate.
constexpr int64_t kSgemmGpu = 8192;
constexpr double kSgemmBudgetS = 0.3;
constexpr double kBytesPerMiB = 1024.0 * 1024.0;

struct BenchModel {
  int64_t vocab = 0, d = 0, h = 0, layers = 0, ctx = 0, batch = 0, npos = 0;
};

BenchModel read_model(const std::string& path) {
  const char* op = "bench train";
  std::ifstream f(path);
  COPPER_CHECK(f.good(), op, "cannot read the config '{}'. HINT: pass --config ../shared/bench/lm-small.json", path);
  json js;
  try {
    js = json::parse(f);
  } catch (const std::exception& e) {
    COPPER_THROW(op, "'{}' is not valid JSON: {}. HINT: see ../shared/bench/README.md for the keys", path, e.what());
  }
  BenchModel m;
  for (auto [key, field] : {std::pair<const char*, int64_t*>{"vocab", &m.vocab}, {"d", &m.d}, {"h", &m.h},
                            {"layers", &m.layers}, {"ctx", &m.ctx}, {"batch", &m.batch}, {"npos", &m.npos}}) {
    COPPER_CHECK(js.contains(key) && js[key].is_number_integer() && js[key].get<int64_t>() > 0, op,
                 "'{}' needs a positive integer '{}'. HINT: keys are vocab, d, h, layers, ctx, batch, npos", path, key);
    *field = js[key].get<int64_t>();
  }
  return m;
}

// The TransformerLM of the spec: GPT-style pre-norm, LayerNorm, exact GELU MLP of width 4d,
// untied head, no dropout.
nn::TransformerConfig model_config(const BenchModel& m, const std::string& pe) {
  nn::TransformerConfig c;
  c.vocab = m.vocab;
  c.d_model = m.d;
  c.n_heads = m.h;
  c.n_layers = m.layers;
  c.context = m.ctx;
  c.d_ff = 4 * m.d;
  c.mlp = "gelu";
  c.pre_norm = true;
  c.tie_embeddings = false;
  c.dropout = 0;
  c.norm = "layernorm";
  c.pe = pe;
  c.npos = m.npos;
  c.validate();
  return c;
}

// Model FLOPs per trained token (forward + backward), the PaLM-paper count (Chowdhery et al.
// 2022, appendix B): 6 · (parameters in matmuls) + 12 · layers · ctx · d.
//  - parameters in matmuls: per layer qkv 3d², proj d², fc1 4d², fc2 4d² = 12d², plus the
//    head d·vocab; a matmul costs 2 FLOPs per weight per token forward and 4 backward;
//  - attention q·kᵀ and p·v: 2 · 2 · ctx · d per token per layer forward, ×3 with the backward,
//    counted over the full ctx x ctx square (the convention; the causal half would be 6·L·ctx·d).
// Not counted: embeddings, biases, LayerNorm, softmax, GELU, CoPE's gates and interpolation,
// the optimizer. The count is the same for every encoding, so mfu compares them on the same work.
double flop_per_token(const BenchModel& m) {
  const double d = double(m.d);
  const double matmul_params = double(m.layers) * 12.0 * d * d + d * double(m.vocab);
  return 6.0 * matmul_params + 12.0 * double(m.layers) * double(m.ctx) * d;
}

// Peak resident memory. Linux: VmHWM from /proc/self/status, which reset_peak_rss() can set
// back to the current RSS (so that each encoding of one process gets its own peak);
// elsewhere getrusage's ru_maxrss, the peak of the whole process.
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (f) f << "5";  // "5": reset the peak RSS counter (Documentation/filesystems/proc.rst)
}
double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream in(line.substr(6));
      double kb = 0;
      in >> kb;
      if (kb > 0) return kb * 1024.0 / kBytesPerMiB;
    }
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) * 1024.0 / kBytesPerMiB;  // ru_maxrss is in KiB on Linux
}

// GFLOP/s of copper::matmul on a square n³ product (one BLAS sgemm or cuBLAS call, bf16 under
// the caller's AutocastGuard), median of repetitions, each waited for on a GPU.
double sgemm_gflops(int64_t n, Device device) {
  Tensor a = randn({n, n}).to(device), b = randn({n, n}).to(device);
  Tensor keep;
  const Timing t = time_median(
      [&] {
        keep = matmul(a, b);
        synchronize(device);
      },
      kSgemmBudgetS);
  return 2.0 * double(n) * double(n) * double(n) / t.median_s / 1e9;
}

// v to `digits` decimals (as the nearest double, which JSON prints without a tail of digits).
double round_to(double v, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(v * scale) / scale;
}

}  // namespace

void run_train(const TrainOptions& opt, std::FILE* out) {
  const char* op = "bench train";
  COPPER_CHECK(opt.steps > kWarmupSteps, op, "--steps {} leaves no timed step after {} warm-up steps. HINT: use --steps {} or more",
               opt.steps, kWarmupSteps, kWarmupSteps + 1);
  if (opt.threads > 0) {
    openblas_set_num_threads(opt.threads);
    omp_set_num_threads(opt.threads);
  }
  const BenchModel m = read_model(opt.config);
  const RuntimeInfo rt = runtime_info();
  const double fpt = flop_per_token(m);
  const int64_t tokens = m.batch * m.ctx;
  const int64_t sgemm_n = opt.device.is_cpu() ? std::clamp(kSgemmWidthFactor * m.d, kSgemmMin, kSgemmMax) : kSgemmGpu;

  // The FMA ceiling, measured before the first encoding and again after each one's steps: a
  // shared VM now and then runs two threads at the speed of one for a while, which a ceiling
  // must not take for the machine. (bf16's products run on other instructions, at twice the
  // rate: no f32 ceiling for them.)
  const bool f32_cpu = opt.device.is_cpu() && opt.dtype == "f32";
  FmaPeak peak = f32_cpu ? fma_peak(rt.omp_threads) : FmaPeak{};

  for (const std::string& pe : opt.pes) {
    const nn::TransformerConfig cfg = model_config(m, pe);
    // Each encoding's own peak: the previous one's tensors, freed into the allocator's cache,
    // go back to the OS first (one process per encoding, as bench_vs_torch.sh runs, is cleaner still).
    allocator_for(kCPU).empty_cache();
    reset_peak_rss();
    // The same data every run and every encoding: inputs and targets uniform in [0, vocab).
    Generator data_gen(kDataSeed);
    const Tensor ids = randint(0, m.vocab, {m.batch, m.ctx}, DType::i64, &data_gen);
    const Tensor targets = randint(0, m.vocab, {m.batch * m.ctx}, DType::i64, &data_gen);

    nn::TransformerLM model(cfg);
    model.to(opt.device);
    const Tensor ids_d = ids.to(opt.device), targets_d = targets.to(opt.device);
    const auto params = model.named_parameters();
    nn::AdamOptions ao;
    ao.lr = kLr;
    ao.beta1 = kBeta1;
    ao.beta2 = kBeta2;
    ao.eps = kEps;
    ao.weight_decay = kWeightDecay;
    nn::AdamW optim(params, ao);

    double loss_value = 0;
    const AutocastGuard precision(dtype_from_name(opt.dtype));
    auto step = [&] {  // loss.item() at the end waits for a GPU's queued kernels
      optim.zero_grad();
      Tensor loss = model.loss(ids_d, targets_d);  // the head and the loss as one op
      loss.backward();
      {
        profile::PhaseScope phase(profile::Phase::optimizer);
        optim.step();
      }
      loss_value = loss.item();
    };

    for (int i = 0; i < kWarmupSteps; ++i) step();
    const bool profiled_before = profile::enabled();  // COPPER_PROFILE=1: keep it on for the table at exit
    if (opt.profile) {  // a table of the timed steps only
      profile::enable(true);
      profile::reset();
    }
    std::vector<double> times;
    for (int i = kWarmupSteps; i < opt.steps; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      step();
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    double timed_total = 0;
    for (double t : times) timed_total += t;
    if (opt.profile) {
      std::fprintf(stderr, "\n[%s, %s]", opt.config.c_str(), pe.c_str());
      profile::report(stderr, timed_total, int64_t(times.size()));
      profile::enable(profiled_before);
    }
    const double step_s = median_of(times);
    const double rss = peak_rss_mb();
    const double sgemm = sgemm_gflops(sgemm_n, opt.device);
    if (f32_cpu) {  // a ceiling: the highest of the measurements so far
      const FmaPeak now = fma_peak(rt.omp_threads);
      if (now.gflops > peak.gflops) peak = now;
    }
    const double tok_s = double(tokens) / step_s;
    const double gflops = fpt * tok_s / 1e9;

    emit(out, json{{"bench", "train"},
                   {"framework", "copper"},
                   {"pe", pe},
                   {"tokens_per_s", round_to(tok_s, 1)},
                   {"step_ms", round_to(step_s * 1e3, 3)},
                   {"peak_rss_mb", round_to(rss, 1)},
                   {"gflops", round_to(gflops, 2)},
                   {"mfu", round_to(gflops / sgemm, 4)},
                   {"sgemm_gflops", round_to(sgemm, 2)},
                   {"sgemm_n", sgemm_n},
                   {"fma_peak_gflops", f32_cpu ? json(round_to(peak.gflops, 2)) : json(nullptr)},
                   {"peak_fraction", f32_cpu ? json(round_to(gflops / peak.gflops, 4)) : json(nullptr)},
                   {"fma_unit", f32_cpu ? json(peak.unit) : json(nullptr)},
                   {"flop_per_token", fpt},
                   {"params", model.num_parameters()},
                   {"threads", rt.blas_threads},
                   {"omp_threads", rt.omp_threads},
                   {"steps", int(times.size())},
                   {"loss", round_to(loss_value, 4)},
                   {"config", opt.config},
                   {"device", opt.device.str()},
                   {"dtype", opt.dtype},
                   {"device_peak_mb", round_to(double(allocator_for(opt.device).stats().peak_bytes) / kBytesPerMiB, 1)},
                   {"blas", rt.blas_config + " core " + rt.blas_core}});
  }
}

}  // namespace copper::bench
