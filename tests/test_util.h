// test_util.h — small helpers shared by the test files.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>

#include <fmt/format.h>

namespace copper::testing_util {

// An empty folder of its own under the system temp dir: copper_test_<tag>_<pid>.
inline std::filesystem::path fresh_temp_dir(const std::string& tag) {
  std::filesystem::path d = std::filesystem::temp_directory_path() / fmt::format("copper_test_{}_{}", tag, ::getpid());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace copper::testing_util
