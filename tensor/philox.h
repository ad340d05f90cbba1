// philox.h — Philox4x32-10, the counter-based random generator of Salmon, Moraes, Dror and
// Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC 2011), for random numbers that are
// the same on every device.
//
// A counter-based generator is a pure function: block(counter, key) gives four 32-bit words,
// and different counters give independent-looking blocks. So element i of a random tensor can
// be computed by whichever thread, core or GPU thread owns it, in any order, and the CPU and a
// GPU fill a tensor with the same bits. copper's random streams are keyed by one 64-bit draw
// from a Generator (tensor/random.h); element i of a stream is word i % 4 of the block at
// counter i / 4.
//
// Header-only and free of the Tensor headers, so that CUDA kernels (cuda/*.cu) include it too;
// tests/test_tensor.cpp checks it against Random123's published known-answer vectors.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define COPPER_PHILOX_FN __host__ __device__ inline
#else
#define COPPER_PHILOX_FN inline
#endif

namespace copper::philox {

struct Block {
  uint32_t w[4];
};

inline constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;   // the round multipliers
inline constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u; // the key schedule's increments
inline constexpr int kRounds = 10;

// One round: two 32x32->64 multiplications, their halves mixed with the other words and the key.
COPPER_PHILOX_FN Block round(const Block& c, uint32_t k0, uint32_t k1) {
  const uint64_t p0 = uint64_t(kMul0) * c.w[0], p1 = uint64_t(kMul1) * c.w[2];
  const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0), hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
  return Block{{hi1 ^ c.w[1] ^ k0, lo1, hi0 ^ c.w[3] ^ k1, lo0}};
}

// The four words of counter `c` under key (k0, k1): ten rounds, the key bumped between them.
COPPER_PHILOX_FN Block philox4x32_10(Block c, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < kRounds; ++r) {
    if (r > 0) {
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    c = round(c, k0, k1);
  }
  return c;
}

// The block at index `b` of the stream keyed by `key`: counter (b low, b high, 0, 0).
COPPER_PHILOX_FN Block stream_block(uint64_t key, uint64_t b) {
  return philox4x32_10(Block{{uint32_t(b), uint32_t(b >> 32), 0u, 0u}}, uint32_t(key), uint32_t(key >> 32));
}

// A word as a float in [0, 1): its top 24 bits (a float's precision) over 2^24.
COPPER_PHILOX_FN float unit_float(uint32_t w) { return float(w >> 8) * (1.0f / 16777216.0f); }

// Element i of the stream keyed by `key` as a float in [0, 1). The reference for the kernels,
// which compute each block once for four elements.
COPPER_PHILOX_FN float uniform_at(uint64_t key, uint64_t i) {
  return unit_float(stream_block(key, i / 4).w[i % 4]);
}

// Dropout's keep-scales of elements base .. base + n - 1 of the stream keyed by `key`: out[j] =
// scale where the element's uniform is >= p, else 0. One block per four elements, whatever
// base is, so a caller may cut a tensor anywhere (dropout_mask, the fused attention's rows).
template <class T>
COPPER_PHILOX_FN void keep_scales(uint64_t key, float p, T scale, uint64_t base, int64_t n, T* out) {
  for (int64_t j = 0; j < n;) {
    const uint64_t idx = base + uint64_t(j);
    const Block r = stream_block(key, idx / 4);
    for (unsigned w = unsigned(idx % 4); w < 4 && j < n; ++w, ++j) out[j] = unit_float(r.w[w]) >= p ? scale : T(0);
  }
}

// Two standard normals from two words (Box–Muller, in double): u1 in (0, 1] from the first
// word, so its logarithm is finite, u2 in [0, 1) from the second; the pair is r cos(2 pi u2),
// r sin(2 pi u2) with r = sqrt(-2 ln u1). A block's words (0, 1) give elements 4b and 4b+1,
// words (2, 3) elements 4b+2 and 4b+3. A GPU's log, sin and cos may differ from the C
// library's in the last bit of the double, so CPU and GPU agree to about 1e-15, not bit for bit.
struct NormalPair {
  double z0, z1;
};
COPPER_PHILOX_FN NormalPair normal_pair(uint32_t w0, uint32_t w1) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  constexpr double k2to32 = 4294967296.0;
  const double u1 = (double(w0) + 1.0) / k2to32, u2 = double(w1) / k2to32;
  const double r = ::sqrt(-2.0 * ::log(u1)), t = kTwoPi * u2;  // ::, not copper::log (the tensor op)
  return NormalPair{r * ::cos(t), r * ::sin(t)};
}

// Element i of the normal stream keyed by `key`: the reference for the randn kernels.
COPPER_PHILOX_FN double normal_at(uint64_t key, uint64_t i) {
  const Block b = stream_block(key, i / 4);
  const unsigned j = unsigned(i % 4) & ~1u;  // the pair's first word
  const NormalPair p = normal_pair(b.w[j], b.w[j + 1]);
  return i % 2 == 0 ? p.z0 : p.z1;
}

}  // namespace copper::philox
