// cli_bench.cpp — placeholder until its owner fills it in.
#include "examples/cli/commands.h"

namespace copper::cli {

void add_bench(CLI::App& app) { app.add_subcommand("bench", "(not yet implemented)"); }

}  // namespace copper::cli
