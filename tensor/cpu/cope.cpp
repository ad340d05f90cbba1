// cope.cpp — CoPE's counted positions (Backend::cope_positions and its backward): one pass per
// query row each way; the formulas are in tensor/ops/cope.cpp. Only keys j <= i do work; future
// keys get gate 0, position 0 and term z[0], exactly what the composed reference gives them.
// The suffix sum is a serial chain per row, so rows are the unit of parallelism, and the
// interpolation rides along in the chain's loop so that its loads overlap the additions.
// The gates keep libm's exp, one call per element: docs/PERF.md ("CoPE's fused rows") says
// why the faster approximation of tensor/cpu/fast_math.h is not used here.
#include <algorithm>
#include <cmath>

#include "tensor/cpu/cope_interp.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace copper {

using namespace cpu;

namespace {

template <class F>
void forward_row(const F* l, const F* z, F* term, F* gates, F* pos, int64_t i, int64_t Tk, int64_t npos) {
  const F cap = F(npos - 1);
#pragma omp simd
  for (int64_t j = 0; j <= i; ++j) gates[j] = F(1) / (F(1) + std::exp(-l[j]));
  F acc = 0;
  for (int64_t j = i; j >= 0; --j) {
    acc += gates[j];
    const F c = capped_count(acc, cap);
    pos[j] = c;
    const CopeInterp<F> ip(c);
    term[j] = ip.at(z);
  }
  for (int64_t j = i + 1; j < Tk; ++j) {
    gates[j] = 0;
    pos[j] = 0;
    term[j] = z[0];
  }
}

template <class F>
void backward_row(const F* dterm, const F* z, const F* gates, const F* pos, F* dl, F* dz, int64_t i, int64_t Tk,
                  int64_t npos) {
  const F cap = F(npos - 1);
  for (int64_t p = 0; p < npos; ++p) dz[p] = 0;
  F prefix = 0;  // sum_{j <= t} dp_j as t runs forward
  for (int64_t t = 0; t <= i; ++t) {
    const F c = pos[t];
    const CopeInterp<F> ip(c);
    dz[ip.lo] += (F(1) - ip.w) * dterm[t];
    dz[ip.hi] += ip.w * dterm[t];
    const F dp = c < cap ? dterm[t] * (z[ip.hi] - z[ip.lo]) : F(0);
    prefix += dp;
    dl[t] = prefix * gates[t] * (F(1) - gates[t]);
  }
  for (int64_t t = i + 1; t < Tk; ++t) {  // future keys read z[0] with weight 1 and have no gate
    dz[0] += dterm[t];
    dl[t] = 0;
  }
}

}  // namespace

void CpuBackend::cope_positions(const Tensor& gate_logits, const Tensor& z, const Tensor& term, const Tensor& gates,
                                const Tensor& pos, int64_t rows, int64_t Tq, int64_t Tk, int64_t t0, int64_t npos) {
  COPPER_DISPATCH_FLOAT(gate_logits.dtype(), "cope_positions", [&] {
    const T* lp = static_cast<const T*>(gate_logits.raw_data());
    const T* zp = static_cast<const T*>(z.raw_data());
    T* tp = static_cast<T*>(term.raw_data());
    T* gp = static_cast<T*>(gates.raw_data());
    T* pp = static_cast<T*>(pos.raw_data());
    parallel_for(rows, 2 * Tk, [&](int64_t r) {
      forward_row(lp + r * Tk, zp + r * npos, tp + r * Tk, gp + r * Tk, pp + r * Tk, t0 + r % Tq, Tk, npos);
    });
  });
}

void CpuBackend::cope_positions_backward(const Tensor& dterm, const Tensor& z, const Tensor& gates, const Tensor& pos,
                                         const Tensor& dgate_logits, const Tensor& dz, int64_t rows, int64_t Tq,
                                         int64_t Tk, int64_t t0, int64_t npos) {
  COPPER_DISPATCH_FLOAT(dterm.dtype(), "cope_positions_backward", [&] {
    const T* dtp = static_cast<const T*>(dterm.raw_data());
    const T* zp = static_cast<const T*>(z.raw_data());
    const T* gp = static_cast<const T*>(gates.raw_data());
    const T* pp = static_cast<const T*>(pos.raw_data());
    T* dlp = static_cast<T*>(dgate_logits.raw_data());
    T* dzp = static_cast<T*>(dz.raw_data());
    parallel_for(rows, 2 * Tk, [&](int64_t r) {
      backward_row(dtp + r * Tk, zp + r * npos, gp + r * Tk, pp + r * Tk, dlp + r * Tk, dzp + r * npos, t0 + r % Tq,
                   Tk, npos);
    });
  });
}

}  // namespace copper
