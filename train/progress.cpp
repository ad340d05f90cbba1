// progress.cpp — progress lines: redrawn in place on a terminal, sparse in logs.
#include <unistd.h>

#include <chrono>

#include <fmt/format.h>

#include "train/trainer.h"

namespace copper::train {

namespace {
// A terminal line is redrawn at most this often (the last one always).
constexpr double kRedrawSeconds = 0.1;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = int64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

bool Progress::is_terminal(std::FILE* f) { return f && ::isatty(::fileno(f)) == 1; }

Progress::Progress(std::FILE* out, std::string label, int64_t total, bool quiet, int64_t every, int64_t first)
    : out_(out),
      label_(std::move(label)),
      total_(total),
      every_(every),
      first_(first),
      quiet_(quiet || out == nullptr),
      tty_(is_terminal(out)),
      start_(now_s()),
      last_done_(first) {}

std::string Progress::line(int64_t done, const std::string& detail, const std::string& tail) const {
  std::string s = label_ + (total_ > 0 ? fmt::format("{}/{}", done, total_) : fmt::format("{}", done));
  if (!detail.empty()) s += "  " + detail;
  if (!tail.empty()) s += "  " + tail;
  return s;
}

void Progress::update(int64_t done, const std::string& detail, double eta_s) {
  if (quiet_) return;
  ++calls_;
  last_done_ = done;
  last_detail_ = detail;
  const double t = now_s();
  if (eta_s < 0 && total_ > 0 && done > first_) eta_s = (t - start_) / double(done - first_) * double(total_ - done);
  const std::string text = line(done, detail, "ETA " + format_duration(eta_s));
  if (tty_) {
    last_printed_ = false;
    if (last_print_ >= 0 && t - last_print_ < kRedrawSeconds && done != total_) return;
    fmt::print(out_, "\r{}\033[K", text);
    std::fflush(out_);
    last_print_ = t;
    return;
  }
  last_printed_ = every_ > 0 && calls_ % every_ == 0;
  if (last_printed_) {
    fmt::print(out_, "{}\n", text);
    std::fflush(out_);
  }
}

void Progress::finish(const std::string& detail) {
  if (quiet_ || finished_) return;
  finished_ = true;
  if (calls_ == 0 && detail.empty()) return;  // nothing was shown and nothing to say
  const std::string text = line(last_done_, detail.empty() ? last_detail_ : detail,
                                "in " + format_duration(now_s() - start_));
  if (tty_) {
    fmt::print(out_, "\r{}\033[K\n", text);
  } else if (!last_printed_) {
    fmt::print(out_, "{}\n", text);
  }
  std::fflush(out_);
}

}  // namespace copper::train
