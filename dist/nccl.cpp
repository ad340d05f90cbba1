// nccl.cpp — the communicator between GPUs, over NCCL (shipped with the CUDA toolkit);
// compiled when the CUDA backend is built and CMake found NCCL (COPPER_HAVE_NCCL), otherwise
// make_nccl() says how to get it.
//
// Start-up: rank 0 asks NCCL for a unique id, the host communicator (MPI under mpirun or
// srun) carries it to every rank, and every rank joins with its rank number on its own GPU.
//
// Streams: copper queues every kernel of a GPU on one stream (cuda/device.h). The collectives
// run on a second stream of their own, so that an all-reduce of one gradient bucket proceeds
// while the backward pass goes on computing the next bucket's gradients:
//   compute stream:  ... grads of bucket 0 ─(ready)─ grads of bucket 1 ─(ready)─ ...  ─(wait done)─ optimizer
//   NCCL stream:                           └ all-reduce 0 ─(done)      └ all-reduce 1 ─(done)
// "ready" is an event recorded on the compute stream when the collective is called; the NCCL
// stream waits for it, so the collective reads the buffer only after every kernel queued
// before the call wrote it. Pending::wait() makes the compute stream wait for "done", so
// later kernels read the result. Neither blocks the host.
#include "dist/comm.h"
#include "tensor/error.h"

#if COPPER_HAVE_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdlib>

#include "cuda/check.h"
#include "cuda/device.h"

namespace copper::dist {

namespace {

[[noreturn]] void fail_nccl(ncclResult_t r, const char* call, const char* file, int line) {
  const char* hint = "";
  switch (r) {
    case ncclInvalidUsage:
      hint = " HINT: each rank needs a GPU of its own (NCCL refuses two ranks on one GPU): start at most as many "
             "ranks per machine as it has GPUs";
      break;
    case ncclSystemError:
    case ncclRemoteError:
      hint = " HINT: a peer rank died or the network between the machines failed; run with NCCL_DEBUG=WARN to see "
             "which";
      break;
    case ncclUnhandledCudaError:
      hint = " HINT: a CUDA call inside NCCL failed; run with NCCL_DEBUG=WARN to see which";
      break;
    default:
      break;
  }
  COPPER_THROW("nccl", "{} failed at {}:{}: {}.{}", call, file, line, ncclGetErrorString(r), hint);
}

#define COPPER_NCCL_CHECK(call)                                                   \
  do {                                                                            \
    const ncclResult_t copper_nccl_ = (call);                                     \
    if (copper_nccl_ != ncclSuccess) fail_nccl(copper_nccl_, #call, __FILE__, __LINE__); \
  } while (0)

ncclRedOp_t nccl_op(Reduce op) { return op == Reduce::mean ? ncclAvg : ncclSum; }

class NcclPending final : public Pending {
 public:
  NcclPending(int device, cudaStream_t compute, cudaEvent_t done) : device_(device), compute_(compute), done_(done) {}
  ~NcclPending() override {
    // Later kernels must not touch the buffer before the transfer is over, waited for or not.
    try {
      wait();
    } catch (...) {
    }
    cudaEventDestroy(done_);  // released by the driver once the event has completed
  }
  bool test() override {
    if (waited_) return true;
    const cudaError_t e = cudaEventQuery(done_);
    if (e == cudaErrorNotReady) return false;
    COPPER_CUDA_CHECK(e);
    return true;
  }
  void wait() override {
    if (waited_) return;
    cuda::DeviceGuard guard(device_);
    COPPER_CUDA_CHECK(cudaStreamWaitEvent(compute_, done_, 0));
    waited_ = true;
  }

 private:
  int device_;
  cudaStream_t compute_;
  cudaEvent_t done_;
  bool waited_ = false;
};

class Nccl final : public Communicator {
 public:
  Nccl(Communicator& host, int device) : host_(host), device_(device) {
    COPPER_CHECK(host.device().is_cpu(), "nccl", "NCCL's start-up id travels through a host communicator, but the one "
                 "given ({}) works on {}", host.backend(), host.device().str());
    cuda::DeviceGuard guard(device);
    ncclUniqueId id{};
    if (host.rank() == 0) COPPER_NCCL_CHECK(ncclGetUniqueId(&id));
    host.broadcast(&id, sizeof id, 0);
    COPPER_NCCL_CHECK(ncclCommInitRank(&comm_, host.size(), id, host.rank()));
    compute_ = cuda::stream(device);
    COPPER_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    COPPER_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  }
  ~Nccl() override {
    cudaSetDevice(device_);  // a destructor must not throw: unchecked, as are the calls below
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
    cudaEventDestroy(ready_);
    cudaStreamDestroy(stream_);
  }
  const char* backend() const override { return "nccl"; }
  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  int local_size() const override { return host_.local_size(); }
  int local_rank() const override { return host_.local_rank(); }
  Device device() const override { return Device{DeviceType::cuda, device_}; }

  void all_reduce(float* data, int64_t n, Reduce op) override { all_reduce_async(data, n, op)->wait(); }
  void all_reduce(double* data, int64_t n, Reduce op) override {
    start([&] { return ncclAllReduce(data, data, size_t(n), ncclFloat64, nccl_op(op), comm_, stream_); },
          "ncclAllReduce")
        ->wait();
  }
  std::unique_ptr<Pending> all_reduce_async(float* data, int64_t n, Reduce op) override {
    return start([&] { return ncclAllReduce(data, data, size_t(n), ncclFloat32, nccl_op(op), comm_, stream_); },
                 "ncclAllReduce");
  }
  void broadcast(void* data, int64_t bytes, int root) override {
    start([&] { return ncclBroadcast(data, data, size_t(bytes), ncclUint8, root, comm_, stream_); }, "ncclBroadcast")
        ->wait();
  }
  std::vector<std::string> all_gather(const std::string& mine) override { return host_.all_gather(mine); }
  std::string broadcast_string(const std::string& s, int root) override { return host_.broadcast_string(s, root); }
  void barrier() override { host_.barrier(); }
  [[noreturn]] void abort(int code) override {
    ncclCommAbort(comm_);  // frees the GPU side without waiting for the peers
    host_.abort(code);
    std::_Exit(code);  // host_.abort does not return; this tells the compiler so
  }

 private:
  // Queues one collective on the NCCL stream, after the kernels queued so far on the compute
  // stream; the Pending's wait() queues the compute stream's wait for it.
  template <class Call>
  std::unique_ptr<Pending> start(Call&& call, const char* name) {
    cuda::DeviceGuard guard(device_);
    COPPER_CUDA_CHECK(cudaEventRecord(ready_, compute_));
    COPPER_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    const ncclResult_t r = call();
    if (r != ncclSuccess) fail_nccl(r, name, __FILE__, __LINE__);
    cudaEvent_t done;
    COPPER_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    COPPER_CUDA_CHECK(cudaEventRecord(done, stream_));
    return std::make_unique<NcclPending>(device_, compute_, done);
  }

  Communicator& host_;
  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t compute_ = nullptr, stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
};

}  // namespace

bool nccl_built() { return true; }
std::unique_ptr<Communicator> make_nccl(Communicator& host, int device) { return std::make_unique<Nccl>(host, device); }

}  // namespace copper::dist

#else  // built without NCCL

namespace copper::dist {

bool nccl_built() { return false; }
std::unique_ptr<Communicator> make_nccl(Communicator&, int) {
  COPPER_THROW("dist", "this copper was built without NCCL, which data-parallel training on GPUs needs. HINT: build "
                       "with the CUDA backend (-DCOPPER_CUDA=ON) where the CUDA toolkit's NCCL is installed (nccl.h, "
                       "libnccl.so); `copper info` says what this binary has");
}

}  // namespace copper::dist

#endif
