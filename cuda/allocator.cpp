// allocator.cpp — the caching device allocator: one per GPU, plain cudaMalloc underneath.
//
// The cache itself is tensor/caching_allocator.h, shared with the CPU: a freed block goes to a
// free list by size, and after the first steps no cudaMalloc happens at all. Size classes are
// 512 bytes apart up to 1 MiB (cudaMalloc aligns to 256 bytes at least; 512 keeps the classes
// few), then four per power of two.
//
// A block freed on the host may still be in use by a queued kernel. That is safe because every
// kernel of a device runs in its one stream (cuda/device.h): whatever reuses the block is queued
// after it. On cudaErrorMemoryAllocation the cache is released (cudaFree) and the call retried
// once; if that fails too, copper::Error reports the request and the statistics.
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include "cuda/check.h"
#include "cuda/device.h"
#include "tensor/caching_allocator.h"
#include "tensor/error.h"

namespace copper::cuda {

namespace {

constexpr SizeClasses kDeviceClasses{512, size_t(1) << 20};
constexpr int64_t kNoCacheLimit = std::numeric_limits<int64_t>::max();  // the device's memory is the limit

std::string mib(int64_t bytes) { return fmt::format("{:.1f} MiB", double(bytes) / double(1 << 20)); }

class CachingCudaAllocator final : public CachingAllocator {
 public:
  explicit CachingCudaAllocator(int index) : CachingAllocator(kDeviceClasses, kNoCacheLimit), index_(index) {}

  std::string summary() const {
    const AllocatorStats s = stats();
    return fmt::format("allocated {}, cached {}, reserved {}, peak {}", mib(s.allocated_bytes), mib(s.cached_bytes),
                       mib(s.reserved_bytes), mib(s.peak_bytes));
  }

 private:
  void* raw_allocate(size_t bytes) override {
    DeviceGuard g(index_);
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear it: the cache is released and the call retried
      return nullptr;
    }
    if (err != cudaSuccess) fail_cuda(err, "cudaMalloc", __FILE__, __LINE__);
    return p;
  }

  void raw_free(void* p, size_t) override {
    DeviceGuard g(index_);
    COPPER_CUDA_CHECK(cudaFree(p));  // waits for the device, so no queued kernel still uses the block
  }

  [[noreturn]] void out_of_memory(size_t want, size_t asked, const AllocatorStats& s) override {
    DeviceGuard g(index_);
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    COPPER_THROW("alloc", "out of memory on cuda:{} allocating {} ({} bytes asked): the device has {} free of {}; "
                 "copper holds allocated {}, reserved {}, peak {} (its cache was emptied and the call retried). "
                 "HINT: a smaller batch or context, or fewer tensors kept alive between steps",
                 index_, mib(int64_t(want)), asked, mib(int64_t(free_b)), mib(int64_t(total_b)),
                 mib(s.allocated_bytes), mib(s.reserved_bytes), mib(s.peak_bytes));
  }

  std::string device_name() const override { return fmt::format("cuda:{}", index_); }

  const int index_;
};

std::mutex& table_mutex() {
  static std::mutex mu;
  return mu;
}
// One allocator per device, made on first use and never destroyed (a tensor in static storage
// may outlive any other static object, as on the CPU).
std::vector<CachingCudaAllocator*>& table() {
  static auto* t = new std::vector<CachingCudaAllocator*>;
  return *t;
}

CachingCudaAllocator* find(int index) {
  std::lock_guard<std::mutex> lock(table_mutex());
  auto& t = table();
  if (index < 0 || size_t(index) >= t.size()) return nullptr;
  return t[size_t(index)];
}

}  // namespace

Allocator& allocator(int index) {
  if (CachingCudaAllocator* a = find(index)) return *a;
  check_device_index(index);
  std::lock_guard<std::mutex> lock(table_mutex());
  auto& t = table();
  if (t.size() <= size_t(index)) t.resize(size_t(index) + 1, nullptr);
  if (!t[size_t(index)]) t[size_t(index)] = new CachingCudaAllocator(index);
  return *t[size_t(index)];
}

std::string allocator_summary(int index) {
  CachingCudaAllocator* a = find(index);
  return a ? a->summary() : "no allocations yet";
}

}  // namespace copper::cuda
