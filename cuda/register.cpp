// register.cpp — makes cuda:N tensors work: registers the caching allocators and CudaBackend
// for DeviceType::cuda when the program starts. No CUDA call happens here, so a program built
// with CUDA starts (and runs on the CPU) on a machine without a GPU; the first cuda:N tensor
// there fails with a HINT. The library is linked whole (cuda/CMakeLists.txt) so that this
// object, which nothing references, is kept.
#include "cuda/cuda_backend.h"
#include "cuda/device.h"

namespace copper::cuda {
namespace {

struct Registrar {
  Registrar() {
    register_allocator(DeviceType::cuda, &allocator);
    register_backend(DeviceType::cuda, &backend());
  }
};
const Registrar registrar;

}  // namespace
}  // namespace copper::cuda
