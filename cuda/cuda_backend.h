// cuda_backend.h — the CUDA implementation of Backend (tensor/backend.h).
//
// Each method makes the tensors' GPU current (DeviceGuard), unpacks the tensors into pointers,
// sizes and strides, and queues the kernel on that GPU's stream through a launcher of
// cuda/kernels.h, whose kernels live one family per file as on the CPU: copy.cu (copy, fill),
// elementwise.cu (unary, binary, where), reduce.cu, softmax.cu (softmax, causal softmax,
// cross-entropy), scan.cu, rotate.cu, cope.cu, index.cu, norm.cu, optim.cu; gemm.cpp calls cuBLAS. The methods
// return before the GPU has finished; transfer to the host and synchronize wait.
#pragma once
#include "tensor/backend.h"

namespace copper::cuda {

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  void transfer(const Tensor& src, const Tensor& dst) override;
  void synchronize(Device d) override;
  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) override;
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& grad, const Tensor& out, double a,
                      double b) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;
  // One pass forward (elementwise.cu); the backward is the default's product and column sums.
  void bias_gelu(const Tensor& x, const Tensor& bias, const Tensor& y, const Tensor& slope, int64_t rows,
                 int64_t n) override;
  void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) override;
  void gemm(const Tensor& a, const Tensor& b, const Tensor& c, bool accumulate) override;
  void softmax(const Tensor& x, const Tensor& y, int64_t rows, int64_t n, bool log) override;
  void softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t n,
                        bool log) override;
  void causal_softmax(const Tensor& x, const Tensor& y, int64_t rows, int64_t t, int64_t n) override;
  void causal_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t t,
                               int64_t n) override;
  void cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& lse,
                     int64_t ignore_index) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, const Tensor& dlogits,
                              const Tensor& scale, int64_t ignore_index) override;
  void rotate_pairs(const Tensor& x, const Tensor& cs, const Tensor& sn, const Tensor& out, int64_t outer, int64_t t,
                    int64_t p, bool inverse) override;
  void cope_positions(const Tensor& gate_logits, const Tensor& z, const Tensor& term, const Tensor& gates,
                      const Tensor& pos, int64_t rows, int64_t Tq, int64_t Tk, int64_t t0, int64_t npos) override;
  void cope_positions_backward(const Tensor& dterm, const Tensor& z, const Tensor& gates, const Tensor& pos,
                               const Tensor& dgate_logits, const Tensor& dz, int64_t rows, int64_t Tq, int64_t Tk,
                               int64_t t0, int64_t npos) override;
  // The fused attention kernels (attention.cu). has_fused_attention() is false, so the ops
  // compose the reference, until Cuda.FusedAttentionIsTheCpusKernel has passed on a GPU; the
  // environment variable COPPER_CUDA_FUSED_ATTENTION=1 turns the kernels on to measure them.
  bool has_fused_attention() const override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, int64_t bh,
                 int64_t Tq, int64_t Tk, int64_t Dh, double scale, double p, uint64_t key,
                 const AttentionCope& cope, const AttentionRotation& rot, DType products) override;
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv, int64_t bh,
                          int64_t Tq, int64_t Tk, int64_t Dh, double scale, double p, uint64_t key,
                          const AttentionCope& cope, const AttentionRotation& rot, DType products) override;
  void cumsum(const Tensor& x, const Tensor& out, int64_t outer, int64_t n, int64_t inner, bool reverse) override;
  void index_select(const Tensor& x, const Tensor& index, const Tensor& out, int64_t outer, int64_t n,
                    int64_t inner) override;
  void index_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t outer, int64_t n,
                 int64_t inner) override;
  void gather(const Tensor& x, const Tensor& index, const Tensor& out, int64_t outer, int64_t n, int64_t k,
              int64_t inner) override;
  void scatter_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t outer, int64_t n, int64_t k,
                   int64_t inner) override;
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y, const Tensor& mean,
                  const Tensor& rstd, int64_t rows, int64_t n, double eps) override;
  void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                           const Tensor& dy, const Tensor& dx, const Tensor& dweight, const Tensor& dbias, int64_t rows,
                           int64_t n) override;
  void rms_norm(const Tensor& x, const Tensor& weight, const Tensor& y, const Tensor& rstd, int64_t rows, int64_t n,
                double eps) override;
  void rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                         const Tensor& dweight, int64_t rows, int64_t n) override;
  void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, double lr, double b1, double b2,
                  double eps, double wd, double bc1, double bc2) override;
  void adamw_steps(const std::vector<AdamWParam>& params, double lr, double b1, double b2, double eps) override;
  void dropout_mask(const Tensor& out, double p, uint64_t key) override;
  void random_fill(const Tensor& out, bool normal, double a, double b, uint64_t key) override;
  void sum_squares(const std::vector<Tensor>& xs, const Tensor& out) override;
};

// The one CudaBackend, registered for DeviceType::cuda by cuda/register.cpp.
CudaBackend& backend();

}  // namespace copper::cuda
