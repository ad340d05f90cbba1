// cli_demo.cpp — `copper demo`: what `make demo` runs.
//
// The default demo is the paper in small, on the task where the difference shows in a few
// minutes on 2 cores: selective copy (content tokens scattered among blanks, to be copied in
// order after a separator). One model per position encoding (absolute, RoPE, CoPE) trains
// on inputs with a fixed number of blanks and is tested on fresh inputs with that number
// (in-distribution), half of it (dense) and twice it (sparse). Absolute and RoPE positions
// count every token, blanks included, so their learned offsets are wrong once the blank
// count changes; a CoPE head can count only the content tokens and is unaffected. The demo
// prints the table of errors and then what one CoPE head counts (its gates per token type).
// The models train side by side, as many at a time as there are cores, each in a child
// process (this program run as `copper task train`) with one thread: a model this small
// gains almost nothing from a second thread, but two models on two cores take the time of one.
// `--xor` runs the first demo instead: a small MLP learning XOR with copper's tensors and
// autograd (examples/xor_mlp.h; also the standalone build/bin/example_xor_mlp).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "examples/cli/commands.h"
#include "examples/cli/config_flags.h"
#include "autograd/grad_mode.h"
#include "examples/xor_mlp.h"
#include "tasks/compare.h"
#include "tensor/error.h"

namespace copper::cli {

namespace fs = std::filesystem;

namespace {
constexpr const char* kDemoTask = "selective-copy";
constexpr const char* kDemoPreset = "demo";
const std::vector<std::string> kDemoEncodings{"abs", "rope", "cope"};
// Seed 0 put CoPE's 300 steps at the edge of a plateau: whether it learned the task by then
// changed with the last bits of the attention's rounding (docs/RESULTS.md, "The demo").
constexpr uint64_t kDemoSeed = 1;
// Held-out examples for the gate read-out, and lines of the data file the closing hint uses.
constexpr int64_t kGateExamples = 50;
constexpr int64_t kHintExamples = 5;
constexpr uint64_t kHintSeed = 7;
// A head whose mean gate on letters exceeds that on blanks by more than this counts letters.
constexpr double kSeparates = 0.2;
// Above this in-distribution error a run has not learned the task at all.
constexpr double kUnlearned = 0.5;

// The path of this program as the user can type it: relative to the working directory when
// it lies below it (build/bin/copper; ./copper for one in the working directory itself), else
// absolute. `copper` itself is not on the PATH.
std::string self_path() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "build/bin/copper";
  const fs::path rel = exe.lexically_relative(fs::current_path(ec));
  if (ec || rel.empty() || *rel.begin() == "..") return exe.string();
  return rel.has_parent_path() ? rel.string() : "./" + rel.string();
}

// The folder of one encoding's run inside the demo's output folder.
std::string run_dir(const std::string& out_dir, const std::string& pe) {
  return (fs::path(out_dir) / fmt::format("{}-seed{}", pe, kDemoSeed)).string();
}

// The CPUs this process may run on.
int available_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return CPU_COUNT(&set);
}

// Start this program again with `args`, one OpenMP and one BLAS thread, its standard output
// discarded (a quiet run prints only its result line; the demo prints its own) and its errors
// shown. Returns the child's pid.
pid_t spawn_self(const std::vector<std::string>& args) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    if (kv.rfind("OMP_NUM_THREADS=", 0) != 0 && kv.rfind("OPENBLAS_NUM_THREADS=", 0) != 0) env_strings.push_back(kv);
  }
  env_strings.push_back("OMP_NUM_THREADS=1");
  env_strings.push_back("OPENBLAS_NUM_THREADS=1");
  const std::string exe = "/proc/self/exe";
  std::vector<char*> argv{const_cast<char*>(exe.c_str())}, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw Error(fmt::format("[demo] cannot start {}: {}", exe, std::strerror(rc)));
  return pid;
}

// Stop the children still running (SIGTERM: each writes its checkpoint and exits) and wait
// for them, so that none outlives the demo.
void stop_children(const std::map<pid_t, std::string>& running) {
  for (const auto& [pid, pe] : running) kill(pid, SIGTERM);
  for (const auto& [pid, pe] : running) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

// Mean CoPE gate of the last query per key token, for one head, over a set of examples.
struct HeadGates {
  size_t layer = 0, head = 0;
  std::vector<double> mean;  // per token id (NAN: the token never occurs)
  double letters = 0, blanks = 0;
};

// The CoPE head that separates letters from blanks most (mean gate on letter keys minus mean
// gate on blank keys), with its mean gate per token. Selective copy's vocabulary is the
// letters, then the blank '_', then the separator '|'.
HeadGates letters_vs_blanks(nn::TransformerLM& model, const tasks::Task& task, const std::vector<tasks::Example>& ex) {
  const int64_t V = task.vocab_size(), blank = task.token_id("_"), sep = task.token_id("|");
  // sum[layer][head][token] and count[token]
  std::vector<std::vector<std::vector<double>>> sum;
  std::vector<double> count(size_t(V), 0);
  NoGradGuard no_grad;
  model.eval();
  model.set_record_attention(true);  // CoPE keeps its gates only then (the fused path makes none)
  for (const auto& e : ex) {
    const tasks::Batch b = tasks::make_batch({e}, 0, 1, model.config().context);
    model.forward(b.ids);
    const auto gates = model.cope_gates();  // per CoPE layer (1, H, T, T)
    const auto ids = b.ids.to_vector<int64_t>();
    const int64_t T = int64_t(ids.size());
    COPPER_CHECK(!gates.empty(), "demo", "the model has no CoPE layer (pe = '{}')", model.config().pe);
    if (sum.empty())
      sum.assign(gates.size(),
                 std::vector<std::vector<double>>(size_t(gates[0].size(1)), std::vector<double>(size_t(V), 0)));
    for (size_t l = 0; l < gates.size(); ++l) {
      const Tensor row = gates[l].select(0, 0).select(1, T - 1).to(DType::f64).contiguous();  // (H, T)
      const auto g = row.to_vector<double>();
      for (size_t h = 0; h < sum[l].size(); ++h)
        for (int64_t j = 0; j < T; ++j) sum[l][h][size_t(ids[size_t(j)])] += g[h * size_t(T) + size_t(j)];
    }
    for (int64_t id : ids) count[size_t(id)] += 1;
  }
  model.set_record_attention(false);
  HeadGates best;
  double best_gap = -2;
  for (size_t l = 0; l < sum.size(); ++l)
    for (size_t h = 0; h < sum[l].size(); ++h) {
      HeadGates hg{l, h, std::vector<double>(size_t(V), NAN), 0, 0};
      double letter_sum = 0, letter_n = 0;
      for (int64_t t = 0; t < V; ++t) {
        if (count[size_t(t)] == 0) continue;
        hg.mean[size_t(t)] = sum[l][h][size_t(t)] / count[size_t(t)];
        if (t != blank && t != sep) {
          letter_sum += sum[l][h][size_t(t)];
          letter_n += count[size_t(t)];
        }
      }
      hg.letters = letter_n > 0 ? letter_sum / letter_n : 0;
      hg.blanks = count[size_t(blank)] > 0 ? hg.mean[size_t(blank)] : 0;
      if (hg.letters - hg.blanks > best_gap) {
        best_gap = hg.letters - hg.blanks;
        best = hg;
      }
    }
  return best;
}

// The gate picture: one bar per token (most counted first), then what it means.
std::string gate_picture(const HeadGates& hg, const tasks::Task& task, size_t n_examples, const std::string& split) {
  constexpr double kBarWidth = 40;
  std::string out = fmt::format(
      "What CoPE counts: layer {} head {}, the gate of the last query on each earlier token, by token, mean over {} "
      "inputs of {} (a gate near 1: the token counts as one position, near 0: it is skipped)\n",
      hg.layer, hg.head, n_examples, split);
  std::vector<std::pair<double, std::string>> rows;
  for (size_t t = 0; t < hg.mean.size(); ++t)
    if (!std::isnan(hg.mean[t])) rows.emplace_back(hg.mean[t], task.vocab()[t]);
  std::sort(rows.rbegin(), rows.rend());
  for (const auto& [m, tok] : rows)
    out += fmt::format("  {:>3}  {:.3f}  {}\n", tok, m, std::string(size_t(m * kBarWidth + 0.5), '#'));
  if (hg.letters - hg.blanks > kSeparates)
    out += fmt::format(
        "Letters {:.2f} on average, blanks {:.2f}: the head counts letters and skips blanks, so the position it gives "
        "a letter does not change when the number of blanks does.\n",
        hg.letters, hg.blanks);
  else
    out += fmt::format("Letters {:.2f} on average, blanks {:.2f}: no head separates them yet; it needs more training.\n",
                       hg.letters, hg.blanks);
  return out;
}

double mean_ood_error(const nlohmann::json& res) {
  double sum = 0;
  int n = 0;
  for (auto& [split, err] : res.at("error").items())
    if (split != "in") {
      sum += err.get<double>();
      ++n;
    }
  return n ? sum / n : 0;
}

// The demo preset's config for one encoding; `steps` (--steps) replaces its step count.
tasks::TrainConfig demo_config(const std::string& pe, std::optional<int64_t> steps) {
  tasks::TaskConfig task;
  task.task = kDemoTask;
  tasks::TrainConfig cfg = tasks::preset_config(kDemoPreset, task, pe);
  if (steps) tasks::set_steps(cfg, *steps);
  cfg.seed = kDemoSeed;
  return cfg;
}

// One paragraph under the table: how far CoPE is ahead out of distribution, and what a
// short run leaves out (abs and RoPE learn the in-distribution task only with more steps).
std::string verdict(const nlohmann::json& cmp) {
  double cope_ood = 0, best_other_ood = 1, worst_other_in = 0;
  std::string others;
  for (const auto& r : cmp.at("runs")) {
    const std::string pe = r.at("pe");
    const double ood = mean_ood_error(r), in = r.at("error").at("in").get<double>();
    if (pe == "cope") {
      cope_ood = ood;
      continue;
    }
    best_other_ood = std::min(best_other_ood, ood);
    worst_other_in = std::max(worst_other_in, in);
    others += fmt::format("{}{} {:.1f} %", others.empty() ? "" : ", ", pe, 100 * ood);
  }
  std::string out =
      cope_ood < best_other_ood
          ? fmt::format("Out of distribution CoPE errs on {:.1f} % of the inputs ({}): it generalises to other blank "
                        "counts, the others do not.\n",
                        100 * cope_ood, others)
          : fmt::format("Out of distribution CoPE errs on {:.1f} % of the inputs ({}): not ahead in this run; "
                        "`copper task compare --task selective-copy --seeds 3` trains longer.\n",
                        100 * cope_ood, others);
  tasks::TaskConfig task;
  task.task = kDemoTask;
  const int64_t longer = tasks::preset_config("cpu-small", task, "abs").steps;
  if (worst_other_in > kUnlearned)
    out += fmt::format("In this short run absolute and RoPE positions do not learn even the in-distribution task; "
                       "with {} steps (the cpu-small preset) they do, and still fail out of distribution "
                       "(docs/RESULTS.md).\n",
                       longer);
  return out;
}

void run_selective_copy_demo(const std::string& out_dir, std::optional<int64_t> steps, std::FILE* out) {
  const tasks::TrainConfig probe = demo_config("cope", steps);
  const auto splits = tasks::make_task(probe.task)->splits();
  fmt::print(out,
             "copper demo: selective copy. {} content tokens (letters) are scattered among {} blanks '_'; after the "
             "separator '|' the model writes the letters in order. A {}-layer, width-{} transformer trains {} steps "
             "with each position encoding, then is tested on fresh inputs with {} blanks (in-distribution), {} "
             "(ood_dense) and {} (ood_sparse).\n",
             probe.task.content, probe.task.blanks, probe.model.n_layers, probe.model.d_model, probe.steps,
             splits[0].second.blanks, splits[1].second.blanks, splits[2].second.blanks);
  fmt::print(out, "Absolute and RoPE positions count every token, blanks too; a CoPE head can learn to count only the "
                  "letters.\n\n");
  std::fflush(out);

  nlohmann::json cmp = {{"task", kDemoTask}, {"preset", kDemoPreset}, {"steps", probe.steps},
                        {"runs", nlohmann::json::array()}, {"splits", nlohmann::json::array()}};
  for (auto& [name, cfg] : splits) cmp["splits"].push_back(name);
  const size_t jobs = std::min<size_t>(kDemoEncodings.size(), size_t(std::max(1, available_cpus())));
  fmt::print(out, "Training the {} models {} at a time, one thread each (a model this small trains no faster on two):\n",
             kDemoEncodings.size(), jobs);
  std::fflush(out);
  const auto t0 = std::chrono::steady_clock::now();
  std::map<std::string, nlohmann::json> results;
  std::map<pid_t, std::string> running;
  size_t next = 0;
  while (next < kDemoEncodings.size() || !running.empty()) {
    while (running.size() < jobs && next < kDemoEncodings.size()) {
      const std::string& pe = kDemoEncodings[next++];
      std::vector<std::string> args{"task", "train", "--task", kDemoTask, "--pe", pe, "--preset", kDemoPreset,
                                    "--seed", std::to_string(kDemoSeed), "--out", run_dir(out_dir, pe),
                                    "--fresh", "--quiet"};
      if (steps) args.insert(args.end(), {"--steps", std::to_string(*steps)});
      running[spawn_self(args)] = pe;
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw Error(fmt::format("[demo] waitpid failed: {}", std::strerror(errno)));
    }
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    const std::string pe = it->second;
    running.erase(it);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      stop_children(running);  // the demo ends here: no run goes on training behind it
      throw ExitError(code >= 128 ? code : kExitRuntime,
                      fmt::format("the {} run of the demo stopped with exit code {} (its messages are above)", pe, code));
    }
    const nlohmann::json res = read_json_file((fs::path(run_dir(out_dir, pe)) / "results.json").string(), "demo");
    fmt::print(out, "  {:<5} {:>4.0f} s   in-distribution error {:5.1f} %, out of distribution {:5.1f} %\n", pe,
               res.value("train_seconds", 0.0), 100 * res.at("error").at("in").get<double>(),
               100 * mean_ood_error(res));
    std::fflush(out);
    results[pe] = res;
  }
  for (const std::string& pe : kDemoEncodings) cmp["runs"].push_back(results.at(pe));
  fmt::print(out, "  all {} in {:.0f} s\n", kDemoEncodings.size(),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  fmt::print(out, "\n{}\n{}\n", tasks::comparison_table(cmp), verdict(cmp));

  // What the CoPE model counts, on inputs of the sparse split (twice the blanks it saw).
  const fs::path cope_dir = run_dir(out_dir, "cope");
  tasks::TrainedModel m = tasks::load_trained(cope_dir.string());
  const auto& [sparse_name, sparse_cfg] = splits.back();
  const auto ex = tasks::heldout_examples(sparse_cfg, kHintSeed, 0, kGateExamples);
  fmt::print(out, "{}\n", gate_picture(letters_vs_blanks(*m.model, *m.task, ex), *m.task, ex.size(), sparse_name));

  const fs::path hint_data = fs::path(out_dir) / (sparse_name + ".txt");
  auto sparse_task = tasks::make_task(sparse_cfg);
  tasks::write_examples(*sparse_task, {ex.begin(), ex.begin() + kHintExamples}, hint_data.string());
  fmt::print(out, "Try: {} task gates --model {} --data {}   (every gate of one example)\n", self_path(),
             cope_dir.string(), hint_data.string());
}
}  // namespace

// The XOR demo as a function: returns the exit code.
int run_xor_demo(const examples::XorConfig& cfg) {
  fmt::print("copper demo: a 2-{}-1 MLP learns XOR with full-batch SGD (lr {}, {} steps)\n", cfg.hidden, cfg.lr,
             cfg.steps);
  const auto t0 = std::chrono::steady_clock::now();
  examples::XorResult r = examples::train_xor_mlp(cfg, stdout);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("{} steps in {:.2f} s\n", cfg.steps, s);
  return r.solved ? kExitOk : kExitRuntime;
}

void add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo",
                                 "selective copy with abs, rope and cope position encodings: CoPE generalises to "
                                 "other blank counts, the others do not (what `make demo` runs; about 1.5 minutes on 2 "
                                 "cores); --xor: an MLP learns XOR");
  auto cfg = std::make_shared<examples::XorConfig>();
  auto xor_flag = std::make_shared<bool>(false);
  auto out_dir = std::make_shared<std::string>("runs/demo");
  auto steps = std::make_shared<std::optional<int64_t>>();
  cmd->add_flag("--xor", *xor_flag, "Run the XOR MLP demo instead (the options below --steps apply to it)");
  cmd->add_option("--out", *out_dir, "selective-copy demo: folder for the three runs")->capture_default_str();
  cmd->add_option("--steps", *steps,
                  fmt::format("training steps of each run (default {}; with --xor: SGD steps, default {})",
                              demo_config("cope", std::nullopt).steps, cfg->steps))
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lr", cfg->lr, "Learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--hidden", cfg->hidden, "Hidden units")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--seed", cfg->seed, "Seed of the initial weights")->check(seed_check())->capture_default_str();
  cmd->add_option("--log-every", cfg->log_every, "Print the loss every N steps")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->callback([cfg, xor_flag, out_dir, steps] {
    if (!*xor_flag) {
      const std::string problem = out_dir_problem("--out", *out_dir);
      if (!problem.empty()) throw ExitError(kExitUsage, problem);
      run_selective_copy_demo(*out_dir, *steps, stdout);
      return;
    }
    if (*steps) cfg->steps = **steps;
    const int rc = run_xor_demo(*cfg);
    // ExitError, not CLI::RuntimeError: main() treats every CLI11 error as a usage error.
    if (rc != kExitOk) throw ExitError(rc, "the MLP did not learn XOR");
  });
}

}  // namespace copper::cli
