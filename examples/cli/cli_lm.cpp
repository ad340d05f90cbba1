// cli_lm.cpp — `copper lm ...`: language modeling (being written).
#include "examples/cli/commands.h"

namespace copper::cli {
void add_lm(CLI::App& app) { app.add_subcommand("lm", "language models on WikiText and code"); }
}  // namespace copper::cli
