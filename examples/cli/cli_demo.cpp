// cli_demo.cpp — placeholder until its owner fills it in.
#include "examples/cli/commands.h"

namespace copper::cli {

void add_demo(CLI::App& app) { app.add_subcommand("demo", "(not yet implemented)"); }

}  // namespace copper::cli
