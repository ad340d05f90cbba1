// cli_plot.cpp — `copper plot`: loss curves (being written).
#include "examples/cli/commands.h"

namespace copper::cli {
void add_plot(CLI::App& app) { app.add_subcommand("plot", "loss curves of one or more runs"); }
}  // namespace copper::cli
