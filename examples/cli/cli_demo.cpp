// cli_demo.cpp — `copper demo`: what `make demo` runs.
//
// The default demo is the paper in small: Flip-Flop language modelling with absolute, RoPE
// and CoPE position encodings, a table of held-out errors like the paper's, and what one
// CoPE head counts (tasks/compare.h; a few minutes on 2 cores). `--xor` runs the first
// demo instead: a small MLP learning XOR with copper's tensors and autograd
// (examples/xor_mlp.h; also the standalone build/bin/example_xor_mlp).
#include <chrono>

#include <fmt/format.h>

#include "examples/cli/commands.h"
#include "examples/xor_mlp.h"
#include "tasks/compare.h"
#include "tensor/error.h"

namespace copper::cli {

// The XOR demo as a function: returns the exit code.
int run_xor_demo(const examples::XorConfig& cfg) {
  fmt::print("copper demo: a 2-{}-1 MLP learns XOR with full-batch SGD (lr {}, {} steps)\n", cfg.hidden, cfg.lr,
             cfg.steps);
  const auto t0 = std::chrono::steady_clock::now();
  examples::XorResult r = examples::train_xor_mlp(cfg, stdout);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("{} steps in {:.2f} s\n", cfg.steps, s);
  return r.solved ? kExitOk : kExitRuntime;
}

void add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "demo", "Flip-Flop with abs, rope and cope position encodings (what `make demo` runs); --xor: an MLP learns XOR");
  auto cfg = std::make_shared<examples::XorConfig>();
  auto xor_flag = std::make_shared<bool>(false);
  auto out_dir = std::make_shared<std::string>("runs/demo");
  cmd->add_flag("--xor", *xor_flag, "Run the XOR MLP demo instead (the options below apply to it)");
  cmd->add_option("--out", *out_dir, "Flip-Flop demo: folder for the three runs (default runs/demo)");
  cmd->add_option("--steps", cfg->steps, "SGD steps")->check(CLI::PositiveNumber);
  cmd->add_option("--lr", cfg->lr, "Learning rate")->check(CLI::PositiveNumber);
  cmd->add_option("--hidden", cfg->hidden, "Hidden units")->check(CLI::PositiveNumber);
  cmd->add_option("--seed", cfg->seed, "Seed of the initial weights");
  cmd->add_option("--log-every", cfg->log_every, "Print the loss every N steps")->check(CLI::NonNegativeNumber);
  cmd->callback([cfg, xor_flag, out_dir] {
    if (!*xor_flag) {
      tasks::run_flipflop_demo(*out_dir, stdout);
      return;
    }
    const int rc = run_xor_demo(*cfg);
    // ExitError, not CLI::RuntimeError: main() treats every CLI11 error as a usage error.
    if (rc != kExitOk) throw ExitError(rc, "the MLP did not learn XOR");
  });
}

}  // namespace copper::cli
