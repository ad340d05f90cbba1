// schedule.cpp — the learning-rate schedules of schedule.h.
#include "nn/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

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

double Schedule::lr_at(int64_t step) const {
  if (warmup > 0 && step < warmup) return lr * double(step + 1) / double(warmup);
  if (kind == "constant") return lr;
  const double lo = lr * min_lr_ratio;
  const int64_t span = std::max<int64_t>(1, total - warmup);
  const double f = std::clamp(double(step - warmup) / double(span), 0.0, 1.0);
  if (kind == "cosine") return lo + (lr - lo) * 0.5 * (1 + std::cos(std::numbers::pi * f));
  return lo + (lr - lo) * (1 - f);
}

nlohmann::json Schedule::to_json() const {
  return {{"kind", kind}, {"lr", lr}, {"warmup", warmup}, {"total", total}, {"min_lr_ratio", min_lr_ratio}};
}

Schedule Schedule::from_json(const nlohmann::json& js) {
  Schedule s;
  s.kind = js.value("kind", s.kind);
  s.lr = js.value("lr", s.lr);
  s.warmup = js.value("warmup", s.warmup);
  s.total = js.value("total", s.total);
  s.min_lr_ratio = js.value("min_lr_ratio", s.min_lr_ratio);
  s.validate();
  return s;
}

}  // namespace copper::nn
