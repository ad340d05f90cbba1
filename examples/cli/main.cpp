// main.cpp — build/bin/copper: one program, one subcommand per file.
//
// copper::Error from the library becomes a one-line message and an exit code; the
// library itself never exits.
#include <fmt/format.h>

#include "examples/cli/commands.h"
#include "tensor/error.h"
#include "tensor/runtime.h"
#include "train/trainer.h"

int main(int argc, char** argv) {
  copper::runtime_init(argc, argv);  // first: may re-exec with the right OpenBLAS kernel
  CLI::App app{"copper — tensors, autograd and transformers with contextual position encoding (CoPE)"};
  app.require_subcommand(1);
  copper::cli::add_info(app);
  copper::cli::add_bench(app);
  copper::cli::add_demo(app);
  copper::cli::add_task(app);
  copper::cli::add_lm(app);
  copper::cli::add_plot(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? copper::cli::kExitOk : copper::cli::kExitUsage;
  } catch (const copper::train::Interrupted& e) {  // SIGINT/SIGTERM: a checkpoint was written
    fmt::print(stderr, "copper: {}\n", e.what());
    return 128 + e.signal;
  } catch (const copper::cli::ExitError& e) {
    fmt::print(stderr, "copper: error: {}\n", e.what());
    return e.code();
  } catch (const copper::Error& e) {
    fmt::print(stderr, "copper: error: {}\n", e.what());
    return copper::cli::kExitRuntime;
  } catch (const std::exception& e) {
    fmt::print(stderr, "copper: error: {}\n", e.what());
    return copper::cli::kExitRuntime;
  }
  return copper::cli::kExitOk;
}
