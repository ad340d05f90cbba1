// cli_plot.cpp — `copper plot`: training and validation loss of one or more runs in one picture.
//
//   copper plot --log runs/a/log.jsonl --log runs/b/log.jsonl --out curves.png [--title T] [--log-y]
//
// A log.jsonl holds one JSON object a line, as the trainer writes them:
//   {"step":25,"loss":2.31,"lr":...,"tokens":51200,...}     a training step ("tokens" optional)
//   {"step":500,"eval":{"loss":2.4,...}}                    an evaluation
// Loss is plotted against tokens seen when every training line of every run has "tokens"
// (an evaluation takes the tokens of the training step it follows), else against step.
// Each run has one colour: its training loss solid, its validation loss dashed with markers;
// the legend names a run by its folder. A resumed run appends to its log, so a step that
// goes back replaces the points from that step on.
// Bad input (missing or unreadable file, a line that is not a JSON object, no loss lines)
// exits 3 naming file:line; --out is written through a temporary file and so is never
// overwritten by a failed command.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "examples/cli/commands.h"
#include "tensor/error.h"
#include "viz/plot.h"

namespace copper::cli {

namespace {
namespace fs = std::filesystem;

struct Point {
  int64_t step;
  double tokens;  // NaN when the line has none
  double loss;
};

struct RunLog {
  std::string path, name;
  std::vector<Point> train, eval;
};

// Append p, first dropping the points at or after its step (a resumed run logs them again).
void add_point(std::vector<Point>& pts, const Point& p) {
  while (!pts.empty() && pts.back().step >= p.step) pts.pop_back();
  pts.push_back(p);
}

// The run's name: the folder holding the log (runs/ff-cope/log.jsonl -> ff-cope), or the file
// name when the log has no folder.
std::string run_name(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  fs::path parent = p.parent_path();
  if (!parent.empty() && parent.filename() != "." && parent.filename() != "..") return parent.filename().string();
  fs::path abs_parent = fs::absolute(p).lexically_normal().parent_path();
  return !abs_parent.filename().empty() ? abs_parent.filename().string() : p.filename().string();
}

RunLog read_log(const std::string& path) {
  RunLog run{path, run_name(path), {}, {}};
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    fail(kExitData, fmt::format("{}: no such file. HINT: pass the log.jsonl of a training run", path));
  std::ifstream in(path);
  if (!in) fail(kExitData, fmt::format("{}: cannot be read. HINT: check its permissions", path));
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto where = [&] { return fmt::format("{}:{}", path, n); };
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
      fail(kExitData, fmt::format("{}: not a JSON object. HINT: a log.jsonl holds one JSON object a line", where()));
    if (!j.contains("loss") && !j.contains("eval")) continue;  // other records
    const auto step = j.find("step");
    if (step == j.end() || !step->is_number_integer())
      fail(kExitData, fmt::format("{}: a loss line without an integer \"step\". HINT: is this a copper log?", where()));
    if (j.contains("loss")) {
      const auto& loss = j["loss"];  // null: a non-finite loss (JSON has no NaN), left out of the line
      if (!loss.is_number() && !loss.is_null())
        fail(kExitData, fmt::format("{}: \"loss\" is not a number. HINT: is this a copper log?", where()));
      double tokens = NAN;
      if (j.contains("tokens")) {
        if (!j["tokens"].is_number())
          fail(kExitData, fmt::format("{}: \"tokens\" is not a number. HINT: is this a copper log?", where()));
        tokens = j["tokens"].get<double>();
      }
      add_point(run.train, {step->get<int64_t>(), tokens, loss.is_null() ? NAN : loss.get<double>()});
    }
    if (j.contains("eval")) {
      const auto& ev = j["eval"];
      if (!ev.is_object())
        fail(kExitData, fmt::format("{}: \"eval\" is not an object. HINT: is this a copper log?", where()));
      if (ev.contains("loss")) {
        const auto& loss = ev["loss"];
        if (!loss.is_number() && !loss.is_null())
          fail(kExitData, fmt::format("{}: \"eval\".\"loss\" is not a number. HINT: is this a copper log?", where()));
        add_point(run.eval, {step->get<int64_t>(), NAN, loss.is_null() ? NAN : loss.get<double>()});
      }
    }
  }
  if (in.bad()) fail(kExitData, fmt::format("{}: read error. HINT: check the file", path));
  if (run.train.empty() && run.eval.empty())
    fail(kExitData, fmt::format("{}: no loss lines. HINT: a log.jsonl has lines like {{\"step\":25,\"loss\":2.31}}; "
                                "was the run started?",
                                path));
  return run;
}

// Tokens seen at `step`: those of the last training line at or before it (0 before the first).
double tokens_at(const std::vector<Point>& train, int64_t step) {
  auto it = std::upper_bound(train.begin(), train.end(), step,
                             [](int64_t s, const Point& p) { return s < p.step; });
  return it == train.begin() ? 0.0 : std::prev(it)->tokens;
}

// Distinct legend names: a repeated folder name gets " (2)", " (3)", ...
void make_names_unique(std::vector<RunLog>& runs) {
  std::map<std::string, int> seen;
  for (auto& r : runs)
    if (int k = ++seen[r.name]; k > 1) r.name += fmt::format(" ({})", k);
}
}  // namespace

void add_plot(CLI::App& app) {
  auto* cmd = app.add_subcommand("plot", "training and validation loss of one or more runs (their log.jsonl) as a "
                                         "PNG");
  struct Opts {
    std::vector<std::string> logs;
    std::string out, title = "training and validation loss";
    bool log_y = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--log", o->logs, "a run's log.jsonl (repeat for several runs)")->required();
  cmd->add_option("--out", o->out, "the PNG to write")->required();
  cmd->add_option("--title", o->title, "title of the picture");
  cmd->add_flag("--log-y", o->log_y, "loss on a log scale");
  cmd->callback([o] {
    std::error_code ec;
    fs::path out_dir = fs::path(o->out).parent_path();
    if (!out_dir.empty() && !fs::is_directory(out_dir, ec))
      fail(kExitUsage, fmt::format("--out {}: the folder {} does not exist. HINT: create it first", o->out,
                                   out_dir.string()));
    std::vector<RunLog> runs;
    for (const auto& path : o->logs) runs.push_back(read_log(path));
    make_names_unique(runs);

    bool by_tokens = true;
    for (const auto& r : runs)
      for (const auto& p : r.train) by_tokens = by_tokens && std::isfinite(p.tokens);
    for (const auto& r : runs) by_tokens = by_tokens && !r.train.empty();

    std::vector<viz::Series> series;
    for (size_t i = 0; i < runs.size(); ++i) {
      const RunLog& r = runs[i];
      auto x_of = [&](const Point& p) {
        return by_tokens ? (std::isfinite(p.tokens) ? p.tokens : tokens_at(r.train, p.step)) : double(p.step);
      };
      if (!r.train.empty()) {
        viz::Series s{r.name + " train", {}, {}, int(i), false};
        for (const auto& p : r.train) s.x.push_back(x_of(p)), s.y.push_back(p.loss);
        series.push_back(std::move(s));
      }
      if (!r.eval.empty()) {
        viz::Series s{r.name + " val", {}, {}, int(i), true};
        for (const auto& p : r.eval) s.x.push_back(x_of(p)), s.y.push_back(p.loss);
        series.push_back(std::move(s));
      }
    }
    try {
      viz::line_plot_png(o->out, series, by_tokens ? "tokens seen" : "step", "loss", o->title, o->log_y);
    } catch (const Error& e) {
      fail(kExitRuntime, e.what());
    }
    fmt::print("{}\n", nlohmann::json{{"out", o->out},
                                      {"runs", runs.size()},
                                      {"x", by_tokens ? "tokens" : "step"},
                                      {"width", viz::kPlotWidthPx},
                                      {"height", viz::kPlotHeightPx}}
                           .dump());
  });
}

}  // namespace copper::cli
