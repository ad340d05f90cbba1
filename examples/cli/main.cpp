// main.cpp — build/bin/copper: one program, one subcommand per file.
//
// copper::Error from the library becomes a one-line message and an exit code; the
// library itself never exits.
//
// Under mpirun or srun (docs/08-data-parallel.md) every rank runs this same program. Rank 0
// prints; the others' output goes to /dev/null (COPPER_ALL_RANKS_PRINT=1 keeps it), except
// their errors. An error on any rank ends all of them (MPI_Abort), so that no rank waits
// forever for a peer that has stopped.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

#include <fmt/format.h>

#include "dist/comm.h"
#include "examples/cli/commands.h"
#include "tensor/error.h"
#include "tensor/runtime.h"
#include "train/trainer.h"

namespace {

// Sends this rank's stdout and stderr to /dev/null; returns a descriptor of the old stderr.
int silence_output() {
  const int err = dup(STDERR_FILENO);
  const int null = open("/dev/null", O_WRONLY);
  if (err < 0 || null < 0) return STDERR_FILENO;
  dup2(null, STDOUT_FILENO);
  dup2(null, STDERR_FILENO);
  close(null);
  return err;
}

}  // namespace

int main(int argc, char** argv) {
  copper::runtime_init(argc, argv);  // first: may re-exec with the right OpenBLAS kernel
  copper::dist::Communicator* comm = nullptr;
  try {
    comm = &copper::dist::world();  // MPI when launched by mpirun/srun; sizes each rank's threads
  } catch (const copper::Error& e) {
    fmt::print(stderr, "copper: error: {}\n", e.what());
    return copper::cli::kExitRuntime;
  }
  const bool many = comm->size() > 1;
  const std::string who = many ? fmt::format("copper (rank {}/{})", comm->rank(), comm->size()) : "copper";
  int err_fd = STDERR_FILENO;
  if (comm->rank() > 0 && std::getenv("COPPER_ALL_RANKS_PRINT") == nullptr) err_fd = silence_output();
  auto error = [&](const char* what, int code) {
    const std::string line = fmt::format("{}: error: {}\n", who, what);
    if (write(err_fd, line.data(), line.size()) < 0) {
      // nowhere left to report it
    }
    if (many) comm->abort(code);
    return code;
  };

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
  } catch (const copper::train::Interrupted& e) {  // SIGINT/SIGTERM: a checkpoint was written (every rank stops)
    fmt::print(stderr, "copper: {}\n", e.what());
    return 128 + e.signal;
  } catch (const copper::cli::ExitError& e) {
    return error(e.what(), e.code());
  } catch (const copper::Error& e) {
    return error(e.what(), copper::cli::kExitRuntime);
  } catch (const std::exception& e) {
    return error(e.what(), copper::cli::kExitRuntime);
  }
  return copper::cli::kExitOk;
}
