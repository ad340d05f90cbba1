// cli_info.cpp — `copper info`: what this build is and what it runs on.
//
// Prints the compiler and build type, the OpenBLAS kernel ("core") and where that choice
// came from (see tensor/runtime.h), the BLAS and OpenMP thread counts, the OpenMP wait
// policy and the CPU's vector features, and, in a CUDA build, the GPUs it sees (name, compute
// capability, memory), the driver and runtime versions and the GPU architectures the binary
// has code for. `--json` prints the same as one JSON object, for scripts and bug reports.
#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "examples/cli/commands.h"
#include "tensor/runtime.h"

#ifdef COPPER_HAS_CUDA
#include "cuda/cuda.h"
#endif

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

std::string gib(int64_t bytes) { return fmt::format("{:.1f} GiB", double(bytes) / double(int64_t(1) << 30)); }

// {"built": false} without the CUDA backend; else versions, architectures and one entry per GPU
// (an empty list and "error" when none is usable).
nlohmann::ordered_json cuda_json() {
  nlohmann::ordered_json j;
#ifdef COPPER_HAS_CUDA
  const cuda::SystemInfo s = cuda::system_info();
  j["built"] = true;
  j["runtime"] = cuda::version_string(s.runtime_version);
  j["driver"] = s.driver_version ? cuda::version_string(s.driver_version) : "none";
  j["architectures"] = s.built_architectures;
  j["error"] = s.error;
  j["cublas"] = cuda::cublas_library();
  j["cublas_error"] = cuda::cublas_error();
  j["devices"] = nlohmann::ordered_json::array();
  for (const cuda::DeviceProperties& d : s.devices) {
    nlohmann::ordered_json e;
    e["index"] = d.index;
    e["name"] = d.name;
    e["compute_capability"] = fmt::format("{}.{}", d.major, d.minor);
    e["multiprocessors"] = d.multiprocessors;
    e["total_bytes"] = d.total_bytes;
    e["free_bytes"] = d.free_bytes;
    j["devices"].push_back(e);
  }
#else
  j["built"] = false;
#endif
  return j;
}

void print_cuda(const nlohmann::ordered_json& c) {
  if (!c["built"].get<bool>()) {
    fmt::print("  cuda          not built (cmake -DCOPPER_CUDA=ON with the CUDA toolkit installed)\n");
    return;
  }
  const std::string versions =
      fmt::format("runtime {}, driver {}, code for {}", c["runtime"].get<std::string>(), c["driver"].get<std::string>(),
                  c["architectures"].get<std::string>());
  const std::string cublas_error = c["cublas_error"].get<std::string>();
  const std::string cublas =
      cublas_error.empty()
          ? fmt::format("{} (opened by the first GPU product; found)", c["cublas"].get<std::string>())
          : fmt::format("{} cannot be opened: {}", c["cublas"].get<std::string>(), cublas_error);
  if (c["devices"].empty())
    fmt::print("  cuda          no GPU: {} ({})\n", c["error"].get<std::string>(), versions);
  else
    fmt::print("  cuda          {}\n", versions);
  fmt::print("  cublas        {}\n", cublas);
  for (const auto& d : c["devices"])
    fmt::print("  cuda:{:<8} {}, compute {}, {} SMs, {} ({} free)\n", d["index"].get<int>(), d["name"].get<std::string>(),
               d["compute_capability"].get<std::string>(), d["multiprocessors"].get<int>(),
               gib(d["total_bytes"].get<int64_t>()), gib(d["free_bytes"].get<int64_t>()));
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
  j["blas_thread_timeout"] = r.blas_thread_timeout;
  j["blas_thread_timeout_source"] = r.blas_timeout_src;
  j["cuda"] = cuda_json();
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
  std::string timeout = s("blas_thread_timeout").empty() ? "unset (2^28 cycles: workers poll ~0.1 s after each call)"
                                                          : "2^" + s("blas_thread_timeout") + " cycles";
  std::string timeout_src = s("blas_thread_timeout_source");
  if (timeout_src == "auto")
    timeout_src = "copper set OPENBLAS_THREAD_TIMEOUT and re-executed; setting it or COPPER_NO_REEXEC=1 overrides";
  fmt::print("  blas poll     {} — {}\n", timeout, timeout_src);
  print_cuda(j["cuda"]);
}

}  // namespace

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show the build, the OpenBLAS kernel in use, threads, CPU features and GPUs");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "Print one JSON object instead of text");
  cmd->callback([json] { print_info(*json); });
}

}  // namespace copper::cli
