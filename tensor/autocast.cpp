// autocast.cpp — the per-thread mixed-precision setting and the process-wide TF32 switch.
#include "tensor/autocast.h"

#include <atomic>

#include "tensor/error.h"

namespace copper {

namespace {
thread_local DType t_autocast = DType::f32;
std::atomic<bool> g_allow_tf32{false};
}  // namespace

DType autocast_dtype() { return t_autocast; }

void set_autocast_dtype(DType low) {
  COPPER_CHECK(low == DType::f32 || low == DType::bf16, "autocast",
               "matrix products can be rounded to bf16 (or kept f32), not {}. HINT: f16 would need loss scaling, "
               "which copper does not do; use bf16",
               dtype_name(low));
  t_autocast = low;
}

bool allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }
void set_allow_tf32(bool on) { g_allow_tf32.store(on, std::memory_order_relaxed); }

}  // namespace copper
