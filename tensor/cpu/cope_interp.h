// cope_interp.h — the interpolation step that CoPE's CPU kernels share (cope.cpp's rows and
// the fused attention's CoPE term, cope_term.h): a counted position is fractional, and its
// logit is read from the integer table between its floor and its ceiling.
#pragma once
#include <cstdint>

#include "tensor/cpu/lanes.h"

namespace copper::cpu {

// A count capped at the table's last position: min(count, cap), where a NaN count (from a NaN
// gate logit) gives the cap, so that the table index taken from it is always in range; the
// NaN still reaches the outputs through the gate and the logit themselves. (The vector forms
// put the count first in min, whose second operand is what a NaN lane gets; CUDA's min
// ignores a NaN too.)
template <class F>
F capped_count(F count, F cap) {
  return count < cap ? count : cap;
}

// The two table indices for a clamped position c >= 0: lo = floor c (a cast, since c >= 0)
// and hi = ceil c = lo + (c > lo), with the weight w = c - lo of the upper entry.
template <class F>
struct CopeInterp {
  int64_t lo, hi;
  F w;
  explicit CopeInterp(F c) : lo(int64_t(c)), hi(lo + (c > F(lo))), w(c - F(lo)) {}
  // The table z read at c: z[lo] + w (z[hi] - z[lo]).
  F at(const F* z) const { return z[lo] + w * (z[hi] - z[lo]); }
};

// The longest table the AVX-512 f32 kernels hold in registers (CopeTableInRegisters): they
// load a row's z whole, where the others read it only at the counts.
inline constexpr int64_t kCopeTableInRegisters = 64;

#if defined(__AVX512F__)
// CopeInterp's floor and weight for sixteen f32 positions c >= 0 at a time (the ceiling is
// not needed: CopeTableInRegisters keeps each entry's step to the next).
struct CopeInterp16 {
  __m512i lo;
  __m512 w;
  // (The maskz forms of the conversions: GCC 12 warns on the plain ones' undefined source.)
  explicit CopeInterp16(__m512 c)
      : lo(_mm512_maskz_cvttps_epi32(first_lanes(16), c)),
        w(_mm512_sub_ps(c, _mm512_maskz_cvtepi32_ps(first_lanes(16), lo))) {}
};

// A table z of at most kTableInRegisters f32 entries held in registers, with each entry's step
// to the next, z[i + 1] - z[i] (0 for the last): an entry is picked by two permutes and a
// blend instead of a gather, which loads its sixteen elements one by one (docs/PERF.md,
// "Where CoPE's row time goes"). The table read at c is then z[lo] + w step[lo], CopeInterp's
// z[lo] + w (z[hi] - z[lo]) with the difference taken once per row (at a whole c, w = 0 and
// hi = lo). The kernels using it are held to the f64 reference by
// OpValues.CausalCopeAttention*.
struct CopeTableInRegisters {
  static constexpr int64_t kTableInRegisters = kCopeTableInRegisters;
  __m512 part[4], step[4];
  CopeTableInRegisters(const float* z, int64_t npos) {
    for (int64_t k = 0; k < 4; ++k) {  // (no address past the table's end is formed)
      const int64_t base = 16 * k;
      part[k] = base < npos ? _mm512_maskz_loadu_ps(first_lanes(npos - base), z + base) : _mm512_setzero_ps();
      const __m512 next =
          base + 1 < npos ? _mm512_maskz_loadu_ps(first_lanes(npos - 1 - base), z + base + 1) : _mm512_setzero_ps();
      step[k] = _mm512_maskz_sub_ps(first_lanes(npos - 1 - base), next, part[k]);
    }
  }
  // From four registers r, entry i for sixteen indices in [0, 64): bits 0-4 pick within a
  // pair of registers, `high` (bit 5) the pair.
  static __m512 pick(const __m512* r, __m512i i, __mmask16 high) {
    return _mm512_mask_blend_ps(high, _mm512_permutex2var_ps(r[0], i, r[1]), _mm512_permutex2var_ps(r[2], i, r[3]));
  }
  static __mmask16 high_half(__m512i i) { return _mm512_test_epi32_mask(i, _mm512_set1_epi32(32)); }
  // The table read at the positions: z[lo] + w step[lo].
  __m512 at(const CopeInterp16& ip) const {
    const __mmask16 high = high_half(ip.lo);
    return _mm512_fmadd_ps(ip.w, pick(step, ip.lo, high), pick(part, ip.lo, high));
  }
  // step[lo]: z[hi] - z[lo], and 0 at the last entry.
  __m512 step_at(const CopeInterp16& ip) const { return pick(step, ip.lo, high_half(ip.lo)); }
};

// A table z of any length read at sixteen positions by gathers, the same reads as
// CopeTableInRegisters: z[lo] + w step[lo] with step[lo] = z[lo + 1] - z[lo], 0 at the last
// entry (no read past the table). CopeTableWindowed's reader where a vector's floors spread
// past its window.
struct CopeTableGathered {
  const float* z;
  int64_t npos;
  __m512i next(const CopeInterp16& ip) const {  // lo + 1, or lo at the last entry
    return _mm512_maskz_min_epi32(0xFFFF, _mm512_add_epi32(ip.lo, _mm512_set1_epi32(1)),
                                  _mm512_set1_epi32(int32_t(npos - 1)));
  }
  __m512 gather(__m512i i) const { return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFFFF, i, z, 4); }
  __m512 at(const CopeInterp16& ip) const {
    const __m512 lo = gather(ip.lo);
    return _mm512_fmadd_ps(ip.w, _mm512_sub_ps(gather(next(ip)), lo), lo);
  }
  __m512 step_at(const CopeInterp16& ip) const { return _mm512_sub_ps(gather(next(ip)), gather(ip.lo)); }
};

// A table z of any length read at sixteen positions of one walk's vector through a window of
// 32 entries in two registers. A vector's counts never rise with the key (they are suffix
// sums, raised to a running maximum where rounding would break that), so its last lane has
// the lowest floor, and its sixteen counts differ by at most fifteen gates, each at most 1:
// every floor lies in [base, base + 16] from the last lane's floor, base, so it and the entry
// after it are among the 32 loaded from base. Where a floor does not (a NaN count, read at the
// cap), the vector is gathered instead.
struct CopeTableWindowed {
  const float* z;
  int64_t npos;
  struct Window {
    __m512 part[2];
    __m512i rel;  // each lane's floor less the window's base
    bool inside;  // every floor within [base, base + 16], so its next entry within the window
  };
  Window window(const CopeInterp16& ip) const {
    Window w;
    const int32_t base = _mm_extract_epi32(_mm512_maskz_extracti32x4_epi32(__mmask8(0xF), ip.lo, 3), 3);
    w.rel = _mm512_sub_epi32(ip.lo, _mm512_set1_epi32(base));
    w.inside = _mm512_cmp_epu32_mask(w.rel, _mm512_set1_epi32(16), _MM_CMPINT_LE) == 0xFFFF;
    const int64_t left = npos - base;  // the table's entries from base on
    w.part[0] = _mm512_maskz_loadu_ps(first_lanes(left), z + base);
    w.part[1] = left > 16 ? _mm512_maskz_loadu_ps(first_lanes(left - 16), z + base + 16) : _mm512_setzero_ps();
    return w;
  }
  // step[lo] = z[lo + 1] - z[lo], 0 at the last entry.
  __m512 step(const Window& w, const CopeInterp16& ip, __m512 zlo) const {
    const __mmask16 below_last = _mm512_cmp_epi32_mask(ip.lo, _mm512_set1_epi32(int32_t(npos - 1)), _MM_CMPINT_LT);
    const __m512 znext = _mm512_permutex2var_ps(w.part[0], _mm512_add_epi32(w.rel, _mm512_set1_epi32(1)), w.part[1]);
    return _mm512_maskz_sub_ps(below_last, znext, zlo);
  }
  __m512 at(const CopeInterp16& ip) const {
    const Window w = window(ip);
    if (!w.inside) return CopeTableGathered{z, npos}.at(ip);
    const __m512 zlo = _mm512_permutex2var_ps(w.part[0], w.rel, w.part[1]);
    return _mm512_fmadd_ps(ip.w, step(w, ip, zlo), zlo);
  }
  __m512 step_at(const CopeInterp16& ip) const {
    const Window w = window(ip);
    if (!w.inside) return CopeTableGathered{z, npos}.step_at(ip);
    return step(w, ip, _mm512_permutex2var_ps(w.part[0], w.rel, w.part[1]));
  }
};
#elif defined(__AVX2__)
// CopeInterp for eight f32 positions c >= 0 at a time (a true comparison is -1 in a lane, so
// hi = lo - (c > lo)).
struct CopeInterp8 {
  __m256i lo, hi;
  __m256 w;
  explicit CopeInterp8(__m256 c)
      : lo(_mm256_cvttps_epi32(c)),
        hi(_mm256_sub_epi32(lo, _mm256_castps_si256(_mm256_cmp_ps(c, _mm256_cvtepi32_ps(lo), _CMP_GT_OQ)))),
        w(_mm256_sub_ps(c, _mm256_cvtepi32_ps(lo))) {}
};

// A table z read at eight positions by two gathers: z[lo] + w (z[hi] - z[lo]). (AVX2 has
// no two-register permute, so a table in registers would take eight permutes per read.)
inline __m256 cope_table_at(const float* z, const CopeInterp8& ip) {
  const __m256 zlo = _mm256_i32gather_ps(z, ip.lo, 4);
  return _mm256_fmadd_ps(ip.w, _mm256_sub_ps(_mm256_i32gather_ps(z, ip.hi, 4), zlo), zlo);
}
#endif

}  // namespace copper::cpu
