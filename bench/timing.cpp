// timing.cpp — the small helpers of bench.h that need no template.
#include <sys/resource.h>

#include <algorithm>

#include "bench/bench.h"

namespace copper::bench {

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

void emit(std::FILE* out, const nlohmann::ordered_json& j) {
  std::fputs(j.dump().c_str(), out);
  std::fputc('\n', out);
  std::fflush(out);
}

int64_t minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return int64_t(u.ru_minflt);
}

}  // namespace copper::bench
