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
// A GPU implementation (NCCL) is one more file: its buffers are device pointers, and it
// bootstraps its communicator id through the MPI one (all-gather of the NCCL unique id).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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
  virtual const char* backend() const = 0;  // "single", "mpi"
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Ranks on this machine (sizing each rank's threads so that they share its cores).
  virtual int local_size() const = 0;

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

  // Rank `root`'s string on every rank.
  std::string broadcast_string(const std::string& s, int root);
};

std::unique_ptr<Communicator> make_single();
// Initialises MPI (once per process). Throws copper::Error when copper was built without it.
std::unique_ptr<Communicator> make_mpi();
bool mpi_built();  // whether this build has the MPI implementation

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
