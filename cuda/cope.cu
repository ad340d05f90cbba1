// cope.cu — CoPE's counted positions (Backend::cope_positions and its backward; the formulas
// are in tensor/ops/cope.cpp). One warp per query row. The row's suffix sum of gates (forward)
// and prefix sum of dp (backward) are scans: the warp takes 32 keys at a time, scans them with
// shuffles, and carries the chunk's total into the next chunk. The scan adds in a different
// order from the CPU's serial loop, so positions agree with the CPU's to rounding, not bits.
// The backward's table gradient dz gets atomic adds (several keys of a row hit the same
// position), so its last bits depend on their order.
#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

template <class F>
__global__ void cope_positions_kernel(const F* lg, const F* z, F* term, F* gates, F* pos, int64_t rows, int64_t Tq,
                                      int64_t Tk, int64_t t0, int64_t npos) {
  const int lane = threadIdx.x % kWarp;
  const F cap = F(npos - 1);
  COPPER_CUDA_WARP_ROWS(r, rows) {
    const int64_t i = t0 + r % Tq;
    const F* l = lg + r * Tk;
    const F* zr = z + r * npos;
    F *tr = term + r * Tk, *gr = gates + r * Tk, *pr = pos + r * Tk;
    F carry = 0;  // sum of the gates of the keys above this chunk
    for (int64_t top = i; top >= 0; top -= kWarp) {
      const int64_t j = top - lane;  // lane 0 holds the chunk's highest key
      const F g = j >= 0 ? F(1) / (F(1) + exp(-l[j])) : F(0);
      const F scan = warp_inclusive_scan(g, lane);
      if (j >= 0) {
        const F c = min(carry + scan, cap);
        const CopeInterp<F> ip(c);
        gr[j] = g;
        pr[j] = c;
        tr[j] = ip.at(zr);
      }
      carry += __shfl_sync(0xffffffffu, scan, kWarp - 1);
    }
    for (int64_t j = i + 1 + lane; j < Tk; j += kWarp) {
      gr[j] = 0;
      pr[j] = 0;
      tr[j] = zr[0];
    }
  }
}

template <class F>
__global__ void cope_positions_backward_kernel(const F* dterm, const F* z, const F* gates, const F* pos, F* dlg, F* dz,
                                               int64_t rows, int64_t Tq, int64_t Tk, int64_t t0, int64_t npos) {
  const int lane = threadIdx.x % kWarp;
  const F cap = F(npos - 1);
  COPPER_CUDA_WARP_ROWS(r, rows) {
    const int64_t i = t0 + r % Tq;
    const F *dt = dterm + r * Tk, *zr = z + r * npos, *gr = gates + r * Tk, *pr = pos + r * Tk;
    F *dl = dlg + r * Tk, *dzr = dz + r * npos;
    for (int64_t p = lane; p < npos; p += kWarp) dzr[p] = 0;
    __syncwarp();  // the zeros are visible to every lane before the adds
    F carry = 0;   // sum of dp over the keys below this chunk
    for (int64_t base = 0; base <= i; base += kWarp) {
      const int64_t t = base + lane;
      F dp = 0;
      if (t <= i) {
        const F c = pr[t];
        const CopeInterp<F> ip(c);
        atomicAdd(dzr + ip.lo, (F(1) - ip.w) * dt[t]);
        atomicAdd(dzr + ip.hi, ip.w * dt[t]);
        if (c < cap) dp = dt[t] * (zr[ip.hi] - zr[ip.lo]);
      }
      const F scan = warp_inclusive_scan(dp, lane);
      if (t <= i) dl[t] = (carry + scan) * gr[t] * (F(1) - gr[t]);
      carry += __shfl_sync(0xffffffffu, scan, kWarp - 1);
    }
    F future = 0;  // future keys read z[0] with weight 1 and have no gate
    for (int64_t t = i + 1 + lane; t < Tk; t += kWarp) {
      future += dt[t];
      dl[t] = 0;
    }
    future = warp_total(future);
    if (lane == 0 && i + 1 < Tk) atomicAdd(dzr, future);
  }
}

}  // namespace

void launch_cope_positions(DType dtype, const void* gate_logits, const void* z, void* term, void* gates, void* pos,
                           int64_t rows, int64_t Tq, int64_t Tk, int64_t t0, int64_t npos, cudaStream_t stream) {
  if (rows == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "cope_positions", [&] {
    cope_positions_kernel<T><<<grid_for_warp_rows(rows), kBlock, 0, stream>>>(
        static_cast<const T*>(gate_logits), static_cast<const T*>(z), static_cast<T*>(term), static_cast<T*>(gates),
        static_cast<T*>(pos), rows, Tq, Tk, t0, npos);
    COPPER_CUDA_LAUNCH_CHECK("cope_positions_kernel");
  });
}

void launch_cope_positions_backward(DType dtype, const void* dterm, const void* z, const void* gates, const void* pos,
                                    void* dgate_logits, void* dz, int64_t rows, int64_t Tq, int64_t Tk, int64_t t0,
                                    int64_t npos, cudaStream_t stream) {
  if (rows == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "cope_positions_backward", [&] {
    cope_positions_backward_kernel<T><<<grid_for_warp_rows(rows), kBlock, 0, stream>>>(
        static_cast<const T*>(dterm), static_cast<const T*>(z), static_cast<const T*>(gates),
        static_cast<const T*>(pos), static_cast<T*>(dgate_logits), static_cast<T*>(dz), rows, Tq, Tk, t0, npos);
    COPPER_CUDA_LAUNCH_CHECK("cope_positions_backward_kernel");
  });
}

}  // namespace copper::cuda
