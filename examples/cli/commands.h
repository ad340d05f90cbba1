// commands.h — the subcommands of build/bin/copper. Each lives in its own file
// (cli_<name>.cpp) and adds itself to the app; main.cpp only calls these.
// A subcommand is an example a user can read: it uses the public API only.
#pragma once
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "tensor/error.h"

namespace copper::cli {

void add_info(CLI::App& app);   // cli_info.cpp  — build, BLAS kernel, threads
void add_bench(CLI::App& app);  // cli_bench.cpp — copper bench ops
void add_demo(CLI::App& app);   // cli_demo.cpp  — what `make demo` runs
void add_task(CLI::App& app);   // cli_task.cpp  — copper task train|eval|compare|gates
void add_lm(CLI::App& app);     // cli_lm.cpp    — copper lm prepare|train|eval|generate|attention-map|gates
void add_plot(CLI::App& app);   // cli_plot.cpp  — copper plot: loss curves of runs

// Exit codes shared by the subcommands.
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 2;    // bad flags or flag values
inline constexpr int kExitData = 3;     // malformed input file, wrong checkpoint
inline constexpr int kExitRuntime = 4;  // anything else that went wrong

// Thrown by a subcommand to end the program with a message and one of the codes above;
// main() prints it and returns the code, so no subcommand calls exit().
class ExitError : public std::runtime_error {
 public:
  ExitError(int code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

// End the command with `code`: main() prints the message and returns the code. The
// library throws copper::Error; only the command-line front end decides on exit codes.
[[noreturn]] inline void fail(int code, const std::string& msg) {
  std::fflush(stdout);
  throw ExitError(code, msg);
}

// Run f; a copper::Error becomes exit code `code`, and so does a filesystem error (named
// by its path rather than in the library's wording).
template <class F>
auto or_fail(int code, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    fail(code, e.what());
  } catch (const std::filesystem::filesystem_error& e) {
    fail(code, fmt::format("[files] cannot write '{}': {}. HINT: check that the path names a folder you can write to",
                           e.path1().string(), e.code().message()));
  }
}

}  // namespace copper::cli
