// cli_info.cpp — placeholder until its owner fills it in.
#include "examples/cli/commands.h"

namespace copper::cli {

void add_info(CLI::App& app) { app.add_subcommand("info", "(not yet implemented)"); }

}  // namespace copper::cli
