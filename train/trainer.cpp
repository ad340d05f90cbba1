// trainer.cpp — the training loop, its checkpoints and exact resume, the log, evaluation
// with a best model, SIGINT/SIGTERM handling, and data-parallel training over several ranks.
#include "train/trainer.h"

#include <omp.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/format.h>

#include "nn/checkpoint.h"
#include "dist/comm.h"
#include "nn/config.h"
#include "tensor/autocast.h"
#include "tensor/error.h"
#include "tensor/ops.h"
#include "tensor/profile.h"
#include "train/data_parallel.h"
#include "train/grad_sync.h"
#include "train/run_dir.h"

namespace copper::train {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- LoopConfig

nlohmann::json LoopConfig::to_json() const { return config::to_json(*this); }

LoopConfig LoopConfig::from_json(const nlohmann::json& js) {
  LoopConfig c;
  config::from_json(c, js, "LoopConfig");
  return c;
}

void LoopConfig::validate() const {
  COPPER_CHECK(steps >= 0, "train", "steps must be at least 0, got {}", steps);
  COPPER_CHECK(log_every >= 1, "train", "log_every must be at least 1, got {}", log_every);
  COPPER_CHECK(checkpoint_every >= 1, "train", "checkpoint_every must be at least 1, got {}", checkpoint_every);
  COPPER_CHECK(eval_every >= 0, "train", "eval_every must be at least 0 (0: no evaluation), got {}", eval_every);
  COPPER_CHECK(clip >= 0 && std::isfinite(clip), "train", "clip must be a finite number >= 0 (0: off), got {}", clip);
  COPPER_CHECK(dtype == "f32" || dtype == "bf16", "train",
               "dtype '{}' is not a training precision. HINT: use f32, or bf16 for mixed precision", dtype);
  schedule.validate();
}

// ---------------------------------------------------------------- signals

namespace {

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_stop_signal(int sig) { g_signal = sig; }

}  // namespace

// SIGINT and SIGTERM set g_signal while a run is in its loop; the previous handlers come
// back when it ends. A second signal gets the default action (SA_RESETHAND): a user who
// presses Ctrl-C twice does not wait for the checkpoint. (Outside the anonymous namespace:
// Trainer::Impl, a class of the header's namespace, holds one.)
class SignalGuard {
 public:
  SignalGuard() {
    g_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

namespace {

const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

// This process's command line without --fresh, quoted for a POSIX shell.
std::string own_command_without_fresh() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string arg, out;
  while (std::getline(in, arg, '\0')) {
    if (arg == "--fresh") continue;
    const bool plain = !arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                             "0123456789_-+=./:,@%") == std::string::npos;
    std::string q;
    if (plain) {
      q = arg;
    } else {
      q.push_back('\'');
      for (char c : arg) {
        if (c == '\'')
          q.append("'\\''");
        else
          q.push_back(c);
      }
      q.push_back('\'');
    }
    if (!out.empty()) out.push_back(' ');
    out.append(q);
  }
  return out.empty() ? "the same command without --fresh" : out;
}

// Keep the log lines of steps <= `step` (the ones a resumed run will not write again).
void truncate_log(const fs::path& log, int64_t step) {
  if (!fs::exists(log)) return;
  std::ifstream in(log);
  std::string kept, line;
  while (std::getline(in, line)) {
    try {
      auto js = nlohmann::json::parse(line);
      if (js.value("step", int64_t(0)) <= step) kept += line + "\n";
    } catch (const nlohmann::json::exception&) {
      // a half-written last line from a killed run: dropped
    }
  }
  nn::write_text_atomic(log.string(), kept);
}

double number_or_nan(const nlohmann::json& js, const char* key) {
  return js.contains(key) && js.at(key).is_number() ? js.at(key).get<double>() : NAN;
}
}  // namespace

// ---------------------------------------------------------------- Trainer

struct Trainer::Impl {
  Impl(nn::Module& m, DataSource& d, LoopConfig l, Hooks h, nlohmann::json c, nlohmann::json mc, std::string o,
       RunOptions op)
      : model(m),
        data(d),
        loop(std::move(l)),
        hooks(std::move(h)),
        config(std::move(c)),
        model_config(std::move(mc)),
        out(std::move(o)),
        work(out),
        opt(std::move(op)) {}
  nn::Module& model;
  DataSource& data;
  LoopConfig loop;
  Hooks hooks;
  nlohmann::json config, model_config;
  std::string out, work;
  RunOptions opt;
  bool staging = false, ran = false, completed = false, finished = false;
  bool lead = true;   // rank 0 (or the only process): the one that writes the run folder
  fs::path scratch;   // another rank's work_dir() (data_parallel: it writes nothing into the run folder)
  int64_t steps_done = 0;
  // Installed by run(); kept after a completed run until finish(), so that the caller's
  // evaluation can be interrupted cleanly too (check_interrupted).
  std::unique_ptr<SignalGuard> signals;

  // The Interrupted exception for signal `sig` after step `step`, naming the checkpoint.
  Interrupted interrupted(int sig, int64_t step, const std::string& what) const {
    const std::string ckpt_dir = (fs::path(work) / "checkpoints").string();
    const std::string where = nn::latest_checkpoint(ckpt_dir).value_or(ckpt_dir);
    std::string text = fmt::format("interrupted by {} {} step {}: checkpoint in {}", signal_name(sig), what, step, where);
    if (staging) text += fmt::format("\nthe finished run in '{}' is untouched until this one finishes", out);
    text += "\nresume with: " + (opt.resume_command.empty() ? own_command_without_fresh() : opt.resume_command);
    return Interrupted(sig, text);
  }
};

Trainer::Trainer(nn::Module& model, DataSource& data, const LoopConfig& loop, Hooks hooks, nlohmann::json config,
                 nlohmann::json model_config, std::string out_dir, RunOptions opt)
    : impl_(std::make_unique<Impl>(model, data, loop, std::move(hooks), std::move(config), std::move(model_config),
                                   detail::normalize_dir(out_dir), std::move(opt))) {
  COPPER_CHECK(!impl_->out.empty(), "train", "no output folder given. HINT: pass --out DIR");
  COPPER_CHECK(static_cast<bool>(impl_->hooks.loss), "train", "Hooks::loss is required");
  impl_->loop.validate();
}

Trainer::~Trainer() {
  if (!impl_->scratch.empty()) {
    std::error_code ec;  // best effort: a leftover scratch folder is harmless
    fs::remove_all(impl_->scratch, ec);
  }
}

void Trainer::check_interrupted() const {
  const Impl& s = *impl_;
  if (s.signals && g_signal != 0) throw s.interrupted(g_signal, s.steps_done, "after training, at");
}

const std::string& Trainer::work_dir() const { return impl_->work; }

RunResult Trainer::run() {
  Impl& s = *impl_;
  COPPER_CHECK(!s.ran, "train", "Trainer::run() called twice. HINT: make a new Trainer for another run");
  s.ran = true;
  const LoopConfig& L = s.loop;
  // Data parallel (docs/08-data-parallel.md): with several ranks, rank 0 alone owns the
  // output folder (plan, checkpoints, log, results) and prints; every rank trains.
  dist::Communicator& comm = dist::world();
  const int rank = comm.rank(), ranks = comm.size();
  const bool dp = ranks > 1, lead = rank == 0;
  s.lead = lead;
  std::FILE* msg = s.opt.quiet || !lead ? nullptr : s.opt.progress;

  nn::Module& model = s.model;
  COPPER_CHECK(model.device() == s.opt.device, "train",
               "the model is on {} but the run is set for {}. HINT: move it with model.to(device) before making the "
               "Trainer", model.device().str(), s.opt.device.str());
  // The weights and gradients travel through a communicator on the model's device: the host
  // one (MPI) for a model in host memory, NCCL between the ranks' GPUs for a model on a GPU.
  // `comm` carries everything else (settings, losses, the clock) on the host.
  std::unique_ptr<dist::Communicator> gpu_comm;
  if (dp && s.opt.device.type == DeviceType::cuda) gpu_comm = dist::make_nccl(comm, s.opt.device.index);
  dist::Communicator& tensor_comm = gpu_comm ? *gpu_comm : comm;
  COPPER_CHECK(!dp || tensor_comm.device() == s.opt.device, "train",
               "data-parallel training of a model on {} needs a communicator on that device, but {} works on {}. "
               "HINT: train on the CPU or on a GPU", s.opt.device.str(), tensor_comm.backend(),
               tensor_comm.device().str());
  model.train(true);
  auto params = model.named_parameters();
  auto optim = nn::make_optimizer(L.optim, params);
  if (dp) {  // before anything touches the folder: do all ranks run the same thing?
    nlohmann::json shapes = nlohmann::json::object();
    for (const auto& [name, t] : model.named_state()) shapes[name] = t.shape();
    dp::check_same(comm,
                   {{"config", s.config},
                    {"loop", L.to_json()},
                    {"tensors", shapes},
                    {"options",
                     {{"fresh", s.opt.fresh},
                      {"stop_after", s.opt.stop_after},
                      {"time_budget_s", s.opt.time_budget_s},
                      {"init_weights", s.opt.init_weights}}}},
                   "settings");
  }

  // The folder, on rank 0: plan it, clear or resume, load the checkpoint into the model and
  // optimizer. `start` says what every rank needs: the checkpoint's training state (null for
  // a new run), or that the run is already done, or rank 0's error.
  nlohmann::json start_js;
  auto prepare = [&]() -> nlohmann::json {
    detail::recover_swap(s.out);
    detail::RunDirPlan plan = detail::plan_run_dir(s.out, s.config, s.opt.fresh);
    s.work = plan.work;
    s.staging = plan.staging;
    if (plan.already_done) return {{"already_done", true}, {"results", plan.results}};
    const fs::path work(s.work), ckpt = work / "checkpoints", log = work / "log.jsonl";
    if (plan.clear) {
      if (s.staging) {
        fs::remove_all(work);
      } else {
        fs::remove_all(ckpt);
        fs::remove(log);
        fs::remove(work / "model.safetensors");
      }
    }
    fs::create_directories(work);
    if (s.staging && msg)
      fmt::print(msg, "{}'{}' holds a finished run; this one trains in '{}' and replaces it when it finishes\n",
                 s.opt.label, s.out, s.work);
    nlohmann::json st = nullptr, from = nullptr;
    if (auto latest = nn::latest_checkpoint(ckpt.string())) {
      st = nn::load_training_checkpoint(*latest, model.named_state(), s.config, *optim);
      COPPER_CHECK(st.is_object() && st.contains("step") && st.contains("data") && st.contains("dropout_rng"),
                   "train",
                   "checkpoint '{}' lacks the step, data position or dropout generator state. HINT: start over with "
                   "--fresh",
                   *latest);
      from = *latest;
      truncate_log(log, st.at("step").get<int64_t>());
    } else {
      fs::remove(log);
      fs::remove_all(ckpt / "best");
      if (!s.opt.init_weights.empty()) {  // a new run from given weights (a resumed one has its own)
        nn::LoadedModel init = nn::load_model(s.opt.init_weights);
        nn::copy_weights_into(s.opt.init_weights, init.weights, model.named_state(), true);
      }
    }
    nn::write_text_atomic((work / "config.json").string(), s.config.dump(2) + "\n");
    return {{"already_done", false}, {"state", st}, {"from", from}};
  };
  if (!dp) {
    start_js = prepare();
  } else {
    std::string error;
    if (lead) {
      try {
        start_js = prepare();
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    // rank 0's outcome on every rank; an error stops all of them with rank 0's message
    const nlohmann::json got = nlohmann::json::parse(
        comm.broadcast_string(error.empty() ? start_js.dump() : nlohmann::json{{"error", error}}.dump(), 0));
    if (got.contains("error")) {
      if (lead) throw Error(error);
      COPPER_THROW("train", "rank 0 could not start the run: {}", got.at("error").get<std::string>());
    }
    start_js = got;
  }

  RunResult result;
  if (start_js.at("already_done").get<bool>()) {
    const nlohmann::json& res = start_js.at("results");
    if (msg)
      fmt::print(msg, "{}'{}' holds this run, complete (results.json); nothing to do. HINT: --fresh retrains it\n",
                 s.opt.label, s.out);
    result.completed = true;
    result.already_done = true;
    result.results = res;
    result.steps = res.value("steps", int64_t(0));
    result.train_seconds = res.value("train_seconds", 0.0);
    result.final_loss = number_or_nan(res, "final_loss");
    return result;
  }
  if (dp) dp::broadcast_weights_and_optimizer(tensor_comm, model.named_state(), *optim);
  if (!lead) {
    // Ranks other than 0 write nothing into the run folder. What a caller saves into
    // work_dir() after training (the LM's tokenizer) goes to a scratch folder of this rank,
    // removed with the Trainer.
    s.scratch = fs::temp_directory_path() / fmt::format("copper-rank{}-{}", rank, ::getpid());
    fs::create_directories(s.scratch);
    s.work = s.scratch.string();
  }
  const fs::path dir(s.work), ckpt_dir = dir / "checkpoints", best_dir = ckpt_dir / "best", log_path = dir / "log.jsonl";

  const int threads = omp_get_max_threads();
  manual_seed(stream_seed(L.seed, kDropoutStream));
  int64_t start = 0, tokens_total = 0;
  double prior_s = 0;  // training seconds before this process (a resumed time-budget run)
  double last_loss = NAN;
  // The losses since the last log line: saved too, so that a run resumed between two log
  // lines logs the same means (and final loss) as an uninterrupted one.
  double loss_sum = 0;
  int64_t loss_n = 0;
  nlohmann::json best_eval = nullptr;
  if (const nlohmann::json& st = start_js.at("state"); st.is_object()) {
    start = st.at("step").get<int64_t>();
    prior_s = st.value("elapsed_s", 0.0);
    tokens_total = st.value("tokens", int64_t(0));
    last_loss = number_or_nan(st, "last_loss");
    loss_sum = st.value("loss_sum", 0.0);
    loss_n = st.value("loss_n", int64_t(0));
    best_eval = st.value("best_eval", nlohmann::json());
    s.data.restore(st.at("data"));
    nn::generator_from_json(default_generator(), st.at("dropout_rng"));
    const int saved_threads = st.value("threads", threads);
    const int saved_ranks = st.value("ranks", 1);
    std::string note;
    if (saved_ranks != ranks)
      note = fmt::format("; note: saved with {} ranks, now {}: equal up to the order of the gradient sums",
                         saved_ranks, ranks);
    else if (saved_threads != threads)
      note = fmt::format("; note: saved with {} threads, now {}: not bit-identical", saved_threads, threads);
    if (msg)
      fmt::print(msg, "{}resuming from {} (step {}/{}){}\n", s.opt.label, start_js.at("from").get<std::string>(), start,
                 L.steps, note);
  }

  // Gradient averaging over ranks (train/grad_sync.h), overlapped with backward() unless
  // COPPER_DP_OVERLAP=0.
  std::unique_ptr<GradSync> sync;
  if (dp) {
    const char* ov = std::getenv("COPPER_DP_OVERLAP");
    sync = std::make_unique<GradSync>(tensor_comm, params, !(ov && std::string(ov) == "0"));
    if (msg)
      fmt::print(msg,
                 "{}data parallel: {} ranks ({}), {} on this machine, {} threads each; gradients averaged in {} "
                 "buckets{}\n",
                 s.opt.label, ranks, tensor_comm.backend(), comm.local_size(), threads, sync->buckets(),
                 ov && std::string(ov) == "0" ? " after the backward pass" : ", overlapped with the backward pass");
  }

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(clock::now() - t0).count(); };
  auto save_ckpt = [&](int64_t step) {
    if (dp) {  // the ranks' weights must still be the same bits (each applies the same update)
      const uint64_t h = dp::hash_tensors(model.named_state());
      dp::check_same(comm, {{"weights_hash", std::to_string(h)}}, fmt::format("weights after step {}", step));
    }
    if (!lead) return;
    nlohmann::json st = {{"step", step},
                         {"elapsed_s", prior_s + seconds()},
                         {"tokens", tokens_total},
                         {"last_loss", last_loss},
                         {"loss_sum", loss_sum},
                         {"loss_n", loss_n},
                         {"best_eval", best_eval},
                         {"data", s.data.state()},
                         {"dropout_rng", nn::generator_to_json(default_generator())},
                         {"threads", threads},
                         {"ranks", ranks}};
    nn::save_training_checkpoint(ckpt_dir.string(), step, model.named_state(), s.config, *optim, st);
  };

  std::FILE* log = nullptr;
  if (lead) {
    log = std::fopen(log_path.string().c_str(), "a");
    COPPER_CHECK(log != nullptr, "train", "cannot open '{}' for appending. HINT: is the folder writable?",
                 log_path.string());
  }
  struct LogCloser {
    std::FILE* f;
    ~LogCloser() {
      if (f) std::fclose(f);
    }
  } log_closer{log};

  // Evaluation (rank 0 only): the caller's metrics in the log, and the best model (lowest
  // "loss") kept in checkpoints/best/, replaced whole: written beside it, then renamed into place.
  auto evaluate = [&](int64_t step) -> nlohmann::json {
    nlohmann::json ev = s.hooks.evaluate();
    model.train(true);  // the hook may have switched the model to evaluation mode
    fmt::print(log, "{}\n", nlohmann::json{{"step", step}, {"eval", ev}}.dump());
    std::fflush(log);
    const double v = number_or_nan(ev, "loss");
    const double best = best_eval.is_object() ? number_or_nan(best_eval, "loss") : NAN;
    if (std::isfinite(v) && !(v >= best)) {
      best_eval = ev;
      best_eval["step"] = step;
      const fs::path tmp = ckpt_dir / "best.tmp", old = ckpt_dir / "best.old";
      fs::remove_all(tmp);
      fs::create_directories(tmp);
      nn::save_model((tmp / "model.safetensors").string(), model.named_state(), s.model_config);
      nn::write_text_atomic((tmp / "eval.json").string(), best_eval.dump(2) + "\n");
      fs::remove_all(old);
      if (fs::exists(best_dir)) fs::rename(best_dir, old);
      fs::rename(tmp, best_dir);
      fs::remove_all(old);
    }
    if (msg)
      fmt::print(msg, "{}{}eval at step {}: {}\n", Progress::is_terminal(msg) ? "\r\033[K" : "", s.opt.label, step,
                 ev.dump());
    return ev;
  };

  // With a time budget the run ends when the budget is spent and the schedule follows the
  // fraction of the budget used so far, so it always reaches its end whatever the speed.
  // With several ranks, rank 0's clock decides for all (they must agree on the lr and the end).
  const double budget = s.opt.time_budget_s;
  const bool timed = budget > 0;
  int64_t steps = !timed ? L.steps : prior_s < budget ? std::numeric_limits<int64_t>::max() : start;
  Progress progress(s.opt.progress, s.opt.label + "step ", timed ? 0 : L.steps, s.opt.quiet || !lead, 1, start);
  const bool live = msg && Progress::is_terminal(s.opt.progress);
  int64_t tokens = 0;  // this process's (all ranks' with several), for the throughput
  int64_t saved_at = start;
  int64_t dp_steps = 0;  // steps since the last log line, for the all-reduce times per step
  s.signals = std::make_unique<SignalGuard>();
  const DType product_dtype = dtype_from_name(L.dtype);
  for (int64_t step = start; step < steps; ++step) {
    Batch batch = s.data.batch(step);  // the global batch, the same on every rank
    Batch mine = batch;
    double now_s = seconds(), weight = 1;
    std::array<uint64_t, 6> dropout_state{};
    if (dp) {
      mine = dp::shard(batch, rank, ranks);
      if (step == start)  // the same data on every rank? (same files, tokenizer, seed)
        dp::check_same(comm, {{"first_batch_hash", std::to_string(dp::hash_tensors({{"ids", batch.ids}, {"targets", batch.targets}}))}},
                       fmt::format("training data (the batch of step {})", step));
      // Each rank's loss is a mean over its own counted targets; weighting its gradient by
      // its share of all counted targets makes the mean over ranks the global batch's mean.
      const double local = double(dp::counted_targets(mine.targets));
      double agree[2] = {local, lead ? now_s : 0.0};
      comm.all_reduce(agree, 2, dist::Reduce::sum);
      COPPER_CHECK(local > 0, "train", "rank {}'s rows of the batch of step {} have no targets the loss counts. HINT: "
                   "use fewer ranks or a larger batch", rank, step);
      weight = local * ranks / agree[0];
      now_s = agree[1];
      // Dropout: rank r draws its masks from its own stream, forked from the run's dropout
      // generator, which moves by one draw per step on every rank (so that the checkpoint's
      // generator state does not depend on the number of ranks).
      const uint64_t fork = default_generator().next_u64();
      dropout_state = default_generator().state();
      default_generator().seed_(stream_seed(fork, uint64_t(rank)));
    }
    optim->set_lr(timed ? L.schedule.lr_at_fraction((prior_s + now_s) / budget) : L.schedule.lr_at(step));
    AutocastGuard precision(product_dtype);
    Tensor loss = s.hooks.loss(mine);
    optim->zero_grad();
    if (dp) {
      sync->begin();
      loss.backward(full(loss.shape(), weight, loss.dtype()));
      sync->finish();
      default_generator().set_state(dropout_state);
      ++dp_steps;
    } else {
      loss.backward();
    }
    if (L.clip > 0) nn::clip_grad_norm(params, L.clip);
    optim->step();
    profile::count_step();
    double step_loss = loss.item() * weight;
    int sig = g_signal;
    double el = seconds();
    if (dp) {  // the global loss, and whether any rank was signalled or rank 0 is out of time
      double agree[3] = {step_loss, sig != 0 ? 1.0 : 0.0, lead ? el : 0.0};
      comm.all_reduce(agree, 3, dist::Reduce::sum);
      step_loss = agree[0] / ranks;
      if (sig == 0 && agree[1] > 0) sig = SIGTERM;  // what mpirun and srun forward
      el = agree[2];
    }
    loss_sum += step_loss;
    ++loss_n;
    tokens += batch.tokens;
    tokens_total += batch.tokens;
    const int64_t done = step + 1;
    if (timed && prior_s + el >= budget) steps = done;  // out of time: the last step
    const bool log_now = done % L.log_every == 0 || done == steps;
    const double tps = double(tokens) / std::max(el, 1e-9);
    if (log_now) {
      last_loss = loss_sum / double(loss_n);
      nlohmann::json line = {{"step", done},        {"loss", last_loss},  {"lr", optim->lr()},
                             {"tokens", tokens_total}, {"tokens_per_s", tps}, {"elapsed_s", prior_s + el}};
      if (dp) {  // rank 0's time in the gradient all-reduce, per step
        const GradSyncStats st = sync->take_stats();
        const double n = double(std::max<int64_t>(dp_steps, 1));
        line["ranks"] = ranks;
        line["allreduce_wait_ms"] = 1000 * st.finish_s / n;
        line["allreduce_hook_ms"] = 1000 * st.hook_s / n;
        line["allreduce_overlapped"] = st.buckets ? double(st.overlapped) / double(st.buckets) : 0.0;
        dp_steps = 0;
      }
      if (log) {
        fmt::print(log, "{}\n", line.dump());
        std::fflush(log);
      }
    }
    if (log_now || live) {  // a terminal's line follows every step (the mean loss since the last log line)
      const int64_t rows = batch.ids.size(0);
      progress.update(done,
                      fmt::format("loss {:.4f}  lr {:.2e}  {:.0f} tok/s  {:.1f} ms/step{}",
                                  log_now ? last_loss : loss_sum / double(loss_n), optim->lr(), tps,
                                  1000 * el / double(done - start),
                                  dp ? fmt::format("  {} ranks x {} rows = batch {}", ranks, mine.ids.size(0), rows)
                                     : ""),
                      timed ? std::max(0.0, budget - prior_s - el) : -1);
    }
    if (log_now) {
      loss_sum = 0;
      loss_n = 0;
    }
    if (lead && s.hooks.evaluate && L.eval_every > 0 && (done % L.eval_every == 0 || done == steps)) {
      const nlohmann::json ev = evaluate(done);
      if (done == steps) result.last_eval = ev;
    }
    if (done % L.checkpoint_every == 0 || done == steps) {
      save_ckpt(done);
      saved_at = done;
    }
    if (done == s.opt.stop_after) {
      result.steps = done;
      result.train_seconds = prior_s + seconds();
      result.final_loss = last_loss;
      result.best_eval = best_eval;
      s.signals.reset();
      return result;  // as if killed here: completed stays false
    }
    if (sig != 0) {
      if (saved_at != done) save_ckpt(done);
      progress.finish();
      Interrupted e = s.interrupted(sig, done, "at");
      s.signals.reset();
      throw e;
    }
  }
  if (steps > start) progress.finish();
  s.steps_done = steps;
  s.completed = true;
  result.completed = true;
  result.steps = steps;
  result.train_seconds = prior_s + seconds();
  result.final_loss = last_loss;
  result.best_eval = best_eval;
  return result;
}

void Trainer::finish(const nlohmann::json& results) {
  Impl& s = *impl_;
  COPPER_CHECK(s.completed && !s.finished, "train",
               "Trainer::finish() must follow a run() that trained to the end (not stopped, not already done), once");
  s.finished = true;
  s.signals.reset();
  if (!s.lead) return;  // rank 0 writes the results
  const fs::path dir(s.work);
  nn::save_model((dir / "model.safetensors").string(), s.model.named_state(), s.model_config);
  nn::write_text_atomic((dir / "results.json").string(), results.dump(2) + "\n");
  if (s.staging) {
    detail::publish_staging(s.out);
    s.work = s.out;
    s.staging = false;
  }
}

}  // namespace copper::train
