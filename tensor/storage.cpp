// storage.cpp — Storage and the caching CPU allocator.
#include "tensor/storage.h"

#include <cstdlib>

#include "tensor/caching_allocator.h"
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

// Blocks are 64-byte aligned (a cache line, and an AVX-512 vector) and cached
// (tensor/caching_allocator.h): fresh pages from the OS cost a page fault and a page clear
// each (docs/PERF.md, "The CPU allocator and sequences of varying length"). Classes are 64
// bytes apart up to 4 KiB; the cache holds at most 4 GiB.
constexpr SizeClasses kCpuClasses{64, 4096};
constexpr size_t kCpuAlignment = 64;
constexpr int64_t kCpuMaxCached = int64_t(4) << 30;

class CachingCpuAllocator final : public CachingAllocator {
 public:
  CachingCpuAllocator() : CachingAllocator(kCpuClasses, kCpuMaxCached) {}
  ~CachingCpuAllocator() override { release_cache(); }

 private:
  void* raw_allocate(size_t bytes) override { return std::aligned_alloc(kCpuAlignment, bytes); }
  void raw_free(void* p, size_t) override { std::free(p); }
  [[noreturn]] void out_of_memory(size_t want, size_t, const AllocatorStats& s) override {
    COPPER_THROW("alloc", "out of memory allocating {} bytes on cpu (copper holds {} bytes, peak {})", want,
                 s.reserved_bytes, s.peak_bytes);
  }
  std::string device_name() const override { return "cpu"; }
};

AllocatorLookup& cuda_allocator_slot() {
  static AllocatorLookup lookup = nullptr;
  return lookup;
}

}  // namespace

size_t cpu_size_class(size_t nbytes) { return kCpuClasses.of(nbytes); }

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
