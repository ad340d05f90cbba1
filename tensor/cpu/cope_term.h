// cope_term.h — CoPE's term in the fused attention (attention.cpp): what CoPE adds to a block's
// logits q·kᵀ, and the gradient it sends back through them. attention.cpp describes the
// interface a block term has (NoTerm there is the other one).
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "tensor/cpu/attention_blocks.h"
#include "tensor/cpu/cope_interp.h"
#include "tensor/cpu/lanes.h"

namespace copper::cpu {

// CoPE (nn/pe/cope.h) over a block, query i = r0 + r + shift:
//   g_j = sigmoid(s_j scale), c_j = min(sum_{t=j..i} g_t, npos - 1), term_j = z_i at c_j
//   logit_j = s_j scale + term_j ("appendix") or (s_j + term_j) scale ("official")
// Its backward, with d_j = dL/dlogit_j and dterm_j = d_j (appendix) or d_j scale (official):
//   dz_i[floor c_j] += (1 - w_j) dterm_j,  dz_i[ceil c_j] += w_j dterm_j
//   dg_t = sum_{j<=t} dterm_j (z_i[ceil c_j] - z_i[floor c_j]) [c_j < npos - 1]
//   dL/ds_t = scale (d_t + dg_t g_t (1 - g_t))
// so grad() leaves d_t + dg_t g_t (1 - g_t) in the row and the caller's products apply the
// scale. These are cope_positions' formulas (tensor/ops/cope.cpp) with the gate logits
// s_j scale.
//
// Each row is a few passes: the ones without a chain are vector loops (the gates, the table
// reads, each key's shares of the gradient: `omp simd` loops, and in f32 intrinsics on AVX-512
// and AVX2), and the serial ones do as little as possible (suffix_positions, the prefix sums
// in grad). On AVX-512 the f32 walk is one vector loop: a vector's gates, counts (suffix
// sums across its lanes) and terms at once, row_walk16.
//
// The dz scatter is the backward's trap: adding into dz[floor c_j] key after key makes every
// add wait for the previous store to the same slot. But c_j only falls as j grows (a suffix
// sum of gates >= 0, and rounding keeps that order), so the keys reading slot p as floor are
// one run of consecutive j: dz[p] is a difference of two prefix sums of (1 - w_j) dterm_j,
// taken at the ends of the runs, and the serial pass only stores each slot's latest key (no
// loads). A key's ceiling share goes to slot floor + 1 (where w_j = 0 it is zero, whatever
// the slot), so the same run ends serve the ceilings. The prefix sums run in double, so their
// differences lose nothing.
//
// The cap does the most for speed. Once the count from query i down reaches npos - 1, every
// earlier key sits at the cap: its term is the constant z_i[npos - 1], and no gradient flows
// through its gate (dc_j/dg = 0 there, and dg_t only sums keys j <= t, all capped when t is).
// So a row walks down from its query a chunk of keys at a time (sixteen in row_walk16)
// and stops at the first chunk whose total reaches the cap: the gates, positions and gate
// gradients of the keys below (`start`, most of a long row) are never computed, and their
// logits are left to the softmax, which finishes them with one multiply-add as it reads them.
// With gates near 1/2 that is after about 2 npos keys, whatever the row's length.

// c_j = min(sum_{t=j..hi-1} g_t + acc, cap) (capped_count) for the keys j in [lo, hi),
// walking down from hi - 1 with the running total `acc` of the keys above; returns the total
// at lo. Four keys at a time: their partial sums do not wait for the running total, which
// then takes one addition per four keys. Every c_j is still rounded from one addition to the
// total before it, so c never falls as j falls (what CopeTerm::grad relies on). Called on
// chunks whose length is a multiple of four, it groups the keys exactly as one call over the
// whole row.
template <class T>
T suffix_positions(const T* g, T* c, int64_t lo, int64_t hi, T acc, T cap) {
  int64_t j = hi - 1;
  for (; j >= lo + 3; j -= 4) {
    const T p1 = g[j], p2 = p1 + g[j - 1], p3 = p2 + g[j - 2], p4 = p3 + g[j - 3];
    c[j] = capped_count(acc + p1, cap);
    c[j - 1] = capped_count(acc + p2, cap);
    c[j - 2] = capped_count(acc + p3, cap);
    acc += p4;
    c[j - 3] = capped_count(acc, cap);
  }
  for (; j >= lo; --j) {
    acc += g[j];
    c[j] = capped_count(acc, cap);
  }
  return acc;
}

#if defined(__AVX2__) && !defined(__AVX512F__)
// suffix_positions for f32 on AVX2, eight keys at a time from the top: each vector's counts
// are the suffix sums across its lanes plus the total above it, raised to a running maximum
// where the tree's rounding let one fall below the next key's (as in
// CopeTerm::row_walk16), so that c never falls as j falls; the total carried down is
// the lowest lane's. Returns the total at lo.
inline float suffix_positions8(const float* g, float* c, int64_t lo, int64_t hi, float acc, float cap) {
  const __m256 top = _mm256_set1_ps(cap);
  const __m256i next = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7);  // each lane's key + 1 (the last: itself)
  __m256 above = _mm256_set1_ps(acc);
  for (int64_t j = hi; j > lo; j -= 8) {
    const int64_t base = std::max(lo, j - 8);
    const __m256i m = first_lanes8(j - base);
    __m256 sums = suffix_sums8(_mm256_maskload_ps(g + base, m));
    if (_mm256_movemask_ps(_mm256_cmp_ps(sums, _mm256_permutevar8x32_ps(sums, next), _CMP_LT_OQ)))
      sums = suffix_max8(sums);  // rare
    const __m256 count = _mm256_add_ps(sums, above);
    _mm256_maskstore_ps(c + base, m, _mm256_min_ps(count, top));  // capped_count: a NaN count gives the cap
    above = first_lane(count);
  }
  return _mm256_cvtss_f32(above);
}
#endif

// Keys per step of the walk down a row in CopeTerm::logits: a multiple of four (see above).
constexpr int64_t kCopeChunk = 32;

template <class T>
struct CopeTerm {
  // Per thread: the block's gates and clamped positions, row r at r·kv (or every row at 0
  // when the forward does not keep them), each row's first uncapped key, the backward's
  // per-key values (see grad) and run ends, and with a table the block's z and dz rows.
  struct Scratch {
    std::vector<T> g, c, dg, zblock, dzblock;
    std::vector<int64_t> start;
    std::vector<T> capped_term;  // per row: the capped keys' logit is x scale + this
    std::vector<int32_t> floors;  // below npos
    std::vector<int32_t> end, last;
    std::vector<double> lo_sum, hi_sum;  // from key -1, which stays 0
    std::vector<double> lo_at, hi_at;
    const T* z = nullptr;  // the block's z rows, row r at r·npos
    T* dz = nullptr;       // where grad() writes their gradient
    int64_t slots;         // the table slots the block's rows can reach (reachable_slots; all until begin_block)
    Scratch(int64_t elements, int64_t Tk, int64_t npos, bool table)
        : g(size_t(elements)), c(size_t(elements)), dg(size_t(Tk)),
          zblock(table ? size_t(kQueryBlock * npos) : 0), dzblock(table ? size_t(kQueryBlock * npos) : 0),
          start(size_t(kQueryBlock)), capped_term(size_t(kQueryBlock)), floors(size_t(Tk)), end(size_t(npos)),
          last(size_t(npos)), lo_sum(size_t(Tk + 1)), hi_sum(size_t(Tk + 1)), lo_at(size_t(npos + 1)),
          hi_at(size_t(npos + 1)), slots(npos) {}
  };
  T scale;
  int64_t Tq, npos;
  bool official;
  // Either z itself, [bh·Tq, npos] with row b·Tq + i for query i of batch·head b (and dZ, the
  // same shape, written by grad()), or the table E [npos, Dh]: each block then computes its
  // z rows as Q_block Eᵀ, and its backward adds dz E to dq and Q_blockᵀ dz to dE[b], [bh,
  // npos, Dh], one table gradient per batch·head (summed in order by the caller). With E, Z
  // may be given too: the forward writes the z rows there and the backward reads them back.
  T* Z = nullptr;  // written only by a forward with E
  T* dZ = nullptr;
  const T* E = nullptr;
  const T* Et = nullptr;  // E transposed, [Dh, npos]
  T* dE = nullptr;
  const Mats<const T>* Q = nullptr;
  const Mats<T>* dQ = nullptr;
  int64_t Dh = 0;

  Scratch scratch(int64_t elements, int64_t Tk) const { return Scratch(elements, Tk, npos, E != nullptr); }
  T softmax_scale() const { return T(1); }
  // The keys below each row's `start` (see logits()), finished by the softmax.
  CappedKeys<T> capped(const Scratch& sc) const { return {sc.start.data(), sc.capped_term.data(), scale}; }

  // The table slots a block's rows can reach, [0, this): a count from query i is at most i + 1
  // (each gate is at most 1), and a read at slot p also takes slot p + 1 (with weight 0 at a
  // whole count), so up to i + 2 for the block's last query i, and never past the table. With
  // a long table (npos up to the context) the block products of z and of its gradient stop
  // there: the first blocks of a row need a few slots, not npos.
  int64_t reachable_slots(int64_t r0, int64_t nq, int64_t shift) const {
    return std::min(npos, r0 + nq + shift + 2);
  }

  void begin_block(int64_t b, int64_t r0, int64_t nq, int64_t shift, Scratch& sc) const {
    T* rows = Z ? Z + (b * Tq + r0) * npos : nullptr;  // the block's rows of z, if given
    sc.slots = reachable_slots(r0, nq, shift);
    if (!E) {
      sc.z = rows;
      sc.dz = dZ ? dZ + (b * Tq + r0) * npos : nullptr;
      return;
    }
    sc.dz = sc.dzblock.data();
    if (rows && dQ) {  // the backward, with the forward's z kept
      sc.z = rows;
      return;
    }
    T* zb = rows ? rows : sc.zblock.data();
    const int64_t slots = sc.slots;
    product(false, nq, slots, Dh, 1.0, (*Q)(b, r0), Q->ld, Et, npos, false, zb, npos);  // z = q Eᵀ
    // Past them only a table held in registers is read (whole, with weight 0 there): zeros.
    const int64_t loaded = std::min(npos, kCopeTableInRegisters);
    if (slots < loaded)
      for (int64_t r = 0; r < nq; ++r) std::fill(zb + r * npos + slots, zb + r * npos + loaded, T(0));
    sc.z = zb;
  }

  // dz is 0 past the reachable slots (no count lands there), so the products stop at them.
  void end_block_backward(int64_t b, int64_t r0, int64_t nq, Scratch& sc) const {
    if (!E) return;
    const int64_t slots = sc.slots;
    product(false, nq, Dh, slots, 1.0, sc.dz, npos, E, Dh, true, (*dQ)(b, r0), dQ->ld);  // dq += dz E
    product(true, slots, Dh, nq, 1.0, sc.dz, npos, (*Q)(b, r0), Q->ld, true, dE + b * npos * Dh,
            Dh);  // dE[b] += dzᵀ q
  }

  void logits(T* s, int64_t nq, int64_t kv, int64_t /*b*/, int64_t r0, int64_t shift, Scratch& sc, bool keep) const {
    const T cap = T(npos - 1), sc_ = scale;
    for (int64_t r = 0; r < nq; ++r) {
      const int64_t n = r0 + r + shift + 1;
      T* row = s + r * kv;
      T* g = sc.g.data() + (keep ? r * kv : 0);
      T* c = sc.c.data() + (keep ? r * kv : 0);
      const T* z = sc.z + r * npos;
      // The capped keys' logits, x scale + zcap (official: (x + zcap) scale), are left to the
      // softmax (capped()): it finishes them as it reads them.
      // (Only a block that reaches the top slot can have capped keys.)
      const T top = sc.slots == npos ? z[npos - 1] : T(0);
      sc.capped_term[size_t(r)] = official ? top * sc_ : top;
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>) {
        sc.start[size_t(r)] = npos <= CopeTableInRegisters::kTableInRegisters
                                  ? row_walk16(CopeTableInRegisters(z, npos), row, g, c, n, keep)
                                  : row_walk16(CopeTableWindowed{z, npos}, row, g, c, n, keep);
        continue;
      }
#endif
      // Down from the query, a chunk at a time, until the count reaches the cap: keys below
      // `start` are all capped.
      int64_t start = n;
      T acc = 0;
      while (start > 0 && acc < cap) {
        const int64_t hi = start;
        start = std::max<int64_t>(0, hi - kCopeChunk);
#pragma omp simd
        for (int64_t j = start; j < hi; ++j) g[j] = T(1) / (T(1) + exp_of(-row[j] * sc_));
#if defined(__AVX2__) && !defined(__AVX512F__)
        if constexpr (std::is_same_v<T, float>) {
          acc = suffix_positions8(g, c, start, hi, acc, cap);
          continue;
        }
#endif
        acc = suffix_positions(g, c, start, hi, acc, cap);
      }
      sc.start[size_t(r)] = start;
#if defined(__AVX2__) && !defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>) {
        window_gathered(row, c, z, start, n);
        continue;
      }
#endif
      if (official) {
#pragma omp simd
        for (int64_t j = start; j < n; ++j) row[j] = (row[j] + CopeInterp<T>(c[j]).at(z)) * sc_;
      } else {
#pragma omp simd
        for (int64_t j = start; j < n; ++j) row[j] = row[j] * sc_ + CopeInterp<T>(c[j]).at(z);
      }
    }
  }

#if defined(__AVX512F__)
  // logits() for one f32 row on AVX-512: the walk down from the query sixteen keys at a time,
  // a vector's gates, counts and terms in one step, the table read from registers
  // (CopeTableInRegisters, up to 64 entries) or through a window (CopeTableWindowed). Returns the
  // first uncapped key, `start` (the keys below are capped()); with `keep` the gates and
  // counts of [start, n) are stored for grad(). A vector's counts are the suffix sums of its
  // gates plus the count above it (the lowest lane's count, carried down: one add per vector
  // on the walk's chain). The suffix sums are summed in a tree, whose rounding can leave one a
  // unit in the last place below the next key's; where one does, each is raised to the
  // largest after it (suffix_max16): counts never fall as j falls, as grad() needs.
  template <class Table>
  int64_t row_walk16(const Table& table, float* row, float* g, float* c, int64_t n, bool keep) const {
    const __mmask16 all = 0xFFFF;
    const __m512 s = _mm512_set1_ps(scale), cap = _mm512_set1_ps(float(npos - 1));
    __m512 above = _mm512_setzero_ps();  // the count of the keys above the vector, in every lane
    int64_t lo = n;
    while (lo > 0 && _mm512_cvtss_f32(above) < float(npos - 1)) {
      const int64_t hi = lo;
      lo = std::max<int64_t>(0, hi - 16);
      const __mmask16 m = first_lanes(hi - lo);
      const __m512 x = _mm512_maskz_loadu_ps(m, row + lo);
      const __m512 gate = _mm512_maskz_mov_ps(m, sigmoid16(_mm512_mul_ps(x, s)));
      __m512 sums = suffix_sums16(gate);
      if (_mm512_cmp_ps_mask(sums, lanes_down<1>(sums), _CMP_LT_OQ)) sums = suffix_max16(sums);  // rare
      const __m512 count = _mm512_add_ps(sums, above);
      const __m512 cv = _mm512_maskz_min_ps(all, count, cap);  // capped_count: a NaN count gives the cap
      const __m512 term = table.at(CopeInterp16(cv));
      const __m512 y = official ? _mm512_mul_ps(_mm512_add_ps(x, term), s) : _mm512_fmadd_ps(x, s, term);
      _mm512_mask_storeu_ps(row + lo, m, y);
      if (keep) {
        _mm512_mask_storeu_ps(g + lo, m, gate);
        _mm512_mask_storeu_ps(c + lo, m, cv);
      }
      above = first_lane(count);
    }
    return lo;
  }
#elif defined(__AVX2__)
  // logits()' last loop for f32 on AVX2, the window's terms eight keys at a time, the table
  // read by gathers (cope_interp.h).
  void window_gathered(float* row, const float* c, const float* z, int64_t start, int64_t n) const {
    const __m256 s = _mm256_set1_ps(scale);
    for (int64_t j = start; j < n; j += 8) {
      const __m256i m = first_lanes8(n - j);
      const __m256 term = cope_table_at(z, CopeInterp8(_mm256_maskload_ps(c + j, m)));
      const __m256 x = _mm256_maskload_ps(row + j, m);
      const __m256 y = official ? _mm256_mul_ps(_mm256_add_ps(x, term), s) : _mm256_fmadd_ps(x, s, term);
      _mm256_maskstore_ps(row + j, m, y);
    }
  }
#endif

  // Steps (1)-(3) of grad() for the keys [start, n) of a row with gradient d, gates g and
  // positions c: each key's floor, the prefix sums over [start, t] of its floor and ceiling
  // shares of dterm and of its own term of dg, and the gates' gradient added to d. Returns the
  // sum of their dterm.
  double key_gradients(T* d, const T* g, const T* c, const T* z, int64_t start, int64_t n, int32_t* floors,
                       double* lo_sum, double* hi_sum, T* dg) const {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      return npos <= CopeTableInRegisters::kTableInRegisters
                 ? key_gradients16(CopeTableInRegisters(z, npos), d, g, c, start, n, floors, lo_sum, hi_sum)
                 : key_gradients16(CopeTableWindowed{z, npos}, d, g, c, start, n, floors, lo_sum, hi_sum);
    }
#elif defined(__AVX2__)
    if constexpr (std::is_same_v<T, float>) return key_gradients_gathered(d, g, c, z, start, n, floors, lo_sum, hi_sum);
#endif
    const T cap = T(npos - 1), dterm_scale = official ? scale : T(1);
    double uncapped = 0;
#pragma omp simd reduction(+ : uncapped)
    for (int64_t t = start; t < n; ++t) {  // (1)
      const T dterm = d[t] * dterm_scale;
      const CopeInterp<T> ip(c[t]);
      floors[t] = int32_t(ip.lo);
      lo_sum[t] = double((T(1) - ip.w) * dterm);
      hi_sum[t] = double(ip.w * dterm);
      uncapped += double(dterm);
      dg[t] = c[t] < cap ? dterm * (z[ip.hi] - z[ip.lo]) : T(0);
    }
    double lo_acc = 0, hi_acc = 0;
    T dg_acc = 0;
    for (int64_t t = start; t < n; ++t) {  // (2)
      lo_acc += lo_sum[t];
      lo_sum[t] = lo_acc;
      hi_acc += hi_sum[t];
      hi_sum[t] = hi_acc;
      dg_acc += dg[t];
      dg[t] = dg_acc;
    }
#pragma omp simd
    for (int64_t t = start; t < n; ++t) d[t] += dg[t] * g[t] * (T(1) - g[t]);  // (3)
    return uncapped;
  }

#if defined(__AVX512F__)
  // key_gradients for f32 in one pass, sixteen keys at a time: the table in registers or
  // through a window (cope_interp.h), the prefix sums taken inside each vector (scan16, scan8) and
  // carried from one vector to the next, the double shares eight at a time.
  template <class Table>
  double key_gradients16(const Table& table, float* d, const float* g, const float* c, int64_t start, int64_t n,
                         int32_t* floors, double* lo_sum, double* hi_sum) const {
    const __m512 dterm_scale = _mm512_set1_ps(official ? scale : 1.0f);
    const __m512 one = _mm512_set1_ps(1.0f);
    // Sixteen floats as two vectors of eight doubles, through memory: GCC 12 warns on the
    // register forms (their undefined source), and on the plain conversions, hence maskz.
    alignas(64) float spill[16];
    auto widen = [&](__m512 x, __m512d& low, __m512d& high) {
      _mm512_store_ps(spill, x);
      low = _mm512_maskz_cvtps_pd(__mmask8(0xFF), _mm256_load_ps(spill));
      high = _mm512_maskz_cvtps_pd(__mmask8(0xFF), _mm256_load_ps(spill + 8));
    };
    // The running sums of the keys before the vector, in every lane.
    __m512 dg_acc = _mm512_setzero_ps();
    __m512d lo_acc = _mm512_setzero_pd(), hi_acc = _mm512_setzero_pd(), total = _mm512_setzero_pd();
    // x's prefix sums, added to the running sum acc, stored to sum[t..t+16) under the masks;
    // acc becomes the last of them.
    auto carry_into = [](__m512d low, __m512d high, __m512d& acc, double* sum, __mmask8 m0, __mmask8 m1) {
      low = _mm512_add_pd(scan8(low), acc);
      high = _mm512_add_pd(scan8(high), last_lane(low));
      _mm512_mask_storeu_pd(sum, m0, low);
      _mm512_mask_storeu_pd(sum + 8, m1, high);
      acc = last_lane(high);
    };
    for (int64_t t = start; t < n; t += 16) {
      const __mmask16 m = first_lanes(n - t);
      const __mmask8 m0 = __mmask8(m), m1 = __mmask8(m >> 8);
      const __m512 cv = _mm512_maskz_loadu_ps(m, c + t), dv = _mm512_maskz_loadu_ps(m, d + t);
      const __m512 dterm = _mm512_mul_ps(dv, dterm_scale);
      const CopeInterp16 ip(cv);
      const __m512 dgt = _mm512_mul_ps(dterm, table.step_at(ip));  // 0 at the cap, where the step is
      const __m512 dgs = _mm512_add_ps(scan16(dgt), dg_acc);
      dg_acc = last_lane(dgs);
      const __m512 gv = _mm512_maskz_loadu_ps(m, g + t);
      _mm512_mask_storeu_ps(d + t, m, _mm512_fmadd_ps(_mm512_mul_ps(dgs, gv), _mm512_sub_ps(one, gv), dv));
      _mm512_mask_storeu_epi32(floors + t, m, ip.lo);
      __m512d low, high;
      widen(_mm512_mul_ps(_mm512_sub_ps(one, ip.w), dterm), low, high);
      carry_into(low, high, lo_acc, lo_sum + t, m0, m1);
      widen(_mm512_mul_ps(ip.w, dterm), low, high);
      carry_into(low, high, hi_acc, hi_sum + t, m0, m1);
      widen(dterm, low, high);
      total = _mm512_add_pd(total, _mm512_add_pd(low, high));
    }
    alignas(64) double lanes[8];
    _mm512_store_pd(lanes, total);
    double sum = 0;
    for (double x : lanes) sum += x;
    return sum;
  }
#elif defined(__AVX2__)
  // key_gradients for f32 on AVX2 in one pass, eight keys at a time: the table read by
  // gathers (cope_interp.h), the prefix sums as in key_gradients16, the double
  // shares four at a time.
  double key_gradients_gathered(float* d, const float* g, const float* c, const float* z, int64_t start, int64_t n,
                                int32_t* floors, double* lo_sum, double* hi_sum) const {
    const __m256 dterm_scale = _mm256_set1_ps(official ? scale : 1.0f), cap = _mm256_set1_ps(float(npos - 1));
    const __m256 one = _mm256_set1_ps(1.0f);
    // The running sums of the keys before the vector, in every lane.
    __m256 dg_acc = _mm256_setzero_ps();
    __m256d lo_acc = _mm256_setzero_pd(), hi_acc = _mm256_setzero_pd(), total = _mm256_setzero_pd();
    // x's prefix sums, in double, added to the running sum acc, stored to sum[t..t+8) under the
    // masks of its two halves; acc becomes the last of them.
    auto carry_into = [](__m256 x, __m256d& acc, double* sum, __m256i m0, __m256i m1) {
      const __m256d low = _mm256_add_pd(scan4(_mm256_cvtps_pd(_mm256_castps256_ps128(x))), acc);
      const __m256d high = _mm256_add_pd(scan4(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1))), last_lane(low));
      _mm256_maskstore_pd(sum, m0, low);
      _mm256_maskstore_pd(sum + 4, m1, high);
      acc = last_lane(high);
    };
    for (int64_t t = start; t < n; t += 8) {
      const __m256i m = first_lanes8(n - t);
      const __m256i m0 = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(m));
      const __m256i m1 = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(m, 1));
      const __m256 cv = _mm256_maskload_ps(c + t, m), dv = _mm256_maskload_ps(d + t, m);
      const __m256 dterm = _mm256_mul_ps(dv, dterm_scale);
      const CopeInterp8 ip(cv);
      const __m256 zlo = _mm256_i32gather_ps(z, ip.lo, 4), zhi = _mm256_i32gather_ps(z, ip.hi, 4);
      const __m256 dgt =
          _mm256_and_ps(_mm256_cmp_ps(cv, cap, _CMP_LT_OQ), _mm256_mul_ps(dterm, _mm256_sub_ps(zhi, zlo)));
      const __m256 dgs = _mm256_add_ps(scan8(dgt), dg_acc);
      dg_acc = last_lane(dgs);
      const __m256 gv = _mm256_maskload_ps(g + t, m);
      _mm256_maskstore_ps(d + t, m, _mm256_fmadd_ps(_mm256_mul_ps(dgs, gv), _mm256_sub_ps(one, gv), dv));
      _mm256_maskstore_epi32(reinterpret_cast<int*>(floors + t), m, ip.lo);
      carry_into(_mm256_mul_ps(_mm256_sub_ps(one, ip.w), dterm), lo_acc, lo_sum + t, m0, m1);
      carry_into(_mm256_mul_ps(ip.w, dterm), hi_acc, hi_sum + t, m0, m1);
      total = _mm256_add_pd(total, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(dterm)),
                                                 _mm256_cvtps_pd(_mm256_extractf128_ps(dterm, 1))));
    }
    alignas(32) double lanes[4];
    _mm256_store_pd(lanes, total);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  }
#endif

  // Per row: (1) a vector pass gives each uncapped key t its floor, its shares of dterm for
  // the floor and ceiling slots and its own term of dg; (2) a serial pass turns those into
  // prefix sums from the first uncapped key; (3) a vector pass adds the gates' gradient to
  // the row (in f32 the three are one vector pass: key_gradients16 on AVX-512,
  // key_gradients_gathered on AVX2); then each floor's last key is found, and (4) dz comes
  // from the prefix sums at the run ends. The capped keys below `start` all read slot
  // npos - 1 with w = 0 and pass nothing to the gates: their one sum stands for them, as key
  // start - 1.
  void grad(T* ds, int64_t nq, int64_t kv, int64_t /*b*/, int64_t r0, int64_t shift, Scratch& sc) const {
    const int64_t top = npos - 1;
    // Indexed by key, from -1 (where both are 0: the sums before any key).
    double* lo_sum = sc.lo_sum.data() + 1;  // prefix sums of (1 - w_t) dterm_t, the floor shares
    double* hi_sum = sc.hi_sum.data() + 1;  // and of w_t dterm_t, the ceiling shares
    T* dg = sc.dg.data();                   // dterm_t (z[ceil] - z[floor]), then its prefix sums dg_t
    int32_t* floors = sc.floors.data();
    int32_t* end = sc.end.data();    // end[p]: the last key whose floor is p, or -1
    int32_t* last = sc.last.data();  // last[p]: the last key whose floor is >= p, or -1
    double* lo_at = sc.lo_at.data();  // lo_sum at last[p], p = 0..top, then the top's offset
    double* hi_at = sc.hi_at.data();  // hi_sum at last[p - 1], p = 0..npos (last[-1] = n - 1)
    for (int64_t r = 0; r < nq; ++r) {
      const int64_t n = r0 + r + shift + 1, start = sc.start[size_t(r)];
      T* d = ds + r * kv;
      const T* g = sc.g.data() + r * kv;
      const T* c = sc.c.data() + r * kv;
      const T* z = sc.z + r * npos;
      const double uncapped = key_gradients(d, g, c, z, start, n, floors, lo_sum, hi_sum, dg);  // sum of their dterm
      // The slots below sc.slots are all a row's floors can be; a row with capped keys (start
      // > 0) reached the top slot, so its block has them all.
      const int64_t slots = sc.slots;
      std::fill(end, end + slots, -1);
      // A softmax's logit gradients sum to zero over the row (sum_j P_j (dP_j - D) = D - D),
      // so the capped keys' sum is minus the others': the floor shares' sum before `start`,
      // where the prefix sums start from 0, is -uncapped, and their long prefix is never read.
      double lo_capped = 0;
      if (start > 0) {
        lo_capped = -uncapped;
        lo_sum[start - 1] = 0;
        hi_sum[start - 1] = 0;
        end[top] = int32_t(start - 1);
      }
      for (int64_t t = start; t < n; ++t) end[floors[t]] = int32_t(t);  // a store, no load
      // The keys whose floor is p are those after the last key with a higher floor, up to
      // its own last one: with last(p) the last key whose floor is >= p (-1 for none, where
      // the sums are 0), the floor shares of slot p are lo_sum[last(p)] - lo_sum[last(p + 1)]
      // and the ceiling shares hi_sum[last(p - 1)] - hi_sum[last(p)] (last(-1) = n - 1). The
      // top slot's floor shares take the capped keys' sum too. Only last() is a chain (a
      // running maximum); the sums at it are gathers and dz one vector pass.
      int32_t running = -1;
      for (int64_t p = slots - 1; p >= 0; --p) last[p] = running = std::max(running, end[p]);
#pragma omp simd
      for (int64_t p = 0; p < slots; ++p) {
        lo_at[p] = lo_sum[last[p]];
        hi_at[p + 1] = hi_sum[last[p]];
      }
      lo_at[slots] = -lo_capped;  // above the top slot: less the capped keys' sum (0 below the top)
      hi_at[0] = hi_sum[n - 1];
      T* dz = sc.dz + r * npos;
#pragma omp simd
      for (int64_t p = 0; p < slots; ++p) dz[p] = T((lo_at[p] - lo_at[p + 1]) + (hi_at[p] - hi_at[p + 1]));
      if (!E) std::fill(dz + slots, dz + npos, T(0));  // the op's dz is whole; with E the products stop at slots
    }
  }
};

}  // namespace copper::cpu
