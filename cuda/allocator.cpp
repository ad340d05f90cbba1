// allocator.cpp — the caching device allocator: one per GPU, plain cudaMalloc underneath.
//
// cudaMalloc and cudaFree are slow (cudaFree waits for the whole device), and a training step
// allocates the same sizes every step. So a freed block goes to a free list keyed by its size,
// and a request is served by the smallest cached block of at least its size class and at most
// twice it; after the first steps no cudaMalloc happens at all. Size classes: 512-byte steps up
// to 1 MiB, then four classes per power of two (at most 25 % over).
//
// A block freed on the host may still be in use by a queued kernel. That is safe because every
// kernel of a device runs in its one stream (cuda/device.h): whatever reuses the block is queued
// after it. On cudaErrorMemoryAllocation the cache is released (cudaFree) and the call retried
// once; if that fails too, copper::Error reports the request and the statistics.
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/check.h"
#include "cuda/device.h"
#include "tensor/error.h"

namespace copper::cuda {

namespace {

constexpr size_t kSmallStep = 512;         // cudaMalloc aligns to 256 bytes at least; 512 keeps classes few
constexpr size_t kSmallLimit = size_t(1) << 20;  // 1 MiB: above it, four classes per power of two

size_t size_class(size_t nbytes) {
  const size_t n = nbytes == 0 ? kSmallStep : (nbytes + kSmallStep - 1) / kSmallStep * kSmallStep;
  if (n <= kSmallLimit) return n;
  const size_t step = (size_t(1) << (63 - __builtin_clzll(n))) / 4;
  return (n + step - 1) / step * step;
}

std::string mib(int64_t bytes) { return fmt::format("{:.1f} MiB", double(bytes) / double(1 << 20)); }

class CachingCudaAllocator final : public Allocator {
 public:
  explicit CachingCudaAllocator(int index) : index_(index) {}

  void* allocate(size_t nbytes) override {
    const size_t want = size_class(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.num_allocs++;
    void* p = nullptr;
    size_t got = want;
    auto it = free_.lower_bound(want);
    if (it != free_.end() && it->first <= 2 * want) {
      got = it->first;
      p = it->second.back();
      it->second.pop_back();
      if (it->second.empty()) free_.erase(it);
      stats_.cached_bytes -= int64_t(got);
      stats_.num_cache_hits++;
    } else {
      p = device_malloc_locked(want, nbytes);
      stats_.reserved_bytes += int64_t(want);
    }
    block_size_[p] = got;
    stats_.allocated_bytes += int64_t(got);
    if (stats_.allocated_bytes > stats_.peak_bytes) stats_.peak_bytes = stats_.allocated_bytes;
    return p;
  }

  void deallocate(void* p, size_t) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = block_size_.find(p);
    COPPER_CHECK(it != block_size_.end(), "alloc", "freeing a block the cuda:{} allocator did not hand out", index_);
    const size_t n = it->second;
    block_size_.erase(it);
    stats_.allocated_bytes -= int64_t(n);
    free_[n].push_back(p);
    stats_.cached_bytes += int64_t(n);
  }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mu_);
    release_cache_locked();
  }

  std::string summary() const {
    const AllocatorStats s = stats();
    return fmt::format("allocated {}, cached {}, reserved {}, peak {}", mib(s.allocated_bytes), mib(s.cached_bytes),
                       mib(s.reserved_bytes), mib(s.peak_bytes));
  }

 private:
  // cudaMalloc on this device; on out-of-memory, free the cache and try once more.
  void* device_malloc_locked(size_t want, size_t asked) {
    DeviceGuard g(index_);
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, want);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_cache_locked();
      err = cudaMalloc(&p, want);
    }
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      COPPER_THROW("alloc", "out of memory on cuda:{} allocating {} ({} bytes asked): the device has {} free of {}; "
                   "copper holds allocated {}, reserved {}, peak {} (its cache was emptied and the call retried). "
                   "HINT: a smaller batch or context, or fewer tensors kept alive between steps",
                   index_, mib(int64_t(want)), asked, mib(int64_t(free_b)), mib(int64_t(total_b)),
                   mib(stats_.allocated_bytes), mib(stats_.reserved_bytes), mib(stats_.peak_bytes));
    }
    if (err != cudaSuccess) fail_cuda(err, "cudaMalloc", __FILE__, __LINE__);
    return p;
  }

  void release_cache_locked() {
    if (free_.empty()) return;
    DeviceGuard g(index_);
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) {
        // cudaFree waits for the device, so no queued kernel still uses the block
        COPPER_CUDA_CHECK(cudaFree(p));
        stats_.reserved_bytes -= int64_t(size);
      }
    free_.clear();
    stats_.cached_bytes = 0;
  }

  const int index_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;      // cached blocks by size
  std::unordered_map<void*, size_t> block_size_;  // blocks handed out, and their sizes
  AllocatorStats stats_;
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
