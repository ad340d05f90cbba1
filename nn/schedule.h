// schedule.h — learning-rate schedules: constant, linear warmup then cosine or linear decay.
//
// lr_at(step) is a pure function of the 0-based step about to be taken, so a resumed run
// gets the same rates as an uninterrupted one without saving any schedule state.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace copper::nn {

struct Schedule {
  std::string kind = "constant";  // "constant", "cosine" (warmup + cosine), "linear" (warmup + linear)
  double lr = 1e-3;               // peak rate
  int64_t warmup = 0;             // steps of linear warmup from lr/warmup to lr
  int64_t total = 0;              // steps of the whole run (decay ends here)
  double min_lr_ratio = 0;        // the decay ends at lr * min_lr_ratio

  template <class Self, class Visit>
  static void fields(Self& s, Visit&& visit) {  // the one list of fields (nn/config.h)
    visit("kind", s.kind, "constant, cosine or linear (after the warmup)");
    visit("lr", s.lr, "peak learning rate");
    visit("warmup", s.warmup, "steps of linear warmup");
    visit("total", s.total, "steps of the whole schedule");
    visit("min_lr_ratio", s.min_lr_ratio, "the decay ends at lr times this");
  }

  // Rate for 0-based step `step`: during warmup lr * (step+1)/warmup; then
  // constant: lr; cosine: lo + (lr-lo) (1 + cos(pi f))/2; linear: lo + (lr-lo)(1-f),
  // with f = (step - warmup) / (total - warmup) clamped to [0, 1] and lo = lr * min_lr_ratio.
  double lr_at(int64_t step) const;
  // The same curve when a run's length is measured in time rather than steps: the rate a
  // fraction f (clamped to [0, 1]) of the way through, i.e. lr_at at the real-valued step
  // f * total (warmup capped at lr). Used by wall-clock comparisons (--time-budget).
  double lr_at_fraction(double f) const;

  nlohmann::json to_json() const;
  static Schedule from_json(const nlohmann::json& js);
  // Throws copper::Error on an unknown kind (listing the valid ones) or bad numbers.
  void validate() const;
};

}  // namespace copper::nn
