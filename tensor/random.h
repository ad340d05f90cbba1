// random.h — a small, seeded, reproducible random generator (xoshiro256**).
//
// The state is a few 64-bit words, so a checkpoint can save and restore it exactly.
// Each thread has a default generator (manual_seed sets it); ops that draw random
// numbers take an optional Generator* to use instead.
#pragma once
#include <array>
#include <cstdint>

namespace copper {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) { seed_(seed); }
  void seed_(uint64_t seed);
  uint64_t next_u64();
  double uniform();           // [0, 1) with 53 random bits
  double normal();            // standard normal (Box–Muller, both values used)
  uint64_t below(uint64_t n); // uniform integer in [0, n), unbiased

  // The whole state: the four words, then whether a spare normal is pending, then its bits.
  std::array<uint64_t, 6> state() const;
  void set_state(const std::array<uint64_t, 6>& s);

 private:
  std::array<uint64_t, 4> s_{};
  bool has_spare_ = false;
  double spare_ = 0;
};

// The calling thread's default generator.
Generator& default_generator();
// Seed the calling thread's default generator.
void manual_seed(uint64_t seed);

}  // namespace copper
