// schedule.cpp — the learning-rate schedules of schedule.h.
#include "nn/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "nn/config.h"
#include "tensor/error.h"

namespace copper::nn {

void Schedule::validate() const {
  COPPER_CHECK(kind == "constant" || kind == "cosine" || kind == "linear", "schedule",
               "unknown schedule '{}'. HINT: valid names are constant, cosine, linear", kind);
  COPPER_CHECK(lr >= 0 && warmup >= 0 && total >= 0 && min_lr_ratio >= 0 && min_lr_ratio <= 1, "schedule",
               "need lr >= 0, warmup >= 0, total >= 0 and 0 <= min_lr_ratio <= 1; got lr={} warmup={} total={} "
               "min_lr_ratio={}",
               lr, warmup, total, min_lr_ratio);
}

namespace {
// lr_at for a real-valued step s; at integer steps exactly the documented formula.
double rate(const Schedule& c, double s) {
  if (c.warmup > 0 && s < double(c.warmup)) return c.lr * std::min(1.0, (s + 1) / double(c.warmup));
  if (c.kind == "constant") return c.lr;
  const double lo = c.lr * c.min_lr_ratio;
  const double span = double(std::max<int64_t>(1, c.total - c.warmup));
  const double f = std::clamp((s - double(c.warmup)) / span, 0.0, 1.0);
  if (c.kind == "cosine") return lo + (c.lr - lo) * 0.5 * (1 + std::cos(std::numbers::pi * f));
  return lo + (c.lr - lo) * (1 - f);
}
}  // namespace

double Schedule::lr_at(int64_t step) const { return rate(*this, double(step)); }

double Schedule::lr_at_fraction(double f) const { return rate(*this, std::clamp(f, 0.0, 1.0) * double(total)); }

nlohmann::json Schedule::to_json() const { return config::to_json(*this); }

Schedule Schedule::from_json(const nlohmann::json& js) {
  Schedule s;
  config::from_json(s, js, "Schedule");
  s.validate();
  return s;
}

}  // namespace copper::nn
