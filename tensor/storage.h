// storage.h — the memory a tensor points into, on a device, from a caching allocator.
//
// Many tensors (views) share one Storage through shared_ptr; the Storage frees its
// block back to its device's allocator when the last view goes away.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace copper {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  bool is_cpu() const { return type == DeviceType::cpu; }
  std::string str() const;
};
inline constexpr Device kCPU{DeviceType::cpu, 0};
// "cpu", "cuda", "cuda:1"; throws copper::Error on anything else.
Device device_from_name(const std::string& name);

// Allocation statistics, one set per device allocator.
struct AllocatorStats {
  int64_t allocated_bytes = 0;   // bytes currently handed out to tensors (as asked, 64-byte rounded)
  int64_t peak_bytes = 0;        // the most ever handed out at once
  int64_t cached_bytes = 0;      // bytes of whole blocks held in free lists for reuse
  int64_t reserved_bytes = 0;    // bytes taken from the OS or the device and not yet returned (in use + cached)
  int64_t num_allocs = 0;        // allocations served
  int64_t num_cache_hits = 0;    // of which served from the cache
};

// One allocator per device. The CPU one caches freed blocks by size class, because a
// training step allocates the same shapes (or, with varying sequence lengths, similar
// ones) every step and fresh pages from the OS cost a page fault each. The CUDA backend
// (cuda/allocator.cpp) plugs in one per GPU behind the same interface.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* p, size_t nbytes) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void empty_cache() = 0;
};
Allocator& allocator_for(Device d);
// The block size the CPU allocator uses for a request of nbytes (exposed for tests).
size_t cpu_size_class(size_t nbytes);
// Register the allocators of a non-CPU device type (called by the CUDA backend at start-up):
// `for_index(i)` returns the allocator of device i (cuda:i), or throws copper::Error.
using AllocatorLookup = Allocator& (*)(int index);
void register_allocator(DeviceType t, AllocatorLookup for_index);

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

}  // namespace copper
