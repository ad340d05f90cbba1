// caching_allocator.h — the block cache that both the CPU allocator (tensor/storage.cpp) and
// each GPU's allocator (cuda/allocator.cpp) are made of.
//
// A training step allocates the same sizes every step, and getting fresh memory is slow (on
// the CPU a page fault and a page clear per fresh page; on a GPU cudaMalloc, and cudaFree
// waits for the whole device). So a freed block goes to a free list keyed by its size instead
// of back to the system, and a request is served by the smallest cached block of at least its
// size class and at most twice it. After the first steps of a run almost every allocation is a
// cache hit.
//
// Size classes: multiples of `step` bytes up to `linear_limit`, then four classes per power of
// two (at most 25 % over), so that the sequence lengths of a run's batches, which vary, map to
// a few sizes. A device supplies only how a block is obtained and returned, and what an
// out-of-memory error says.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tensor/storage.h"

namespace copper {

struct SizeClasses {
  size_t step;          // every block is a multiple of this (and at least one step)
  size_t linear_limit;  // up to here classes are `step` apart; above, four per power of two
  // The class of a request of `nbytes`.
  size_t of(size_t nbytes) const;
  // nbytes rounded up to a whole number of steps (what the statistics count as allocated).
  size_t rounded(size_t nbytes) const { return nbytes == 0 ? step : (nbytes + step - 1) / step * step; }
};

class CachingAllocator : public Allocator {
 public:
  void* allocate(size_t nbytes) final;
  void deallocate(void* p, size_t nbytes) final;
  AllocatorStats stats() const final;
  void empty_cache() final;

 protected:
  // max_cached: above this many cached bytes a freed block goes back to the system.
  CachingAllocator(SizeClasses classes, int64_t max_cached) : classes_(classes), max_cached_(max_cached) {}

  // A fresh block of `bytes` from the system, or nullptr when it has none (the cache is then
  // returned to the system and the call made once more).
  virtual void* raw_allocate(size_t bytes) = 0;
  // Give a block obtained from raw_allocate back to the system.
  virtual void raw_free(void* p, size_t bytes) = 0;
  // Throws copper::Error for a request that failed even with the cache emptied; `want` is the
  // size class, `asked` the request, `s` the statistics at that moment.
  [[noreturn]] virtual void out_of_memory(size_t want, size_t asked, const AllocatorStats& s) = 0;
  // A name for messages ("cpu", "cuda:0").
  virtual std::string device_name() const = 0;

  // Return every cached block to the system. Derived destructors call it (the base's cannot:
  // raw_free is theirs).
  void release_cache();

 private:
  void release_cache_locked();

  const SizeClasses classes_;
  const int64_t max_cached_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;     // cached blocks by size
  std::unordered_map<void*, size_t> block_size_;  // blocks handed out, and their sizes
  AllocatorStats stats_;
};

}  // namespace copper
