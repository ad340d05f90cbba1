// grad_mode.h — whether ops record the graph, per thread.
#pragma once

namespace copper {

bool grad_enabled();
void set_grad_enabled(bool on);

// RAII: no graph is recorded inside its scope (inference, optimizer updates, backward itself).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace copper
