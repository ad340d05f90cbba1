// mpi.cpp — the communicator over MPI (Open MPI on Debian: libopenmpi-dev), compiled when
// CMake found MPI (COPPER_HAVE_MPI); without it make_mpi() says how to get it.
//
// MPI is initialised with MPI_THREAD_FUNNELED: only the thread that drives training calls
// MPI; the OpenMP and OpenBLAS workers never do. Errors keep MPI's default handler
// (MPI_ERRORS_ARE_FATAL): a failed transfer, or a peer that died, ends the whole job
// rather than returning to code that would wait for that peer again.
#include "dist/comm.h"
#include "tensor/error.h"

#if COPPER_HAVE_MPI
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

namespace copper::dist {

namespace {

// MPI counts are int; a broadcast larger than this goes in pieces.
constexpr int64_t kMaxChunkBytes = int64_t(1) << 30;

int checked_count(int64_t n, const char* what) {
  COPPER_CHECK(n >= 0 && n <= INT_MAX, "dist", "{} of {} elements is more than one MPI call takes ({}). HINT: split "
               "the buffer", what, n, INT_MAX);
  return int(n);
}

template <class T>
void divide(T* data, int64_t n, int size) {
  const T d = T(size);
  for (int64_t i = 0; i < n; ++i) data[i] /= d;
}

class MpiPending final : public Pending {
 public:
  MpiPending(MPI_Request req, float* data, int64_t n, int mean_over) : req_(req), data_(data), n_(n), mean_over_(mean_over) {}
  ~MpiPending() override {
    if (!done_) MPI_Wait(&req_, MPI_STATUS_IGNORE);  // the buffer must not be freed under MPI
  }
  bool test() override {
    if (!done_) {
      int flag = 0;
      MPI_Test(&req_, &flag, MPI_STATUS_IGNORE);
      if (flag) complete();
    }
    return done_;
  }
  void wait() override {
    if (!done_) {
      MPI_Wait(&req_, MPI_STATUS_IGNORE);
      complete();
    }
  }

 private:
  void complete() {
    done_ = true;
    if (mean_over_ > 1) divide(data_, n_, mean_over_);
  }
  MPI_Request req_;
  float* data_;
  int64_t n_;
  int mean_over_;  // 0: a sum
  bool done_ = false;
};

class Mpi final : public Communicator {
 public:
  Mpi() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owns_init_ = true;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Comm local;
    MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_free(&local);
  }
  ~Mpi() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    MPI_Comm_free(&comm_);
    if (owns_init_) MPI_Finalize();
  }
  const char* backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_size() const override { return local_size_; }
  int local_rank() const override { return local_rank_; }

  void all_reduce(float* data, int64_t n, Reduce op) override {
    MPI_Allreduce(MPI_IN_PLACE, data, checked_count(n, "all-reduce"), MPI_FLOAT, MPI_SUM, comm_);
    if (op == Reduce::mean) divide(data, n, size_);
  }
  void all_reduce(double* data, int64_t n, Reduce op) override {
    MPI_Allreduce(MPI_IN_PLACE, data, checked_count(n, "all-reduce"), MPI_DOUBLE, MPI_SUM, comm_);
    if (op == Reduce::mean) divide(data, n, size_);
  }
  std::unique_ptr<Pending> all_reduce_async(float* data, int64_t n, Reduce op) override {
    MPI_Request req;
    MPI_Iallreduce(MPI_IN_PLACE, data, checked_count(n, "all-reduce"), MPI_FLOAT, MPI_SUM, comm_, &req);
    return std::make_unique<MpiPending>(req, data, n, op == Reduce::mean ? size_ : 0);
  }
  void broadcast(void* data, int64_t bytes, int root) override {
    char* p = static_cast<char*>(data);
    for (int64_t at = 0; at < bytes; at += kMaxChunkBytes)
      MPI_Bcast(p + at, int(std::min(kMaxChunkBytes, bytes - at)), MPI_BYTE, root, comm_);
  }
  std::vector<std::string> all_gather(const std::string& mine) override {
    int len = checked_count(int64_t(mine.size()), "all-gather");
    std::vector<int> lens(size_), offsets(size_);
    MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, comm_);
    int64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets[r] = checked_count(total, "all-gather");
      total += lens[r];
    }
    std::string all(size_t(checked_count(total, "all-gather")), '\0');
    MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), offsets.data(), MPI_CHAR, comm_);
    std::vector<std::string> out;
    for (int r = 0; r < size_; ++r) out.push_back(all.substr(size_t(offsets[r]), size_t(lens[r])));
    return out;
  }
  void barrier() override { MPI_Barrier(comm_); }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(comm_, code);
    std::_Exit(code);  // MPI_Abort does not return; this tells the compiler so
  }

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1, local_size_ = 1, local_rank_ = 0;
  bool owns_init_ = false;
};

}  // namespace

bool mpi_built() { return true; }
std::unique_ptr<Communicator> make_mpi() { return std::make_unique<Mpi>(); }

}  // namespace copper::dist

#else  // built without MPI

namespace copper::dist {

bool mpi_built() { return false; }
std::unique_ptr<Communicator> make_mpi() {
  COPPER_THROW("dist", "this copper was built without MPI. HINT: install libopenmpi-dev (scripts/setup.sh) and "
                       "rebuild with -DCOPPER_MPI=ON");
}

}  // namespace copper::dist

#endif
