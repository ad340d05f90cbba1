// comm.h — the communicator: how the processes of one data-parallel run talk to each other.
//
// A run of N processes ("ranks", numbered 0..N-1) shares one Communicator. Training needs
// five things of it: which rank this is and how many there are, an all-reduce of the
// gradients (every rank's buffer replaced by the sum or the mean over ranks, also started
// without waiting so that it overlaps the backward pass), a broadcast of rank 0's weights,
// an all-gather to compare the ranks' configs, and a barrier.
//
// Implementations, one file each, chosen at start-up by world():
//   single (dist/single.cpp) — one process; every collective is the identity.
//   mpi    (dist/mpi.cpp)    — MPI, when the program was built with it (COPPER_MPI) and
//                              launched by mpirun or srun (launched_by_mpi()).
//   nccl   (dist/nccl.cpp)   — NCCL between GPUs, when built with CUDA and NCCL: made over a
//                              host communicator (make_nccl), which carries its start-up id.
//
// Where the buffers live: the all_reduce and broadcast buffers of a communicator are in the
// memory of its device() — host memory for single and mpi, the GPU's for nccl. all_gather,
// broadcast_string and barrier always work on the host.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/storage.h"

namespace copper::dist {

enum class Reduce { sum, mean };

// A collective started without waiting. The buffer it was given must stay alive and
// untouched until wait() returned.
class Pending {
 public:
  virtual ~Pending() = default;
  // Lets the library move the transfer forward (MPI progresses only inside MPI calls);
  // true once complete.
  virtual bool test() = 0;
  // Blocks until the buffer holds the result.
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual const char* backend() const = 0;  // "single", "mpi", "nccl"
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Ranks on this machine (sizing each rank's threads so that they share its cores), and
  // this rank's place among them, 0..local_size()-1 (which GPU of the machine it takes).
  virtual int local_size() const = 0;
  virtual int local_rank() const = 0;
  // Where the buffers of all_reduce and broadcast must be.
  virtual Device device() const { return kCPU; }

  // In place over ranks: data[i] = sum (or mean) of every rank's data[i]. Every rank
  // calls it with the same n, and all ranks get bit-identical results.
  virtual void all_reduce(float* data, int64_t n, Reduce op) = 0;
  virtual void all_reduce(double* data, int64_t n, Reduce op) = 0;
  virtual std::unique_ptr<Pending> all_reduce_async(float* data, int64_t n, Reduce op) = 0;
  // Rank `root`'s bytes copied into every rank's buffer.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  // Every rank's string, in rank order, on every rank (strings may differ in length).
  virtual std::vector<std::string> all_gather(const std::string& mine) = 0;
  virtual void barrier() = 0;
  // Ends every rank of the run with exit code `code` (a rank that hit an error while the
  // others wait in a collective would otherwise leave them waiting forever).
  [[noreturn]] virtual void abort(int code) = 0;

  // Rank `root`'s string on every rank (host memory, whatever device() is).
  virtual std::string broadcast_string(const std::string& s, int root);
};

std::unique_ptr<Communicator> make_single();
// Initialises MPI (once per process). Throws copper::Error when copper was built without it.
std::unique_ptr<Communicator> make_mpi();
bool mpi_built();  // whether this build has the MPI implementation

// A communicator between the GPUs cuda:`device` of every rank, over NCCL: `host` (the run's
// world(), one rank per GPU) carries NCCL's start-up id from rank 0 to the others and does
// the host-side collectives; it must outlive the result. Collective calls run on the GPU in
// a stream of their own, ordered after the kernels queued so far on the device's stream;
// a Pending's wait() orders the device's later kernels after the transfer (the host does not
// block). Throws copper::Error when copper was built without NCCL.
std::unique_ptr<Communicator> make_nccl(Communicator& host, int device);
bool nccl_built();  // whether this build has the NCCL implementation

// Whether an MPI launcher started this process (mpirun/mpiexec of Open MPI, MPICH or Intel
// MPI, or Slurm's srun with a PMI plugin): its environment variables say so.
bool launched_by_mpi();

// The run's communicator, chosen on the first call: MPI when launched_by_mpi(), else single.
// With more than one rank on a machine, each rank's OpenMP and OpenBLAS threads are set to
// (cores of this machine) / (ranks on it), unless OMP_NUM_THREADS is set. It is process-wide
// because MPI itself is: MPI_Init may run once per process.
Communicator& world();

// The threads each rank should use: cpus / ranks_here, at least 1, at most the cpus this
// process may run on (`affinity`: mpirun may bind a rank to fewer cores).
int threads_per_rank(int cpus, int ranks_here, int affinity);

}  // namespace copper::dist
