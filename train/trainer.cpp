// trainer.cpp — the training loop, its checkpoints and exact resume, the log, evaluation
// with a best model, and SIGINT/SIGTERM handling.
#include "train/trainer.h"

#include <omp.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/format.h>

#include "nn/checkpoint.h"
#include "nn/config.h"
#include "tensor/error.h"
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
  schedule.validate();
}

// ---------------------------------------------------------------- signals

namespace {

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_stop_signal(int sig) { g_signal = sig; }

// SIGINT and SIGTERM set g_signal while a run is in its loop; the previous handlers come
// back when it ends. A second signal gets the default action (SA_RESETHAND): a user who
// presses Ctrl-C twice does not wait for the checkpoint.
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

Trainer::~Trainer() = default;

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
  std::FILE* msg = s.opt.quiet ? nullptr : s.opt.progress;

  detail::recover_swap(s.out);
  detail::RunDirPlan plan = detail::plan_run_dir(s.out, s.config, s.opt.fresh);
  s.work = plan.work;
  s.staging = plan.staging;
  RunResult result;
  if (plan.already_done) {
    if (msg)
      fmt::print(msg, "{}'{}' holds this run, complete (results.json); nothing to do. HINT: --fresh retrains it\n",
                 s.opt.label, s.out);
    result.completed = true;
    result.already_done = true;
    result.results = plan.results;
    result.steps = plan.results.value("steps", int64_t(0));
    result.train_seconds = plan.results.value("train_seconds", 0.0);
    result.final_loss = number_or_nan(plan.results, "final_loss");
    return result;
  }

  const fs::path dir(s.work), ckpt_dir = dir / "checkpoints", best_dir = ckpt_dir / "best", log_path = dir / "log.jsonl";
  if (plan.clear) {
    if (s.staging) {
      fs::remove_all(dir);
    } else {
      fs::remove_all(ckpt_dir);
      fs::remove(log_path);
      fs::remove(dir / "model.safetensors");
    }
  }
  fs::create_directories(dir);
  if (s.staging && msg)
    fmt::print(msg, "{}'{}' holds a finished run; this one trains in '{}' and replaces it when it finishes\n",
               s.opt.label, s.out, s.work);

  const int threads = omp_get_max_threads();
  nn::Module& model = s.model;
  model.train(true);
  auto params = model.named_parameters();
  auto optim = nn::make_optimizer(L.optim, params);
  manual_seed(stream_seed(L.seed, kDropoutStream));

  int64_t start = 0, tokens_total = 0;
  double prior_s = 0;  // training seconds before this process (a resumed time-budget run)
  double last_loss = NAN;
  // The losses since the last log line: saved too, so that a run resumed between two log
  // lines logs the same means (and final loss) as an uninterrupted one.
  double loss_sum = 0;
  int64_t loss_n = 0;
  nlohmann::json best_eval = nullptr;
  if (auto latest = nn::latest_checkpoint(ckpt_dir.string())) {
    auto st = nn::load_training_checkpoint(*latest, model.named_state(), s.config, *optim);
    COPPER_CHECK(st.is_object() && st.contains("step") && st.contains("data") && st.contains("dropout_rng"), "train",
                 "checkpoint '{}' lacks the step, data position or dropout generator state. HINT: start over with "
                 "--fresh",
                 *latest);
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
    if (msg)
      fmt::print(msg, "{}resuming from {} (step {}/{}){}\n", s.opt.label, *latest, start, L.steps,
                 saved_threads != threads
                     ? fmt::format("; note: saved with {} threads, now {}: not bit-identical", saved_threads, threads)
                     : "");
    truncate_log(log_path, start);
  } else {
    fs::remove(log_path);
    fs::remove_all(best_dir);
  }
  if (start == 0 && !s.opt.init_weights.empty()) {  // a new run from given weights (a resumed one has its own)
    nn::LoadedModel init = nn::load_model(s.opt.init_weights);
    nn::copy_weights_into(s.opt.init_weights, init.weights, model.named_state(), true);
  }
  nn::write_text_atomic((dir / "config.json").string(), s.config.dump(2) + "\n");

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(clock::now() - t0).count(); };
  auto save_ckpt = [&](int64_t step) {
    nlohmann::json st = {{"step", step},
                         {"elapsed_s", prior_s + seconds()},
                         {"tokens", tokens_total},
                         {"last_loss", last_loss},
                         {"loss_sum", loss_sum},
                         {"loss_n", loss_n},
                         {"best_eval", best_eval},
                         {"data", s.data.state()},
                         {"dropout_rng", nn::generator_to_json(default_generator())},
                         {"threads", threads}};
    nn::save_training_checkpoint(ckpt_dir.string(), step, model.named_state(), s.config, *optim, st);
  };

  std::FILE* log = std::fopen(log_path.string().c_str(), "a");
  COPPER_CHECK(log != nullptr, "train", "cannot open '{}' for appending. HINT: is the folder writable?",
               log_path.string());
  struct LogCloser {
    std::FILE* f;
    ~LogCloser() { std::fclose(f); }
  } log_closer{log};

  // Evaluation: the caller's metrics in the log, and the best model (lowest "loss") kept in
  // checkpoints/best/, replaced whole: written beside it, then renamed into place.
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
  const double budget = s.opt.time_budget_s;
  const bool timed = budget > 0;
  int64_t steps = !timed ? L.steps : prior_s < budget ? std::numeric_limits<int64_t>::max() : start;
  Progress progress(s.opt.progress, s.opt.label + "step ", timed ? 0 : L.steps, s.opt.quiet, 1, start);
  const bool live = !s.opt.quiet && Progress::is_terminal(s.opt.progress);
  int64_t tokens = 0;  // this process's, for the throughput
  int64_t saved_at = start;
  s.signals = std::make_unique<SignalGuard>();
  for (int64_t step = start; step < steps; ++step) {
    optim->set_lr(timed ? L.schedule.lr_at_fraction((prior_s + seconds()) / budget) : L.schedule.lr_at(step));
    Batch batch = s.data.batch(step);
    Tensor loss = s.hooks.loss(batch);
    optim->zero_grad();
    loss.backward();
    if (L.clip > 0) nn::clip_grad_norm(params, L.clip);
    optim->step();
    loss_sum += loss.item();
    ++loss_n;
    tokens += batch.tokens;
    tokens_total += batch.tokens;
    const int64_t done = step + 1;
    if (timed && prior_s + seconds() >= budget) steps = done;  // out of time: the last step
    const bool log_now = done % L.log_every == 0 || done == steps;
    const double el = seconds();
    const double tps = double(tokens) / std::max(el, 1e-9);
    if (log_now) {
      last_loss = loss_sum / double(loss_n);
      fmt::print(log, "{}\n",
                 nlohmann::json{{"step", done},
                                {"loss", last_loss},
                                {"lr", optim->lr()},
                                {"tokens", tokens_total},
                                {"tokens_per_s", tps},
                                {"elapsed_s", prior_s + el}}
                     .dump());
      std::fflush(log);
    }
    if (log_now || live) {  // a terminal's line follows every step (the mean loss since the last log line)
      progress.update(done,
                      fmt::format("loss {:.4f}  lr {:.2e}  {:.0f} tok/s  {:.1f} ms/step",
                                  log_now ? last_loss : loss_sum / double(loss_n), optim->lr(), tps,
                                  1000 * el / double(done - start)),
                      timed ? std::max(0.0, budget - prior_s - el) : -1);
    }
    if (log_now) {
      loss_sum = 0;
      loss_n = 0;
    }
    if (s.hooks.evaluate && L.eval_every > 0 && (done % L.eval_every == 0 || done == steps)) {
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
    if (g_signal != 0) {
      const int sig = g_signal;
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
