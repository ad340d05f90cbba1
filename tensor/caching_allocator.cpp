// caching_allocator.cpp — the block cache shared by the CPU and GPU allocators.
#include "tensor/caching_allocator.h"

#include "tensor/error.h"

namespace copper {

size_t SizeClasses::of(size_t nbytes) const {
  const size_t n = rounded(nbytes);
  if (n <= linear_limit) return n;
  const size_t quarter = (size_t(1) << (63 - __builtin_clzll(n))) / 4;  // of the power of two below n
  return (n + quarter - 1) / quarter * quarter;
}

void* CachingAllocator::allocate(size_t nbytes) {
  const size_t want = classes_.of(nbytes);
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
    p = raw_allocate(want);
    if (p == nullptr) {
      release_cache_locked();
      p = raw_allocate(want);
    }
    if (p == nullptr) out_of_memory(want, nbytes, stats_);
    stats_.reserved_bytes += int64_t(want);
  }
  block_size_[p] = got;
  stats_.allocated_bytes += int64_t(classes_.rounded(nbytes));
  if (stats_.allocated_bytes > stats_.peak_bytes) stats_.peak_bytes = stats_.allocated_bytes;
  return p;
}

void CachingAllocator::deallocate(void* p, size_t nbytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = block_size_.find(p);
  COPPER_CHECK(it != block_size_.end(), "alloc", "freeing a block the {} allocator did not hand out", device_name());
  const size_t n = it->second;
  block_size_.erase(it);
  stats_.allocated_bytes -= int64_t(classes_.rounded(nbytes));
  if (stats_.cached_bytes + int64_t(n) > max_cached_) {
    raw_free(p, n);
    stats_.reserved_bytes -= int64_t(n);
    return;
  }
  free_[n].push_back(p);
  stats_.cached_bytes += int64_t(n);
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::empty_cache() { release_cache(); }

void CachingAllocator::release_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  release_cache_locked();
}

void CachingAllocator::release_cache_locked() {
  for (auto& [size, blocks] : free_)
    for (void* p : blocks) raw_free(p, size);
  free_.clear();
  stats_.reserved_bytes -= stats_.cached_bytes;
  stats_.cached_bytes = 0;
}

}  // namespace copper
