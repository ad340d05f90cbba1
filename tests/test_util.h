// test_util.h — small helpers shared by the test files.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "tensor/error.h"

namespace copper::testing_util {

// An empty folder of its own under the system temp dir: copper_test_<tag>_<pid>.
inline std::filesystem::path fresh_temp_dir(const std::string& tag) {
  std::filesystem::path d = std::filesystem::temp_directory_path() / fmt::format("copper_test_{}_{}", tag, ::getpid());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

// The message of the copper::Error that fn throws ("" if it throws none).
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A file's bytes, and a file made of the given bytes (replacing what was there).
inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
inline void write_bytes(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

}  // namespace copper::testing_util
