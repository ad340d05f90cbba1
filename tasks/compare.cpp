// compare.cpp — encoding comparisons, their table, and CoPE gate read-outs.
#include "tasks/compare.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "autograd/grad_mode.h"
#include "tensor/ops.h"
#include "train/trainer.h"

namespace copper::tasks {

namespace fs = std::filesystem;

nlohmann::json run_comparison(const CompareOptions& opt) {
  COPPER_CHECK(opt.seeds >= 1 && !opt.pes.empty(), "compare", "need at least one encoding and one seed");
  nlohmann::json out = {{"task", opt.task.task}, {"preset", opt.preset}, {"runs", nlohmann::json::array()}};
  const int64_t total = int64_t(opt.pes.size()) * opt.seeds;
  int64_t k = 0, trained = 0;  // runs started, runs that trained (a finished one is only read back)
  double trained_s = 0;        // wall-clock seconds of the runs that trained
  using clock = std::chrono::steady_clock;
  for (const auto& pe : opt.pes) {
    for (int s = 0; s < opt.seeds; ++s) {
      ++k;
      TrainConfig cfg = preset_config(opt.preset, opt.task, pe);
      if (opt.steps) set_steps(cfg, *opt.steps);
      cfg.seed = uint64_t(s);
      out["steps"] = cfg.steps;
      TrainOptions to;
      to.quiet = opt.quiet;
      to.fresh = opt.fresh;
      to.progress = opt.progress;
      to.label = fmt::format("[run {}/{} {} seed {}] ", k, total, pe, s);
      const std::string dir = (fs::path(opt.out_dir) / fmt::format("{}-seed{}", pe, s)).string();
      // The overall ETA: the mean time of the runs trained so far times the runs left
      // (encodings differ in speed, so it is a rough guide until every encoding has run once).
      if (!opt.quiet)
        fmt::print(opt.progress, "run {} of {}: {} seed {} in {}{}\n", k, total, pe, s, dir,
                   trained > 0 ? fmt::format("  (overall ETA {})",
                                             train::format_duration(trained_s / double(trained) * double(total - k + 1)))
                               : "");
      const auto t0 = clock::now();
      const bool was_done = fs::exists(fs::path(dir) / "results.json") && !opt.fresh;
      out["runs"].push_back(train_run(cfg, dir, to));
      if (!was_done) {
        trained_s += std::chrono::duration<double>(clock::now() - t0).count();
        ++trained;
      }
    }
  }
  auto task = make_task(opt.task);
  nlohmann::json names = nlohmann::json::array();
  for (auto& [n, c] : task->splits()) names.push_back(n);
  out["splits"] = names;
  return out;
}

std::string comparison_table(const nlohmann::json& cmp) {
  const auto& runs = cmp.at("runs");
  std::vector<std::string> splits = cmp.at("splits").get<std::vector<std::string>>();
  std::vector<std::string> pes;
  std::map<std::string, std::map<std::string, std::vector<double>>> err;  // pe -> split -> errors
  std::map<std::string, double> secs;
  for (auto& r : runs) {
    const std::string pe = r.at("pe");
    if (std::find(pes.begin(), pes.end(), pe) == pes.end()) pes.push_back(pe);
    for (auto& s : splits) err[pe][s].push_back(100 * r.at("error").at(s).get<double>());
    secs[pe] += r.value("train_seconds", 0.0);
  }
  const std::string task = cmp.at("task");
  const std::string what = task == "flipflop" ? "error on read bits" : task == "counting" ? "error on answers"
                                                                                         : "samples with any error";
  std::string out = fmt::format("{} ({} preset, {} steps, {} run(s) per encoding): test {}, %, mean ± std over seeds\n",
                                task, cmp.at("preset").get<std::string>(), cmp.value("steps", 0),
                                runs.size() / std::max<size_t>(1, pes.size()), what);
  out += fmt::format("{:<8}", "PE");
  for (auto& s : splits) out += fmt::format("{:>18}", s == "in" ? "in-dist" : s);
  out += fmt::format("{:>12}\n", "train s");
  for (auto& pe : pes) {
    out += fmt::format("{:<8}", pe);
    for (auto& s : splits) {
      const auto& v = err[pe][s];
      double m = 0, sd = 0;
      for (double x : v) m += x;
      m /= double(v.size());
      for (double x : v) sd += (x - m) * (x - m);
      sd = v.size() > 1 ? std::sqrt(sd / double(v.size() - 1)) : 0;
      out += fmt::format("{:>18}", v.size() > 1 ? fmt::format("{:.1f} ± {:.1f}", m, sd) : fmt::format("{:.1f}", m));
    }
    out += fmt::format("{:>12.0f}\n", secs[pe] / double(std::max<size_t>(1, err[pe][splits[0]].size())));
  }
  return out;
}

namespace {
// Run the model on one example; returns the gates of each CoPE layer for query row T-1:
// gates[layer][head][j], and the tokens that were fed.
std::vector<std::vector<std::vector<double>>> last_row_gates(nn::TransformerLM& model, const Example& ex,
                                                             std::vector<int64_t>& fed) {
  Batch b = make_batch({ex}, 0, 1, model.config().context);
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  model.set_record_attention(true);  // CoPE keeps its gates only then (the fused path makes none)
  model.forward(b.ids);
  model.set_record_attention(false);
  model.train(was_training);
  auto gates = model.cope_gates();
  COPPER_CHECK(!gates.empty(), "gates",
               "the model has no CoPE layer (pe = '{}'). HINT: train one with --pe cope to see gates",
               model.config().pe);
  const int64_t T = b.ids.size(1);
  fed = b.ids.to_vector<int64_t>();
  std::vector<std::vector<std::vector<double>>> out;
  for (auto& g : gates) {  // [1, H, T, T]
    Tensor row = g.select(0, 0).select(1, T - 1).to(DType::f64).contiguous();  // [H, T]
    auto v = row.to_vector<double>();
    const int64_t H = row.size(0);
    std::vector<std::vector<double>> heads(static_cast<size_t>(H));
    for (int64_t h = 0; h < H; ++h) heads[size_t(h)].assign(v.begin() + h * T, v.begin() + (h + 1) * T);
    out.push_back(std::move(heads));
  }
  return out;
}
}  // namespace

std::string gates_text(nn::TransformerLM& model, const Task& task, const Example& ex) {
  std::vector<int64_t> fed;
  auto g = last_row_gates(model, ex, fed);
  const size_t T = fed.size();
  std::string out = fmt::format(
      "CoPE gates of the last query (position {}, token '{}') over the {} tokens it sees; a gate near 1 means the "
      "head counts that token.\n",
      T - 1, task.vocab()[size_t(fed[T - 1])], T);
  out += fmt::format("{:>5} {:>6}", "pos", "token");
  for (size_t l = 0; l < g.size(); ++l)
    for (size_t h = 0; h < g[l].size(); ++h) out += fmt::format(" {:>6}", fmt::format("L{}H{}", l, h));
  out += "\n";
  for (size_t j = 0; j < T; ++j) {
    out += fmt::format("{:>5} {:>6}", j, task.vocab()[size_t(fed[j])]);
    for (auto& layer : g)
      for (auto& head : layer) out += fmt::format(" {:>6.3f}", head[j]);
    out += "\n";
  }
  out += fmt::format("{:>12}", "position");
  for (auto& layer : g)
    for (auto& head : layer) {
      double s = 0;
      for (double x : head) s += x;
      out += fmt::format(" {:>6.2f}", s);  // CoPE position of token 0 seen from the last query
    }
  out += "\n";
  return out;
}

std::string gate_summary(nn::TransformerLM& model, const Task& task, const std::vector<Example>& examples) {
  // mean gate per (layer, head, token type) over the last query of each example
  std::map<std::tuple<size_t, size_t, int64_t>, std::pair<double, int64_t>> acc;
  size_t L = 0, H = 0;
  for (auto& ex : examples) {
    std::vector<int64_t> fed;
    auto g = last_row_gates(model, ex, fed);
    L = g.size();
    H = g[0].size();
    for (size_t l = 0; l < L; ++l)
      for (size_t h = 0; h < H; ++h)
        for (size_t j = 0; j < fed.size(); ++j) {
          auto& a = acc[{l, h, fed[j]}];
          a.first += g[l][h][j];
          a.second += 1;
        }
  }
  // The head with the widest spread between its most and least counted token types.
  double best = -1;
  size_t bl = 0, bh = 0;
  for (size_t l = 0; l < L; ++l)
    for (size_t h = 0; h < H; ++h) {
      double lo = 2, hi = -1;
      for (int64_t t = 0; t < task.vocab_size(); ++t) {
        auto it = acc.find({l, h, t});
        if (it == acc.end()) continue;
        const double m = it->second.first / double(it->second.second);
        lo = std::min(lo, m);
        hi = std::max(hi, m);
      }
      if (hi - lo > best) {
        best = hi - lo;
        bl = l;
        bh = h;
      }
    }
  std::string out = fmt::format("CoPE layer {} head {}: mean gate of the last query per token type ({} samples)\n", bl,
                                bh, examples.size());
  std::vector<std::pair<double, std::string>> rows;
  for (int64_t t = 0; t < task.vocab_size(); ++t) {
    auto it = acc.find({bl, bh, t});
    if (it == acc.end()) continue;
    rows.emplace_back(it->second.first / double(it->second.second), task.vocab()[size_t(t)]);
  }
  std::sort(rows.rbegin(), rows.rend());
  for (auto& [m, tok] : rows) out += fmt::format("  {:>6}  {:.3f}  {}\n", tok, m, std::string(size_t(m * 40 + 0.5), '#'));
  out += fmt::format("  -> it counts mostly '{}' tokens: its position for a key is about the number of such tokens "
                     "between that key and the query.\n",
                     rows.empty() ? "?" : rows[0].second);
  return out;
}

}  // namespace copper::tasks
