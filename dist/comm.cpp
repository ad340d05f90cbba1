// comm.cpp — choosing the run's communicator at start-up, and sizing each rank's threads.
#include "dist/comm.h"

#include <cblas.h>
#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "tensor/error.h"

namespace copper::dist {

namespace {

// Variables that MPI launchers set in every process they start: Open MPI's mpirun, PMIx
// (Open MPI 5, srun --mpi=pmix), PMI-1/2 (MPICH's and Intel MPI's hydra, srun --mpi=pmi2),
// MVAPICH.
constexpr const char* kLauncherVars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                                         "MV2_COMM_WORLD_SIZE"};

// The number of ranks the launcher announced, or 0 if it did not say.
int launcher_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_NTASKS"})
    if (const char* v = std::getenv(var)) return std::atoi(v);
  return 0;
}

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
  return CPU_COUNT(&set);
}

std::unique_ptr<Communicator> choose() {
  if (!launched_by_mpi()) return make_single();
  if (!mpi_built()) {
    COPPER_CHECK(launcher_size() <= 1, "dist",
                 "started by an MPI launcher with {} ranks, but this copper was built without MPI, so every rank would "
                 "train alone. HINT: install libopenmpi-dev (scripts/setup.sh) and rebuild with -DCOPPER_MPI=ON",
                 launcher_size());
    return make_single();
  }
  std::unique_ptr<Communicator> comm = make_mpi();
  if (comm->size() > 1 && std::getenv("OMP_NUM_THREADS") == nullptr) {
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    const int threads = threads_per_rank(online > 0 ? int(online) : 1, comm->local_size(), affinity_cpus());
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }
  return comm;
}

}  // namespace

bool launched_by_mpi() {
  return std::any_of(std::begin(kLauncherVars), std::end(kLauncherVars),
                     [](const char* v) { return std::getenv(v) != nullptr; });
}

int threads_per_rank(int cpus, int ranks_here, int affinity) {
  int t = std::max(1, cpus / std::max(1, ranks_here));
  if (affinity > 0) t = std::min(t, affinity);
  return t;
}

Communicator& world() {
  static std::unique_ptr<Communicator> comm = choose();
  return *comm;
}

std::string Communicator::broadcast_string(const std::string& s, int root) {
  int64_t n = rank() == root ? int64_t(s.size()) : 0;
  broadcast(&n, sizeof n, root);
  std::string out = rank() == root ? s : std::string(size_t(n), '\0');
  if (n > 0) broadcast(out.data(), n, root);
  return out;
}

}  // namespace copper::dist
