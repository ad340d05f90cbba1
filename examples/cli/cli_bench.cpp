// cli_bench.cpp — `copper bench ops`: kernel throughput as JSON lines.
//
// The benchmarks themselves live in bench/ (bench/bench.h); this file only wires the
// flags. Each line is one JSON object, e.g.
//   {"bench":"matmul","shape":"1024x1024x1024","copper_gflops":370.1,"sgemm_gflops":371.5,"ratio":0.996,...}
// docs/PERF.md records the numbers measured on the reference machine.
#include <cstdio>

#include "bench/bench.h"
#include "examples/cli/commands.h"

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
}

}  // namespace copper::cli
