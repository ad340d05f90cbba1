// cli_bench.cpp — `copper bench ops` (kernel throughput) and `copper bench train` (training
// steps of the benchmark model), as JSON lines.
//
// The benchmarks themselves live in bench/ (bench/bench.h; ops.cpp, train.cpp); this file only
// wires the flags. Each line is one JSON object, e.g.
//   {"bench":"matmul","shape":"1024x1024x1024","copper_gflops":370.1,"sgemm_gflops":371.5,"ratio":0.996,...}
//   {"bench":"train","framework":"copper","pe":"cope","tokens_per_s":...,"step_ms":...,"mfu":...,...}
// docs/PERF.md says how to run them and records the numbers measured on the reference machine.
#include <cstdio>
#include <sstream>

#include "bench/bench.h"
#include "examples/cli/commands.h"
#include "examples/cli/config_flags.h"

namespace copper::cli {

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Benchmarks that print JSON lines");
  cmd->require_subcommand(1);
  auto* ops = cmd->add_subcommand("ops", "matmul vs raw sgemm, add vs memcpy, softmax, layer_norm, cumsum (~1 min)");
  auto opt = std::make_shared<bench::Options>();
  ops->add_flag("--quick", opt->quick, "Small sizes, few repetitions (a smoke run of a few seconds)");
  ops->add_option("--filter", opt->filter, "Run only benchmarks whose name contains this (matmul, add, softmax, ...)");
  ops->add_option("--budget", opt->budget_s, "Seconds of timed repetitions per measurement")->check(CLI::PositiveNumber);
  ops->callback([opt] {
    bench::Options o = *opt;
    if (o.quick) o.budget_s = std::min(o.budget_s, 0.05);
    bench::run_ops(o, stdout);
  });

  auto* train = cmd->add_subcommand(
      "train", "Training steps of the benchmark model (../shared/bench/README.md): tokens/s, step ms, peak RSS, MFU");
  auto topt = std::make_shared<bench::TrainOptions>();
  auto pes = std::make_shared<std::string>("abs,rope,cope");
  train->add_option("--config", topt->config, "Benchmark model file, e.g. ../shared/bench/lm-small.json")
      ->required()
      ->check(CLI::ExistingFile);
  train->add_option("--pe", *pes, "Position encodings, comma-separated; one JSON line each")->capture_default_str();
  train->add_option("--steps", topt->steps, "Steps per encoding, the first 2 untimed")
      ->capture_default_str()
      ->check(CLI::Range(3, 100000));
  train->add_option("--threads", topt->threads, "BLAS and OpenMP threads (0: as the environment says)")
      ->check(CLI::NonNegativeNumber);
  train->add_flag("--profile", topt->profile, "Print a per-op table of the timed steps to stderr (tensor/profile.h)");
  auto device = std::make_shared<std::string>("cpu");
  train->add_option("--device", *device, kDeviceHelp)->capture_default_str();
  train->add_option("--dtype", topt->dtype, "precision of the products (f32, or bf16: mixed precision)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
  train->callback([topt, pes, device] {
    bench::TrainOptions o = *topt;
    o.device = or_fail(kExitUsage, [&] { return usable_device(*device); });
    std::stringstream in(*pes);
    for (std::string pe; std::getline(in, pe, ',');)
      if (!pe.empty()) o.pes.push_back(pe);
    if (o.pes.empty()) throw CLI::ValidationError("--pe", "names no encoding. HINT: e.g. --pe abs,rope,cope");
    bench::run_train(o, stdout);
  });
}

}  // namespace copper::cli
