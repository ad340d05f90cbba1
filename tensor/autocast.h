// autocast.h — mixed precision for matrix products, per thread.
//
// Inside an AutocastGuard(DType::bf16) scope, matmul (and so linear, the head's product in
// linear_cross_entropy, and the q·kᵀ and p·v of attention composed from ops) rounds its f32
// operands to bf16 and multiplies them with f32 accumulation, writing an f32 result: the
// products run at the GPU's bf16 tensor-core rate (on a CPU with AVX512_BF16, at twice the
// f32 rate: tensor/cpu/bf16_gemm.h), while everything else — weights and optimizer state (the
// f32 "master" copies), norms, softmax, the loss and CoPE's positions — stays f32, since those
// ops never see a bf16 tensor. The backward of a product made under the guard uses the same
// rounding (its gradient rounded to bf16, the saved bf16 operands), whatever the guard says
// when the backward runs; the gradients that reach the parameters are f32. The fused
// attention ops (causal_attention and its rotary and CoPE forms, tensor/ops.h) round the
// operands of their block products the same way (q, k, v, the probabilities, the gradients)
// on the CPU (Backend::attention's `products`); CoPE's z = q·eᵀ inside the kernel stays f32.
//
// Outside any guard, or with DType::f32, matmul computes in its operands' dtype. f64 operands
// are never rounded (gradcheck stays exact).
#pragma once
#include "tensor/dtype.h"

namespace copper {

// The dtype f32 matrix products round their operands to on this thread: f32 (off) or bf16.
DType autocast_dtype();
void set_autocast_dtype(DType low);

class AutocastGuard {
 public:
  explicit AutocastGuard(DType low) : prev_(autocast_dtype()) { set_autocast_dtype(low); }
  ~AutocastGuard() { set_autocast_dtype(prev_); }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType prev_;
};

// TF32 for f32 products on GPUs (inputs rounded to a 10-bit mantissa inside the tensor cores,
// f32 accumulation; about 1e-3 relative error). Off by default; a process-wide switch, since
// it trades accuracy for speed on every product. The CPU has no TF32 and ignores it.
bool allow_tf32();
void set_allow_tf32(bool on);

}  // namespace copper
