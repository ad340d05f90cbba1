// storage.cpp — Storage and the caching CPU allocator.
#include "tensor/storage.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "tensor/error.h"

namespace copper {

std::string Device::str() const {
  if (type == DeviceType::cpu) return "cpu";
  return fmt::format("cuda:{}", index);
}

Device device_from_name(const std::string& name) {
  if (name == "cpu") return kCPU;
  if (name == "cuda") return Device{DeviceType::cuda, 0};
  if (name.rfind("cuda:", 0) == 0) {
    try {
      return Device{DeviceType::cuda, std::stoi(name.substr(5))};
    } catch (const std::exception&) {
    }
  }
  COPPER_THROW("device", "unknown device '{}'. HINT: use cpu, cuda or cuda:N", name);
}

namespace {

// Blocks are 64-byte aligned (a cache line, and an AVX-512 vector). Freed blocks go to a
// free list keyed by exact size; a training loop asks for the same sizes every step, so
// after the first step almost every allocation is a cache hit. The cache is bounded.
class CachingCpuAllocator final : public Allocator {
 public:
  static constexpr int64_t kMaxCached = int64_t(4) << 30;  // 4 GiB

  void* allocate(size_t nbytes) override {
    size_t n = round_up(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.num_allocs++;
    void* p = nullptr;
    auto it = free_.find(n);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      stats_.cached_bytes -= int64_t(n);
      stats_.num_cache_hits++;
    } else {
      p = std::aligned_alloc(64, n);
      if (!p) {
        release_cache_locked();
        p = std::aligned_alloc(64, n);
      }
      COPPER_CHECK(p != nullptr, "alloc", "out of memory allocating {} bytes on cpu", n);
    }
    stats_.allocated_bytes += int64_t(n);
    if (stats_.allocated_bytes > stats_.peak_bytes) stats_.peak_bytes = stats_.allocated_bytes;
    return p;
  }

  void deallocate(void* p, size_t nbytes) override {
    size_t n = round_up(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.allocated_bytes -= int64_t(n);
    if (stats_.cached_bytes + int64_t(n) > kMaxCached) {
      std::free(p);
      return;
    }
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

  ~CachingCpuAllocator() override { release_cache_locked(); }

 private:
  static size_t round_up(size_t n) { return n == 0 ? 64 : (n + 63) / 64 * 64; }
  void release_cache_locked() {
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    stats_.cached_bytes = 0;
  }

  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

Allocator*& cuda_allocator_slot() {
  static Allocator* a = nullptr;
  return a;
}

}  // namespace

Allocator& allocator_for(Device d) {
  if (d.type == DeviceType::cpu) {
    // Never destroyed: a tensor in static storage may outlive any other static object.
    static auto* cpu = new CachingCpuAllocator;
    return *cpu;
  }
  Allocator* a = cuda_allocator_slot();
  COPPER_CHECK(a != nullptr, "alloc", "device {} is not available in this build. HINT: build with CUDA (cmake -DCOPPER_CUDA=ON) on a machine with a GPU", d.str());
  return *a;
}

void register_allocator(DeviceType t, Allocator* a) {
  if (t == DeviceType::cuda) cuda_allocator_slot() = a;
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = allocator_for(device).allocate(nbytes);
}

Storage::~Storage() { allocator_for(device_).deallocate(data_, nbytes_); }

}  // namespace copper
