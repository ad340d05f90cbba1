// backend.cpp — which Backend serves which device.
#include "tensor/backend.h"

#include "tensor/cpu/cpu_backend.h"
#include "tensor/profile.h"

namespace copper {

namespace {
Backend*& cuda_backend_slot() {
  static Backend* b = nullptr;
  return b;
}
// The CUDA backend behind the profile's timing decorator; made when the backend registers.
Backend*& timed_cuda_backend_slot() {
  static Backend* b = nullptr;
  return b;
}
}  // namespace

Backend& backend_for(Device d) {
  if (d.type == DeviceType::cpu) {
    static auto* cpu = new CpuBackend;  // never destroyed, like the allocator
    // While profiling, the same kernels behind a decorator that times each call (tensor/profile.h).
    static Backend* timed = profile::timing_backend(cpu);
    return profile::enabled() ? *timed : *cpu;
  }
  Backend* b = cuda_backend_slot();
  COPPER_CHECK(b != nullptr, "backend", "no kernels for device {} in this build. HINT: build with CUDA (cmake -DCOPPER_CUDA=ON) on a machine with a GPU",
               d.str());
  return profile::enabled() ? *timed_cuda_backend_slot() : *b;
}

bool has_backend(DeviceType t) { return t == DeviceType::cpu || cuda_backend_slot() != nullptr; }

void register_backend(DeviceType t, Backend* b) {
  if (t == DeviceType::cuda) {
    cuda_backend_slot() = b;
    timed_cuda_backend_slot() = profile::timing_backend(b);  // never destroyed, like the backend
  }
}

void Backend::gemm_bias(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& c) {
  gemm(a, b, c, false);
  binary(BinaryOp::add, c, bias.expand(c.shape()), c);
}

void Backend::bias_gelu(const Tensor& x, const Tensor& bias, const Tensor& y, const Tensor& slope, int64_t /*rows*/,
                        int64_t /*n*/) {
  if (slope.defined()) {  // slope = 1 · gelu'(x + bias), written where x + bias was put
    binary(BinaryOp::add, x, bias.expand(x.shape()), slope);
    Tensor ones = Tensor::empty(x.shape(), x.dtype(), x.device());
    fill(ones, 1.0);
    unary(UnaryOp::gelu_erf, slope, y, 0, 0);
    unary_backward(UnaryOp::gelu_erf, slope, y, ones, slope, 0, 0);
    return;
  }
  binary(BinaryOp::add, x, bias.expand(x.shape()), y);
  unary(UnaryOp::gelu_erf, y, y, 0, 0);
}

void Backend::bias_gelu_backward(const Tensor& slope, const Tensor& g, const Tensor& dx, const Tensor& dbias,
                                 int64_t rows, int64_t n) {
  binary(BinaryOp::mul, g, slope, dx);
  if (dbias.defined()) reduce(ReduceOp::sum, dx, 1, rows, n, dbias);
}

}  // namespace copper
