// flipflop.cpp — Flip-Flop language modelling (Liu et al. 2023), FFL(p).
//
// A sequence of `pairs` instruction/bit pairs over {w, r, i} x {0, 1}: the first
// instruction is a write, the last a read, the others w/r/i with probabilities
// (1-p)/2, (1-p)/2, p. A read's bit is the last written bit; write and ignore bits are
// uniform. The model predicts the bit after each `r`. File line: "w0i1r0i1w1r1".
#include <algorithm>

#include "tasks/task.h"

namespace copper::tasks {

namespace {
enum : int64_t { kW = 0, kR = 1, kI = 2, k0 = 3, k1 = 4 };

class FlipFlop final : public Task {
 public:
  explicit FlipFlop(const TaskConfig& c) : Task(c) {
    COPPER_CHECK(c.pairs >= 2, "flipflop", "needs at least 2 pairs, got {}", c.pairs);
    COPPER_CHECK(c.p >= 0 && c.p <= 1, "flipflop", "p must lie in [0, 1], got {}", c.p);
  }
  const std::vector<std::string>& vocab() const override {
    static const std::vector<std::string> v{"w", "r", "i", "0", "1"};
    return v;
  }
  int64_t max_tokens() const override { return 2 * cfg_.pairs; }
  bool error_per_sample() const override { return false; }

  std::vector<std::pair<std::string, TaskConfig>> splits() const override {
    TaskConfig sparse = cfg_, dense = cfg_;
    sparse.p = 0.98;
    dense.p = 0.1;
    return {{"in", cfg_}, {"ood_sparse", sparse}, {"ood_dense", dense}};
  }

  Example sample(Generator& g) const override {
    Example ex;
    ex.tokens.reserve(size_t(2 * cfg_.pairs));
    int64_t last = 0;
    const double pw = (1 - cfg_.p) / 2;
    for (int64_t k = 0; k < cfg_.pairs; ++k) {
      int64_t ins;
      if (k == 0) ins = kW;
      else if (k == cfg_.pairs - 1) ins = kR;
      else {
        const double u = g.uniform();
        ins = u < cfg_.p ? kI : (u < cfg_.p + pw ? kW : kR);
      }
      int64_t bit = ins == kR ? last : int64_t(g.below(2));
      if (ins == kW) last = bit;
      ex.tokens.push_back(ins);
      ex.tokens.push_back(k0 + bit);
      ex.mask.push_back(ins == kR);
      ex.mask.push_back(0);
    }
    return ex;
  }

  std::string to_line(const Example& ex) const override {
    std::string s;
    for (int64_t t : ex.tokens) s += vocab()[size_t(t)];
    return s;
  }

  Example parse_line(const std::string& line, const std::string& where) const override {
    COPPER_CHECK(line.size() % 2 == 0 && line.size() >= 2, "flipflop",
                 "{}: {} characters; a line is instruction/bit pairs such as w0i1r0. HINT: no spaces", where,
                 line.size());
    Example ex;
    int64_t last = -1;
    for (size_t k = 0; k < line.size(); k += 2) {
      const char c = line[k], b = line[k + 1];
      COPPER_CHECK(c == 'w' || c == 'r' || c == 'i', "flipflop",
                   "{}: pair {} starts with '{}', not an instruction w, r or i", where, k / 2 + 1, c);
      COPPER_CHECK(b == '0' || b == '1', "flipflop", "{}: pair {} has bit '{}', not 0 or 1", where, k / 2 + 1, b);
      const int64_t ins = c == 'w' ? kW : (c == 'r' ? kR : kI), bit = b - '0';
      COPPER_CHECK(k > 0 || ins == kW, "flipflop", "{}: the first instruction is '{}', it must be a write", where, c);
      if (ins == kW) last = bit;
      COPPER_CHECK(ins != kR || bit == last, "flipflop", "{}: read at pair {} gives {} but the last write was {}",
                   where, k / 2 + 1, bit, last);
      ex.tokens.push_back(ins);
      ex.tokens.push_back(k0 + bit);
      ex.mask.push_back(ins == kR);
      ex.mask.push_back(0);
    }
    COPPER_CHECK(std::count(ex.mask.begin(), ex.mask.end(), 1) > 0, "flipflop", "{}: the sequence has no read", where);
    return ex;
  }
};
}  // namespace

std::unique_ptr<Task> make_flipflop(const TaskConfig& cfg) { return std::make_unique<FlipFlop>(cfg); }

}  // namespace copper::tasks
