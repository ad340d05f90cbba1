// random.cpp — xoshiro256** seeded through splitmix64 (the seeding its authors recommend).
#include "tensor/random.h"

#include <cmath>
#include <cstring>

namespace copper {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Generator::seed_(uint64_t seed) {
  for (auto& w : s_) w = splitmix64(seed);
  has_spare_ = false;
}

uint64_t Generator::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Generator::uniform() { return double(next_u64() >> 11) * 0x1.0p-53; }

double Generator::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  double r = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
  spare_ = r * std::sin(th);
  has_spare_ = true;
  return r * std::cos(th);
}

uint64_t Generator::below(uint64_t n) {
  if (n <= 1) return 0;
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // reject the short last bucket
  uint64_t x;
  do x = next_u64();
  while (x >= limit);
  return x % n;
}

std::array<uint64_t, 6> Generator::state() const {
  uint64_t bits;
  std::memcpy(&bits, &spare_, 8);
  return {s_[0], s_[1], s_[2], s_[3], uint64_t(has_spare_), bits};
}

void Generator::set_state(const std::array<uint64_t, 6>& s) {
  for (int i = 0; i < 4; ++i) s_[i] = s[i];
  has_spare_ = s[4] != 0;
  std::memcpy(&spare_, &s[5], 8);
}

Generator& default_generator() {
  thread_local Generator g(0x5eed);
  return g;
}

void manual_seed(uint64_t seed) { default_generator().seed_(seed); }

}  // namespace copper
