// attention.cu — fused causal attention (Backend::attention and its backward), plain or with
// CoPE's position term in the logits; the formulas are tensor/backend.h's AttentionCope and
// tensor/cpu/attention.cpp's, which the tests compare these kernels with.
//
// One warp per query row, its keys taken 32 at a time from the row's last visible key down
// (lane 0 holds the highest key of the chunk), as cope.cu does: CoPE's positions are suffix
// sums of the gates, so the warp scans each chunk with shuffles and carries the total of the
// keys above it. The forward makes two passes over the keys: the first finds the row's
// log-sum-exp by an online softmax, the second recomputes the logits (the same operations in
// the same order, so the same values) and adds p_j v_j into the output. Nothing of size
// (Tq, Tk) is written.
//
// The backward's row kernel recomputes the logits and probabilities from the saved log-sum-exp
// and writes two (bh, Tq, Tk) workspaces, dS (the gradient of q·kᵀ, times the scale) and
// P∘M (the kept probabilities), which the caller turns into dq, dk and dv with three batched
// cuBLAS products; they live only during the backward call. With CoPE the gradient through
// the gates needs dg_t = sum_{j <= t} dp_j, a prefix sum from the first key up, while the
// positions come from the top down: the row kernel stores dp and the gates in two more
// workspaces and a second kernel scans them upwards. dz gets atomic adds, as in cope.cu, so
// its last bits depend on their order.
#include "cuda/common.cuh"
#include "tensor/philox.h"

namespace copper::cuda {

namespace {

constexpr int kMaxChannelsPerLane = kMaxAttentionHead / kWarp;

template <class F>
__device__ __forceinline__ F dot(const F* a, const F* b, int64_t n) {
  F s = 0;
  for (int64_t c = 0; c < n; ++c) s += a[c] * b[c];
  return s;
}

// What every kernel of a row needs, in the row's dtype.
template <class F>
struct Args {
  const F *q, *k, *v, *z;  // z null: plain attention
  int64_t bh, Tq, Tk, Dh, npos;
  F scale;
  bool official;
  float p;       // dropout probability
  F keep_scale;  // 1 / (1 - p)
  uint64_t key;
};

// What chunk_key finds for one key: q·k, the logit and, with CoPE, the gate, the clamped
// position and its interpolation.
template <class F>
struct ChunkKey {
  F s = 0, logit = 0, g = 0, c = 0;
  CopeInterp<F> ip{F(0)};
};

// Lane `lane`'s key j = top - lane of one chunk of a row (j < 0: past key 0; its logit is
// -inf). `carry` is the sum of the gates of the keys above the chunk (CoPE), advanced past
// the chunk on return. Every lane of the warp calls it (the scan is a shuffle).
template <class F>
__device__ ChunkKey<F> chunk_key(const Args<F>& a, const F* qr, const F* kb, const F* zr, int64_t j, int lane,
                                 F& carry) {
  ChunkKey<F> r;
  r.s = j >= 0 ? dot(qr, kb + j * a.Dh, a.Dh) : F(0);
  if (!zr) {
    r.logit = j >= 0 ? r.s * a.scale : F(-INFINITY);
    return r;
  }
  r.g = j >= 0 ? F(1) / (F(1) + exp(-r.s * a.scale)) : F(0);
  const F scan = warp_inclusive_scan(r.g, lane);
  r.c = min(carry + scan, F(a.npos - 1));
  carry += __shfl_sync(0xffffffffu, scan, kWarp - 1);
  r.ip = CopeInterp<F>(r.c);
  const F term = r.ip.at(zr);
  r.logit = j >= 0 ? (a.official ? (r.s + term) * a.scale : r.s * a.scale + term) : F(-INFINITY);
  return r;
}

// Query row `row` of the (bh·Tq) rows: its query i, and where its q, keys, values and table are.
template <class F>
struct RowOf {
  int64_t i;
  const F *q, *k, *v, *z;
  __device__ RowOf(const Args<F>& a, int64_t row) {
    const int64_t b = row / a.Tq;
    i = row % a.Tq + (a.Tk - a.Tq);
    q = a.q + row * a.Dh;
    k = a.k + b * a.Tk * a.Dh;
    v = a.v + b * a.Tk * a.Dh;
    z = a.z ? a.z + row * a.npos : nullptr;
  }
};

// The dropout keep-scale of element (row, j) of the (bh, Tq, Tk) probabilities.
template <class F>
__device__ __forceinline__ F keep_of(const Args<F>& a, int64_t row, int64_t j) {
  if (a.p <= 0.0f) return F(1);
  return philox::uniform_at(a.key, uint64_t(row * a.Tk + j)) >= a.p ? a.keep_scale : F(0);
}

template <class F>
__global__ void attention_forward_kernel(Args<F> a, F* out, F* lse) {
  const int lane = threadIdx.x % kWarp;
  const int64_t rows = a.bh * a.Tq;
  COPPER_CUDA_WARP_ROWS(row, rows) {
    const RowOf<F> R(a, row);
    const int64_t i = R.i;
    const F *qr = R.q, *kb = R.k, *vb = R.v, *zr = R.z;
    // Pass 1: each lane's running max and sum of exp over its keys, then the warp's.
    F m = F(-INFINITY), l = 0, carry = 0;
    for (int64_t top = i; top >= 0; top -= kWarp) {
      const ChunkKey<F> ck = chunk_key(a, qr, kb, zr, top - lane, lane, carry);
      if (top - lane >= 0) {
        const F m2 = max(m, ck.logit);
        l = l * exp(m - m2) + exp(ck.logit - m2);
        m = m2;
      }
    }
    const F mx = warp_max(m);
    const F total = warp_total(m == F(-INFINITY) ? F(0) : l * exp(m - mx));
    const F L = mx + log(total);
    if (lane == 0) lse[row] = L;
    // Pass 2: the probabilities again, and their sum with the values.
    F acc[kMaxChannelsPerLane] = {};
    carry = 0;
    for (int64_t top = i; top >= 0; top -= kWarp) {
      const int64_t j = top - lane;
      const ChunkKey<F> ck = chunk_key(a, qr, kb, zr, j, lane, carry);
      const F pj = j >= 0 ? exp(ck.logit - L) * keep_of(a, row, j) : F(0);
      for (int kk = 0; kk < kWarp && top - kk >= 0; ++kk) {
        const F pk = __shfl_sync(0xffffffffu, pj, kk);
        const F* vr = vb + (top - kk) * a.Dh;
        for (int t = 0; t < kMaxChannelsPerLane; ++t) {
          const int64_t c = lane + int64_t(t) * kWarp;
          if (c < a.Dh) acc[t] += pk * vr[c];
        }
      }
    }
    for (int t = 0; t < kMaxChannelsPerLane; ++t) {
      const int64_t c = lane + int64_t(t) * kWarp;
      if (c < a.Dh) out[row * a.Dh + c] = acc[t];
    }
  }
}

// The backward's row kernel. ds, pm [rows, Tk]: the gradient of q·kᵀ times the scale (for
// CoPE, before the gates' share, which attention_gates_backward_kernel adds) and P∘M, zero for
// keys the row does not see. CoPE also: dz [rows, npos] (zeroed by the caller), dp and gates
// [rows, Tk].
template <class F>
__global__ void attention_backward_rows_kernel(Args<F> a, const F* o, const F* lse, const F* dout, F* ds, F* pm,
                                               F* dz, F* dp, F* gates) {
  const int lane = threadIdx.x % kWarp;
  const int64_t rows = a.bh * a.Tq;
  COPPER_CUDA_WARP_ROWS(row, rows) {
    const RowOf<F> R(a, row);
    const int64_t i = R.i;
    const F *qr = R.q, *kb = R.k, *vb = R.v, *zr = R.z;
    const F* dor = dout + row * a.Dh;
    F* dzr = a.z ? dz + row * a.npos : nullptr;
    F D = 0;  // dO · O = sum_j P_j M_j dP_j
    for (int64_t c = lane; c < a.Dh; c += kWarp) D += dor[c] * o[row * a.Dh + c];
    D = warp_total(D);
    const F L = lse[row];
    F carry = 0;
    for (int64_t top = i; top >= 0; top -= kWarp) {
      const int64_t j = top - lane;
      const ChunkKey<F> ck = chunk_key(a, qr, kb, zr, j, lane, carry);
      if (j < 0) continue;  // (after the chunk's shuffles, which every lane joins)
      const F pj = exp(ck.logit - L), mj = keep_of(a, row, j);
      const F dA = pj * (dot(dor, vb + j * a.Dh, a.Dh) * mj - D);  // the gradient of logit j
      pm[row * a.Tk + j] = pj * mj;
      if (!zr) {
        ds[row * a.Tk + j] = dA * a.scale;
        continue;
      }
      const F dterm = a.official ? dA * a.scale : dA;
      atomicAdd(dzr + ck.ip.lo, (F(1) - ck.ip.w) * dterm);
      atomicAdd(dzr + ck.ip.hi, ck.ip.w * dterm);
      ds[row * a.Tk + j] = dA;
      dp[row * a.Tk + j] = ck.c < F(a.npos - 1) ? dterm * (zr[ck.ip.hi] - zr[ck.ip.lo]) : F(0);
      gates[row * a.Tk + j] = ck.g;
    }
    for (int64_t j = i + 1 + lane; j < a.Tk; j += kWarp) {  // keys the row does not see
      ds[row * a.Tk + j] = 0;
      pm[row * a.Tk + j] = 0;
    }
  }
}

// CoPE's share of dS, from the first key up: dg_t = sum_{j <= t} dp_j, and
// ds_t = (dA_t + dg_t g_t (1 - g_t)) scale.
template <class F>
__global__ void attention_gates_backward_kernel(int64_t rows, int64_t Tq, int64_t Tk, F scale, const F* dp,
                                                const F* gates, F* ds) {
  const int lane = threadIdx.x % kWarp;
  const int64_t shift = Tk - Tq;
  COPPER_CUDA_WARP_ROWS(row, rows) {
    const int64_t i = row % Tq + shift;
    F carry = 0;
    for (int64_t base = 0; base <= i; base += kWarp) {
      const int64_t t = base + lane;
      const F d = t <= i ? dp[row * Tk + t] : F(0);
      const F dg = carry + warp_inclusive_scan(d, lane);
      if (t <= i) {
        const F g = gates[row * Tk + t];
        ds[row * Tk + t] = (ds[row * Tk + t] + dg * g * (F(1) - g)) * scale;
      }
      carry = __shfl_sync(0xffffffffu, dg, kWarp - 1);
    }
  }
}

template <class F>
Args<F> args_of(const AttentionDims& d, const void* q, const void* k, const void* v, const void* z) {
  return Args<F>{static_cast<const F*>(q), static_cast<const F*>(k), static_cast<const F*>(v),
                 static_cast<const F*>(z), d.bh, d.Tq, d.Tk, d.Dh, d.npos, F(d.scale), d.official, float(d.p),
                 F(1.0 / (1.0 - d.p)), d.key};
}

}  // namespace

void launch_attention(DType dtype, const AttentionDims& d, const void* q, const void* k, const void* v, const void* z,
                      void* out, void* lse, cudaStream_t stream) {
  const int64_t rows = d.bh * d.Tq;
  if (rows == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "attention", [&] {
    attention_forward_kernel<T><<<grid_for_warp_rows(rows), kBlock, 0, stream>>>(args_of<T>(d, q, k, v, z),
                                                                           static_cast<T*>(out), static_cast<T*>(lse));
    COPPER_CUDA_LAUNCH_CHECK("attention_forward_kernel");
  });
}

void launch_attention_backward_rows(DType dtype, const AttentionDims& d, const void* q, const void* k, const void* v,
                                    const void* z, const void* out, const void* lse, const void* dout, void* ds,
                                    void* pm, void* dz, void* dp, void* gates, cudaStream_t stream) {
  const int64_t rows = d.bh * d.Tq;
  if (rows == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "attention_backward", [&] {
    if (z) COPPER_CUDA_CHECK(cudaMemsetAsync(dz, 0, size_t(rows * d.npos) * sizeof(T), stream));
    attention_backward_rows_kernel<T><<<grid_for_warp_rows(rows), kBlock, 0, stream>>>(
        args_of<T>(d, q, k, v, z), static_cast<const T*>(out), static_cast<const T*>(lse),
        static_cast<const T*>(dout), static_cast<T*>(ds), static_cast<T*>(pm), static_cast<T*>(dz),
        static_cast<T*>(dp), static_cast<T*>(gates));
    COPPER_CUDA_LAUNCH_CHECK("attention_backward_rows_kernel");
    if (z) {
      attention_gates_backward_kernel<T><<<grid_for_warp_rows(rows), kBlock, 0, stream>>>(
          rows, d.Tq, d.Tk, T(d.scale), static_cast<const T*>(dp), static_cast<const T*>(gates), static_cast<T*>(ds));
      COPPER_CUDA_LAUNCH_CHECK("attention_gates_backward_kernel");
    }
  });
}

}  // namespace copper::cuda
