// storage.cpp — Storage and the caching CPU allocator.
#include "tensor/storage.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>
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

// Blocks are 64-byte aligned (a cache line, and an AVX-512 vector). A freed block goes to a
// free list keyed by its size instead of back to the OS: fresh pages from the OS cost a
// page fault and a page clear each. Before this cache served varying sizes, 60 counting
// steps spent 17.6 s in the kernel against 15.4 s of user time (docs/PERF.md).
//
// Sizes vary when the sequence length does (a batch is as long as its longest example), so
// requests are rounded up to size classes — 64-byte steps up to 4 KiB, then four classes
// per power of two (at most 25 % over) — and a request is served by the smallest cached
// block of at least its class and at most twice it. After the first steps of a run almost
// every allocation is a cache hit. The cache is bounded; `empty_cache` returns it all.
class CachingCpuAllocator final : public Allocator {
 public:
  static constexpr int64_t kMaxCached = int64_t(4) << 30;  // 4 GiB

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
      p = std::aligned_alloc(64, want);
      if (!p) {
        release_cache_locked();
        p = std::aligned_alloc(64, want);
      }
      COPPER_CHECK(p != nullptr, "alloc", "out of memory allocating {} bytes on cpu", want);
      stats_.reserved_bytes += int64_t(want);
    }
    block_size_[p] = got;
    stats_.allocated_bytes += int64_t(round64(nbytes));
    if (stats_.allocated_bytes > stats_.peak_bytes) stats_.peak_bytes = stats_.allocated_bytes;
    return p;
  }

  void deallocate(void* p, size_t nbytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = block_size_.find(p);
    COPPER_CHECK(it != block_size_.end(), "alloc", "freeing a block this allocator did not hand out");
    const size_t n = it->second;
    block_size_.erase(it);
    stats_.allocated_bytes -= int64_t(round64(nbytes));
    if (stats_.cached_bytes + int64_t(n) > kMaxCached) {
      std::free(p);
      stats_.reserved_bytes -= int64_t(n);
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

  // The size class of a request (bytes): see the comment above the class.
  static size_t size_class(size_t nbytes) {
    const size_t n = round64(nbytes);
    if (n <= 4096) return n;
    const size_t step = (size_t(1) << (63 - __builtin_clzll(n))) / 4;  // a quarter of the power of two below
    return (n + step - 1) / step * step;
  }

 private:
  static size_t round64(size_t n) { return n == 0 ? 64 : (n + 63) / 64 * 64; }
  void release_cache_locked() {
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    stats_.reserved_bytes -= stats_.cached_bytes;
    stats_.cached_bytes = 0;
  }

  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;   // cached blocks by size
  std::unordered_map<void*, size_t> block_size_;  // blocks handed out, and their sizes
  AllocatorStats stats_;
};

AllocatorLookup& cuda_allocator_slot() {
  static AllocatorLookup lookup = nullptr;
  return lookup;
}

}  // namespace

size_t cpu_size_class(size_t nbytes) { return CachingCpuAllocator::size_class(nbytes); }

Allocator& allocator_for(Device d) {
  if (d.type == DeviceType::cpu) {
    // Never destroyed: a tensor in static storage may outlive any other static object.
    static auto* cpu = new CachingCpuAllocator;
    return *cpu;
  }
  AllocatorLookup lookup = cuda_allocator_slot();
  COPPER_CHECK(lookup != nullptr, "alloc", "device {} is not available in this build. HINT: build with CUDA (cmake -DCOPPER_CUDA=ON) on a machine with a GPU", d.str());
  return lookup(d.index);
}

void register_allocator(DeviceType t, AllocatorLookup for_index) {
  if (t == DeviceType::cuda) cuda_allocator_slot() = for_index;
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = allocator_for(device).allocate(nbytes);
}

Storage::~Storage() { allocator_for(device_).deallocate(data_, nbytes_); }

}  // namespace copper
