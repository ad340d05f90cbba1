// cli_info.cpp — `copper info`: what this build is and what it runs on.
//
// Prints the compiler and build type, the OpenBLAS kernel ("core") and where that choice
// came from (see tensor/runtime.h), the BLAS and OpenMP thread counts, the OpenMP wait
// policy and the CPU's vector features. `--json` prints the same as one JSON object, for scripts and bug reports.
#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "examples/cli/commands.h"
#include "tensor/runtime.h"

#ifndef COPPER_BUILD_TYPE
#define COPPER_BUILD_TYPE "unknown"
#endif

namespace copper::cli {

namespace {

std::string compiler_name() {
#if defined(__clang__)
  return fmt::format("clang {}.{}.{}", __clang_major__, __clang_minor__, __clang_patchlevel__);
#elif defined(__GNUC__)
  return fmt::format("gcc {}.{}.{}", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#else
  return "unknown";
#endif
}

// The "model name" line of /proc/cpuinfo, or "unknown".
std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

nlohmann::ordered_json info_json() {
  const RuntimeInfo r = runtime_info();
  nlohmann::ordered_json j;
  j["compiler"] = compiler_name();
  j["build_type"] = COPPER_BUILD_TYPE;
#if defined(__OPTIMIZE__)
  j["optimized"] = true;
#else
  j["optimized"] = false;
#endif
#if defined(__AVX512F__)
  j["compiled_for"] = "avx512";
#elif defined(__AVX2__)
  j["compiled_for"] = "avx2";
#else
  j["compiled_for"] = "baseline x86-64";
#endif
  j["cpu"] = cpu_model();
  j["cpu_features"] = r.cpu_features;
  j["blas"] = r.blas_config;
  j["blas_core"] = r.blas_core;
  j["blas_core_source"] = r.coretype_src;
  j["openblas_coretype_env"] = r.coretype_env;
  j["blas_threading"] = r.blas_parallel;
  j["blas_threads"] = r.blas_threads;
  j["omp_threads"] = r.omp_threads;
  j["omp_wait_policy"] = r.omp_wait_policy;
  j["omp_wait_policy_source"] = r.omp_wait_src;
  return j;
}

void print_info(bool json) {
  const nlohmann::ordered_json j = info_json();
  if (json) {
    fmt::print("{}\n", j.dump());
    return;
  }
  auto s = [&](const char* key) { return j[key].get<std::string>(); };
  std::string source = s("blas_core_source");
  if (source == "user") source = fmt::format("user (OPENBLAS_CORETYPE={})", s("openblas_coretype_env"));
  if (source == "auto") source = fmt::format("auto (copper set OPENBLAS_CORETYPE={} and re-executed)", s("openblas_coretype_env"));
  if (source == "detected") source = "detected (OpenBLAS's own CPU detection)";
  fmt::print("copper\n");
  fmt::print("  build         {} {}{}, code for {}\n", s("compiler"), s("build_type"),
             j["optimized"].get<bool>() ? "" : " (not optimized)", s("compiled_for"));
  fmt::print("  cpu           {}\n", s("cpu"));
  fmt::print("  cpu features  {}\n", s("cpu_features"));
  fmt::print("  blas          {}\n", s("blas"));
  fmt::print("  blas core     {} — {}\n", s("blas_core"), source);
  fmt::print("  threads       blas {} ({}), openmp {}\n", j["blas_threads"].get<int>(), s("blas_threading"),
             j["omp_threads"].get<int>());
  std::string wait = s("omp_wait_policy").empty() ? "unset (workers spin after each region)" : s("omp_wait_policy");
  std::string wait_src = s("omp_wait_policy_source");
  if (wait_src == "auto") wait_src = "copper set it and re-executed; OMP_WAIT_POLICY or COPPER_NO_REEXEC=1 overrides";
  fmt::print("  omp wait      {} — {}\n", wait, wait_src);
}

}  // namespace

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show the build, the OpenBLAS kernel in use, threads and CPU features");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "Print one JSON object instead of text");
  cmd->callback([json] { print_info(*json); });
}

}  // namespace copper::cli
