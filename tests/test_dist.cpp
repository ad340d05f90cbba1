// test_dist.cpp — data-parallel training over MPI, end to end through build/bin/copper:
// 2 ranks of batch B/2 end where 1 process of batch B does; ranks started with different
// settings refuse to start; a rank killed mid-run ends the job in bounded time; and the
// checkpoint it left (written by 2 ranks) resumes in 1 process to the same weights.
// Also the pieces that need no MPI: the thread split, the batch shards, the leaf hook, the
// gradient buckets over one rank; and NCCL over one rank on cuda:0 (skipped without a GPU).
//
// The MPI tests run `mpirun -np 2 --oversubscribe` themselves (as root too) and skip, saying
// why, when copper was built without MPI or mpirun is not installed.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "autograd/grad_hook.h"
#include "dist/comm.h"
#include "nn/checkpoint.h"
#include "tensor/ops.h"
#include "tests/test_util.h"
#include "nn/linear.h"
#include "tests/gpu_skip.h"
#include "train/data_parallel.h"
#include "train/grad_sync.h"

namespace fs = std::filesystem;
using namespace copper;

namespace {

const std::string kCopper = std::string(COPPER_BINARY_DIR) + "/bin/copper";
// mpirun as these tests need it: allowed as root, more ranks than free cores, no binding
// (so that the ranks' threads are not pinned to one core each on a busy machine), and
// shared memory without the single-copy mechanism that containers often forbid.
const std::string kMpirun =
    "mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader "
    "--mca btl_vader_single_copy_mechanism none";
// A tiny flipflop model: a few seconds for all the runs below.
const std::string kTiny = "task train --task flipflop --pe rope --preset demo --d-model 32 --layers 1 --heads 2 "
                          "--batch 8 --dropout 0 --quiet";
constexpr double kMaxRelDiff = 1e-6;  // N ranks against 1 process: only the order of the sums differs
constexpr int kBoundSeconds = 30;     // a dead rank must end the job within this
constexpr int64_t kLongSteps = 100;   // the run a rank of which is killed (a checkpoint every 2 steps)

struct Ran {
  int rc = -1;
  std::string out;
};

// `cmd` through the shell (stdout and stderr together), with OMP_NUM_THREADS=1 so that 1
// process and N ranks sum in the same order within each rank.
Ran sh(const std::string& cmd) {
  Ran r;
  std::FILE* p = popen(("OMP_NUM_THREADS=1 " + cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

std::string skip_reason() {
  if (!dist::mpi_built()) return "copper was built without MPI (libopenmpi-dev not found, or -DCOPPER_MPI=OFF)";
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) return "mpirun is not installed (openmpi-bin)";
  if (dist::launched_by_mpi()) return "this test binary was itself started by an MPI launcher";
  return "";
}

// ||a - b|| / ||a|| over all tensors of two model files.
double rel_diff(const fs::path& a, const fs::path& b) {
  nn::LoadedModel ma = nn::load_model(a.string()), mb = nn::load_model(b.string());
  double num = 0, den = 0;
  for (const auto& [name, ta] : ma.weights) {
    auto it = std::find_if(mb.weights.begin(), mb.weights.end(), [&](const auto& kv) { return kv.first == name; });
    EXPECT_NE(it, mb.weights.end()) << name;
    if (it == mb.weights.end()) return INFINITY;
    auto va = ta.to(DType::f64).to_vector<double>(), vb = it->second.to(DType::f64).to_vector<double>();
    for (size_t i = 0; i < va.size(); ++i) {
      num += (va[i] - vb[i]) * (va[i] - vb[i]);
      den += va[i] * va[i];
    }
  }
  return std::sqrt(num / den);
}

class Dist : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = skip_reason(); !why.empty()) GTEST_SKIP() << why;
    dir_ = testing_util::fresh_temp_dir("dist");
    // The tiny model's config with `steps` steps, a checkpoint every 2 and a short final
    // evaluation, as a --config file; `task` is the command line that trains it.
    Ran base = sh(fmt::format("{} {} --steps 0 --out {}", kCopper, kTiny, out("base")));
    ASSERT_EQ(base.rc, 0) << base.out;
    std::ifstream in(dir_ / "base" / "config.json");
    nlohmann::json cfg = nlohmann::json::parse(in);
    cfg["checkpoint_every"] = 2;
    cfg["eval_samples"] = 16;
    for (int64_t steps : {int64_t(10), kLongSteps}) {
      cfg["steps"] = steps;
      cfg["log_every"] = steps;
      cfg["schedule"]["total"] = steps;
      const fs::path file = dir_ / fmt::format("steps{}.json", steps);
      std::ofstream(file) << cfg.dump(2);
    }
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

 public:  // the command lines, for the helpers below too
  std::string task(int64_t steps, bool quiet = true) const {
    return fmt::format("task train --config {}{}", (dir_ / fmt::format("steps{}.json", steps)).string(),
                       quiet ? " --quiet" : "");
  }
  std::string out(const std::string& name) const { return (dir_ / name).string(); }

 protected:
  fs::path dir_;
};

// 10 steps of one process, then of 2 ranks started by `launch_two` (a launcher command that
// starts 2 ranks of what follows it): the same weights within kMaxRelDiff, and one run folder,
// written by rank 0, whose log says how many ranks trained.
void expect_two_ranks_equal_one(const Dist& t, const std::string& launch_two, const std::string& what) {
  Ran one = sh(fmt::format("{} {} --out {}", kCopper, t.task(10), t.out("one")));
  ASSERT_EQ(one.rc, 0) << one.out;
  Ran two = sh(fmt::format("{} {} {} --out {}", launch_two, kCopper, t.task(10), t.out("two")));
  ASSERT_EQ(two.rc, 0) << two.out;
  const fs::path one_dir(t.out("one")), two_dir(t.out("two"));
  const double d = rel_diff(one_dir / "model.safetensors", two_dir / "model.safetensors");
  EXPECT_LE(d, kMaxRelDiff);
  fmt::print("{} vs 1 process after 10 steps: relative difference {:.2e}\n", what, d);
  std::ifstream log(two_dir / "log.jsonl");
  std::string first;
  std::getline(log, first);
  EXPECT_NE(first.find("\"ranks\":2"), std::string::npos) << first;
}

TEST_F(Dist, TwoRanksOfHalfTheBatchEqualOneProcess) {
  expect_two_ranks_equal_one(*this, kMpirun + " -np 2", "2 ranks");
}

// Why `srun` cannot start 2 ranks here, or "" when it can: a Slurm installation whose
// controller answers and has 2 CPUs idle, with the PMIx plugin that Open MPI needs.
std::string srun_skip_reason() {
  if (std::system("command -v srun > /dev/null 2>&1") != 0) return "Slurm's srun is not installed";
  if (sh("timeout 10 sinfo -h -o %T").rc != 0) return "no Slurm controller answers (sinfo failed)";
  if (sh("timeout 10 srun --mpi=list").out.find("pmix") == std::string::npos)
    return "this Slurm has no PMIx plugin (srun --mpi=list)";
  return "";
}

// The same run launched by Slurm instead of mpirun: srun starts the ranks, PMIx tells each
// its rank, and the result is the same as one process's.
TEST_F(Dist, TwoRanksUnderSrunEqualOneProcess) {
  if (const std::string why = srun_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  expect_two_ranks_equal_one(*this, "timeout 300 srun -n 2 --mpi=pmix", "2 ranks under srun");
}

TEST_F(Dist, RanksWithDifferentSettingsRefuseToStart) {
  Ran r = sh(fmt::format("timeout {} {} -np 1 {} {} --lr 0.001 --out {} : -np 1 {} {} --lr 0.002 --out {}",
                         2 * kBoundSeconds, kMpirun, kCopper, task(10), out("a"), kCopper, task(10), out("a")));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.rc, 124) << "timed out: " << r.out;
  EXPECT_NE(r.out.find("different settings"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("lr"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "a" / "checkpoints")) << "a refused run must not train";
}

// The pid of the process whose parent is `parent` and whose environment holds `var`.
pid_t child_with_env(pid_t parent, const std::string& var) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    int ppid = 0;
    char state = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) != 2 || ppid != parent) continue;
    std::ifstream env(e.path() / "environ", std::ios::binary);
    std::string v;
    while (std::getline(env, v, '\0'))
      if (v == var) return pid_t(std::stoi(name));
  }
  return -1;
}

TEST_F(Dist, KilledRankEndsTheJobAndItsCheckpointResumesInOneProcess) {
  const std::string args = fmt::format("{} --out {}", task(kLongSteps), out("killed"));
  const pid_t mpirun = fork();
  ASSERT_GE(mpirun, 0);
  if (mpirun == 0) {
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    setenv("OMP_NUM_THREADS", "1", 1);
    const std::string cmd = fmt::format("exec {} -np 2 {} {}", kMpirun, kCopper, args);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // wait for the first checkpoint of the 2-rank run, then kill rank 1
  const fs::path latest = dir_ / "killed" / "checkpoints" / "latest";
  const auto t0 = std::chrono::steady_clock::now();
  auto waited = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  pid_t rank1 = -1;
  while (waited() < 2 * kBoundSeconds && (rank1 < 0 || !fs::exists(latest))) {
    if (rank1 < 0) rank1 = child_with_env(mpirun, "OMPI_COMM_WORLD_RANK=1");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GT(rank1, 0) << "rank 1 never appeared";
  ASSERT_TRUE(fs::exists(latest)) << "the 2-rank run wrote no checkpoint";
  ASSERT_EQ(kill(rank1, SIGKILL), 0);
  const auto killed_at = std::chrono::steady_clock::now();
  int status = 0;
  pid_t done = 0;
  while ((done = waitpid(mpirun, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() - killed_at < std::chrono::seconds(kBoundSeconds))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (done == 0) {  // still running: the test fails; end what it started
    kill(mpirun, SIGKILL);
    waitpid(mpirun, &status, 0);
    FAIL() << "mpirun still ran " << kBoundSeconds << " s after rank 1 was killed";
  }
  const bool failed = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
  fmt::print("mpirun ended {:.2f} s after rank 1 was killed\n",
             std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count());
  EXPECT_TRUE(failed) << "mpirun exited 0 after a rank was killed";

  // The checkpoint (of a step before the last, written by 2 ranks) resumes in 1 process
  // and ends where an uninterrupted 1-process run ends.
  ASSERT_FALSE(fs::exists(dir_ / "killed" / "results.json")) << "the run finished before the kill";
  Ran resumed = sh(fmt::format("{} {} --out {}", kCopper, task(kLongSteps, false), out("killed")));
  ASSERT_EQ(resumed.rc, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("saved with 2 ranks, now 1"), std::string::npos) << resumed.out;
  Ran whole = sh(fmt::format("{} {} --out {}", kCopper, task(kLongSteps), out("whole")));
  ASSERT_EQ(whole.rc, 0) << whole.out;
  const double d = rel_diff(dir_ / "whole" / "model.safetensors", dir_ / "killed" / "model.safetensors");
  EXPECT_LE(d, kMaxRelDiff);
  fmt::print("2 ranks then 1 process vs 1 process after {} steps: relative difference {:.2e}\n", kLongSteps, d);
}

// ---------------------------------------------------------------- without MPI

TEST(DistPieces, ThreadsPerRankShareTheCores) {
  EXPECT_EQ(dist::threads_per_rank(16, 4, 16), 4);
  EXPECT_EQ(dist::threads_per_rank(2, 2, 2), 1);
  EXPECT_EQ(dist::threads_per_rank(2, 4, 2), 1);  // oversubscribed: still one each
  EXPECT_EQ(dist::threads_per_rank(16, 1, 4), 4); // bound to 4 cores by the launcher
}

TEST(DistPieces, ShardsCoverTheBatchInOrder) {
  train::Batch b;
  b.ids = arange(0, 10, 1, DType::i64).reshape({5, 2});
  b.targets = b.ids.clone();
  b.tokens = 10;
  std::vector<int64_t> seen;
  int64_t tokens = 0;
  for (int r = 0; r < 2; ++r) {
    train::Batch s = train::dp::shard(b, r, 2);
    for (int64_t v : s.ids.to_vector<int64_t>()) seen.push_back(v);
    tokens += s.tokens;
  }
  EXPECT_EQ(seen, b.ids.to_vector<int64_t>());
  EXPECT_EQ(tokens, 10);
  EXPECT_THROW(train::dp::shard(b, 0, 6), Error);
}

TEST(DistPieces, SingleCommunicatorIsTheIdentity) {
  auto c = dist::make_single();
  std::vector<float> v{1, 2, 3};
  c->all_reduce(v.data(), 3, dist::Reduce::mean);
  c->all_reduce_async(v.data(), 3, dist::Reduce::sum)->wait();
  EXPECT_EQ(v, (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(c->all_gather("x"), std::vector<std::string>{"x"});
  EXPECT_EQ(c->broadcast_string("abc", 0), "abc");
}

TEST(DistPieces, LeafHookFiresOnceWhenEachGradientIsFinal) {
  Tensor a = ones({3}).requires_grad_(), b = ones({3}).requires_grad_();
  Tensor y = sum(a * b + a * 2.0) + sum(b);  // a used twice, b twice
  std::vector<TensorImpl*> fired;
  std::vector<double> grad_at_fire;
  {
    LeafGradHook hook([&](TensorImpl* leaf) {
      fired.push_back(leaf);
      grad_at_fire.push_back(sum(Tensor(leaf->grad)).item());
    });
    y.backward();
  }
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_NE(fired[0], fired[1]);
  for (size_t i = 0; i < 2; ++i)  // the gradient the hook saw is the final one
    EXPECT_DOUBLE_EQ(grad_at_fire[i], sum((fired[i] == a.impl() ? a : b).grad()).item());
  Tensor z = sum(a * 3.0);
  z.backward();  // no hook installed any more
  EXPECT_EQ(fired.size(), 2u);
}

// Gradients through GradSync over `comm` (one rank) equal the gradients of a plain backward
// pass, bit for bit: the mean over one rank is the value itself. Small buckets, so that the
// three parameters fill more than one and some start during the backward pass.
void expect_grad_sync_is_identity(dist::Communicator& comm, bool overlap) {
  const Device dev = comm.device();
  manual_seed(7);
  nn::Linear l1(6, 5), l2(5, 3);
  l1.to(dev);
  l2.to(dev);
  nn::NamedTensors params = l1.named_parameters();
  for (auto& [n, t] : l2.named_parameters()) params.emplace_back("l2." + n, t);
  Tensor x = randn({4, 6}).to(dev);
  auto loss_of = [&] { return sum(l2.forward(gelu(l1.forward(x)))); };
  loss_of().backward();
  std::vector<std::vector<float>> want;
  for (auto& [n, t] : params) {
    want.push_back(t.grad().to(kCPU).to_vector<float>());
    t.zero_grad();
  }
  train::GradSync sync(comm, params, overlap, /*bucket_bytes=*/64);
  EXPECT_GT(sync.buckets(), 1);
  for (int round = 0; round < 2; ++round) {  // the buckets are reused
    for (auto& [n, t] : params) t.zero_grad();
    sync.begin();
    Tensor loss = loss_of();
    loss.backward();
    sync.finish();
    for (size_t i = 0; i < params.size(); ++i)
      EXPECT_EQ(params[i].second.grad().to(kCPU).to_vector<float>(), want[i]) << params[i].first;
    const train::GradSyncStats st = sync.take_stats();
    EXPECT_EQ(st.buckets, sync.buckets());
    if (overlap) {
      EXPECT_GT(st.overlapped, 0);
    }
  }
}

TEST(DistPieces, GradientBucketsOverOneRankLeaveTheGradientsAsTheyAre) {
  auto c = dist::make_single();
  expect_grad_sync_is_identity(*c, true);
  expect_grad_sync_is_identity(*c, false);
}

TEST(DistPieces, GradientBucketsTakeOnlyF32Parameters) {
  auto c = dist::make_single();
  Tensor w = Tensor::empty({2}, DType::f64);
  try {
    train::GradSync(*c, {{"w", w}}, true);
    FAIL() << "an f64 parameter was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'w' is f64"), std::string::npos) << e.what();
  }
}

// Without a GPU (or without NCCL in the build), asking for the NCCL communicator is an error
// that says why, never a crash.
TEST(DistPieces, NcclWithoutAGpuSaysWhy) {
  if (test::no_gpu_reason().empty()) GTEST_SKIP() << "a GPU is present: DistGpu covers NCCL";
  auto host = dist::make_single();
  try {
    dist::make_nccl(*host, 0);
    FAIL() << "make_nccl succeeded without a GPU";
  } catch (const Error& e) {
    const std::string m = e.what();
    const std::string want = dist::nccl_built() ? "HINT" : "without NCCL";
    EXPECT_NE(m.find(want), std::string::npos) << m;
  }
}

// NCCL over one rank on cuda:0 (NCCL refuses two ranks on one GPU, so this is what a machine
// with one GPU can check): the collectives keep the values, ordered after the kernels that
// wrote them and before those that read them; the gradient buckets work on device memory.
TEST(DistGpu, NcclOverOneRankKeepsTheValuesInStreamOrder) {
  SKIP_WITHOUT_GPU();
  if (!dist::nccl_built()) GTEST_SKIP() << "this build has no NCCL";
  auto host = dist::make_single();
  auto nccl = dist::make_nccl(*host, 0);
  EXPECT_STREQ(nccl->backend(), "nccl");
  EXPECT_EQ(nccl->device(), test::kGPU);
  EXPECT_EQ(nccl->size(), 1);
  manual_seed(3);
  Tensor a = randn({1000});
  Tensor d = (a.to(test::kGPU) * 2.0).contiguous();  // queued just before the all-reduce reads it
  nccl->all_reduce(d.data<float>(), d.numel(), dist::Reduce::mean);
  Tensor e = d + 1.0;                                // queued after: sees the result
  EXPECT_EQ(e.to(kCPU).to_vector<float>(), (a * 2.0 + 1.0).to_vector<float>());
  auto pending = nccl->all_reduce_async(d.data<float>(), d.numel(), dist::Reduce::sum);
  pending->wait();
  EXPECT_EQ(d.to(kCPU).to_vector<float>(), (a * 2.0).to_vector<float>());
  Tensor b = Tensor::empty({7}, DType::f64, test::kGPU);
  fill_(b, 2.5);
  nccl->broadcast(b.raw_data(), 7 * 8, 0);
  nccl->all_reduce(b.data<double>(), 7, dist::Reduce::sum);
  EXPECT_EQ(b.to(kCPU).to_vector<double>(), std::vector<double>(7, 2.5));
  EXPECT_EQ(nccl->broadcast_string("on the host", 0), "on the host");
  expect_grad_sync_is_identity(*nccl, true);
  expect_grad_sync_is_identity(*nccl, false);
}

}  // namespace
