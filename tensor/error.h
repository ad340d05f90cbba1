// error.h — the one exception type of copper and the checks that raise it.
//
// Every message has the form  "[op] what went wrong: details. HINT: what to do"
// so that a user reading a stack-less error still knows which op failed and why.
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace copper {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throw copper::Error with a formatted message: COPPER_THROW("matmul", "inner dims differ: {} x {}", a, b)
#define COPPER_THROW(op, ...) \
  throw ::copper::Error(fmt::format("[{}] {}", op, fmt::format(__VA_ARGS__)))

// Check a condition; on failure throw with the op name and a formatted message.
#define COPPER_CHECK(cond, op, ...)        \
  do {                                     \
    if (!(cond)) COPPER_THROW(op, __VA_ARGS__); \
  } while (0)

}  // namespace copper
