// grad_sync.h — data-parallel gradient averaging: persistent flat buckets, all-reduced
// while the backward pass runs.
//
// The parameters are grouped, in reverse order of the model's parameter list (the order in
// which backward() finishes their gradients: the last layers first), into buckets of about
// kBucketBytes. Each bucket is one flat f32 tensor on the communicator's device (host memory
// for MPI, the GPU for NCCL), allocated once. During backward() the
// autograd engine reports each parameter whose gradient is final (LeafGradHook); its
// gradient is copied into its slot, and when every parameter of a bucket is in, the
// bucket's all-reduce (mean over ranks) starts without waiting. Buckets start strictly in
// index order, whatever order their parameters finish in, so that every rank issues the
// same collectives in the same order (MPI requires it). finish() starts what is left
// (parameters that got no gradient this pass count as zeros), waits for all buckets, and
// copies the averaged gradients back into each parameter's .grad.
//
// MPI moves a non-blocking transfer forward only inside MPI calls, so every hook call also
// tests the buckets in flight: the all-reduce of one bucket proceeds while the next layer's
// backward is computed. NCCL runs the transfers on a stream of its own beside the backward
// pass's kernels (dist/nccl.cpp).
//
// With overlap off (COPPER_DP_OVERLAP=0) nothing starts during backward(): finish() copies
// and all-reduces the buckets one after another (the baseline that docs/PERF.md compares).
#pragma once
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "dist/comm.h"
#include "nn/optim.h"

namespace copper::train {

// Bucket size: large enough that each all-reduce is bandwidth-bound rather than latency-
// bound, small enough that the first bucket starts early in the backward pass.
inline constexpr int64_t kBucketBytes = int64_t(4) << 20;

struct GradSyncStats {
  double hook_s = 0;      // in the hook: copying gradients into buckets, starting and testing all-reduces
  double finish_s = 0;    // in finish(): what the backward pass did not hide
  int64_t bytes = 0;      // gradient bytes all-reduced (per rank)
  int64_t overlapped = 0; // buckets whose all-reduce started before backward() returned
  int64_t buckets = 0;
};

class GradSync {
 public:
  GradSync(dist::Communicator& comm, const nn::NamedTensors& params, bool overlap,
           int64_t bucket_bytes = kBucketBytes);
  ~GradSync();

  // Around one backward pass: begin() installs the hook (call it right before backward());
  // finish() leaves every parameter's .grad holding the mean over ranks.
  void begin();
  void finish();

  int64_t buckets() const { return int64_t(buckets_.size()); }
  // Totals since the last call.
  GradSyncStats take_stats();

 private:
  struct Slot {
    Tensor param;
    int64_t bucket = 0, offset = 0, numel = 0;
    bool ready = false, has_grad = false;
  };
  struct Bucket {
    Tensor flat;  // f32, one dimension, on comm_.device()
    int64_t waiting = 0;  // parameters not yet ready
    std::unique_ptr<dist::Pending> pending;
  };
  void on_ready(TensorImpl* leaf);
  void mark_ready(Slot& s);
  void launch_ready();
  void launch(size_t b);

  dist::Communicator& comm_;
  bool overlap_;
  std::vector<Slot> slots_;
  std::vector<Bucket> buckets_;
  std::unordered_map<TensorImpl*, size_t> slot_of_;
  size_t next_launch_ = 0;
  bool in_backward_ = false;
  GradSyncStats stats_;
  struct HookHolder;
  std::unique_ptr<HookHolder> hook_;
};

}  // namespace copper::train
