// cli_task.cpp — placeholder until its owner fills it in.
#include "examples/cli/commands.h"

namespace copper::cli {

void add_task(CLI::App& app) { app.add_subcommand("task", "(not yet implemented)"); }

}  // namespace copper::cli
