// counting.cpp — the CoPE paper's counting task, with its official generator's semantics.
//
// A program of 3..max_steps statements over the first `vars` letters: `v = 0 ;`, `pass;`
// and `v ++;`, drawn with weights 1 : 50 : 7. An increment picks a uniformly random
// variable that has been set; if none is set, or that variable is already at 10, the
// statement is drawn again (as the official script's GenerationFail retry does). Then the
// question `print v` names a random set variable (the whole sample is drawn again if none
// is), and the answer is its value. Only the answer token counts.
// File line: {"context": "a = 0 ; pass; a ++;", "question": "print a", "answer": "1"}.
#include <sstream>

#include "tasks/task.h"

namespace copper::tasks {

namespace {
constexpr int64_t kMaxVal = 10;

class Counting final : public Task {
 public:
  explicit Counting(const TaskConfig& c) : Task(c) {
    COPPER_CHECK(c.vars >= 1 && c.vars <= 26, "counting", "vars must lie in [1, 26], got {}", c.vars);
    COPPER_CHECK(c.max_steps >= 3, "counting", "max_steps must be at least 3, got {}", c.max_steps);
    // A fixed vocabulary (all 26 letters) so that files with any number of variables load.
    for (int i = 0; i < 26; ++i) vocab_.push_back(std::string(1, char('a' + i)));
    for (int v = 0; v <= kMaxVal; ++v) vocab_.push_back(std::to_string(v));
    for (const char* t : {"=", ";", "pass;", "++;", "print"}) vocab_.push_back(t);
  }
  const std::vector<std::string>& vocab() const override { return vocab_; }
  int64_t id(const std::string& t) const { return token_id(t); }
  int64_t max_tokens() const override { return 4 * cfg_.max_steps + 3; }
  bool error_per_sample() const override { return true; }  // one answer per sample

  std::vector<std::pair<std::string, TaskConfig>> splits() const override {
    TaskConfig longer = cfg_;
    longer.max_steps = 2 * cfg_.max_steps;
    return {{"in", cfg_}, {"ood_long", longer}};
  }

  Example sample(Generator& g) const override {
    for (int trial = 0; trial < 1000; ++trial) {
      Example ex;
      if (try_sample(g, ex)) return ex;
    }
    COPPER_THROW("counting", "failed to generate a sample 1000 times (vars={}, max_steps={})", cfg_.vars, cfg_.max_steps);
  }

  std::string to_line(const Example& ex) const override {
    const size_t n = ex.tokens.size();
    COPPER_CHECK(n >= 3, "counting", "an example has at least print, a variable and an answer");
    std::string ctx;
    for (size_t t = 0; t + 3 < n; ++t) {
      if (!ctx.empty()) ctx += ' ';
      ctx += vocab_[size_t(ex.tokens[t])];
    }
    return nlohmann::ordered_json{{"context", ctx},
                          {"question", "print " + vocab_[size_t(ex.tokens[n - 2])]},
                          {"answer", vocab_[size_t(ex.tokens[n - 1])]}}
        .dump();
  }

  Example parse_line(const std::string& line, const std::string& where) const override {
    nlohmann::json js = parse_json_line(line, where, "counting", R"({"context", "question", "answer"})");
    COPPER_CHECK(js.is_object() && js.contains("context") && js.contains("question") && js.contains("answer"),
                 "counting", "{}: needs fields \"context\", \"question\" and \"answer\"", where);
    std::string context;
    if (js["context"].is_array()) {  // the official reader joins a list of statements
      for (auto& s : js["context"]) {
        COPPER_CHECK(s.is_string(), "counting", "{}: context list holds a non-string", where);
        if (!context.empty()) context += ' ';
        context += s.get<std::string>();
      }
    } else {
      COPPER_CHECK(js["context"].is_string(), "counting", "{}: context is not a string", where);
      context = js["context"].get<std::string>();
    }
    COPPER_CHECK(js["question"].is_string() && js["answer"].is_string(), "counting",
                 "{}: question and answer must be strings", where);
    auto words = [](const std::string& s) {
      std::vector<std::string> w;
      std::istringstream in(s);
      for (std::string x; in >> x;) w.push_back(x);
      return w;
    };
    const auto ctx = words(context), q = words(js["question"].get<std::string>()),
               a = words(js["answer"].get<std::string>());
    Example ex;
    // Run the program to check the answer.
    int64_t val[26] = {};
    bool set[26] = {};
    auto var_of = [&](const std::string& w) { return w.size() == 1 && w[0] >= 'a' && w[0] <= 'z' ? w[0] - 'a' : -1; };
    size_t i = 0;
    while (i < ctx.size()) {
      const std::string& w = ctx[i];
      if (w == "pass;") {
        ex.tokens.push_back(id(w));
        ++i;
        continue;
      }
      const int v = var_of(w);
      COPPER_CHECK(v >= 0, "counting", "{}: context word {} is '{}'; a statement starts with a variable a..z or pass;",
                   where, i + 1, w);
      if (i + 1 < ctx.size() && ctx[i + 1] == "++;") {
        COPPER_CHECK(set[v], "counting", "{}: context word {}: '{} ++;' before {} was set", where, i + 1, w, w);
        ++val[v];
        for (int k = 0; k < 2; ++k) ex.tokens.push_back(id(ctx[i + size_t(k)]));
        i += 2;
        continue;
      }
      COPPER_CHECK(i + 3 < ctx.size() && ctx[i + 1] == "=" && ctx[i + 3] == ";" && id(ctx[i + 2]) >= 26 &&
                       id(ctx[i + 2]) <= 26 + kMaxVal,
                   "counting", "{}: context word {}: expected '{} ++;' or '{} = N ;' with N in 0..10", where, i + 1, w,
                   w);
      set[v] = true;
      val[v] = std::stoll(ctx[i + 2]);
      for (int k = 0; k < 4; ++k) ex.tokens.push_back(id(ctx[i + size_t(k)]));
      i += 4;
    }
    COPPER_CHECK(q.size() == 2 && q[0] == "print" && var_of(q[1]) >= 0, "counting",
                 "{}: question is '{}'; expected 'print v' with v a variable", where, js["question"].get<std::string>());
    const int qv = var_of(q[1]);
    COPPER_CHECK(set[qv], "counting", "{}: the question asks for '{}', which the context never sets", where, q[1]);
    COPPER_CHECK(a.size() == 1 && id(a[0]) >= 26 && id(a[0]) <= 26 + kMaxVal, "counting",
                 "{}: answer '{}' is not a number 0..10", where, js["answer"].get<std::string>());
    COPPER_CHECK(std::stoll(a[0]) == val[qv], "counting", "{}: answer is {} but running the context gives {} = {}",
                 where, a[0], q[1], val[qv]);
    ex.tokens.push_back(id("print"));
    ex.tokens.push_back(id(q[1]));
    ex.tokens.push_back(id(a[0]));
    ex.mask.assign(ex.tokens.size(), 0);
    ex.mask[ex.tokens.size() - 2] = 1;
    return ex;
  }

 private:
  bool try_sample(Generator& g, Example& ex) const {
    const int64_t steps = 3 + int64_t(g.below(uint64_t(cfg_.max_steps - 3 + 1)));
    // Set variables in the order they were first set (a Python dict's order).
    std::vector<int64_t> order, value(26, 0);
    std::vector<bool> is_set(26, false);
    for (int64_t s = 0; s < steps; ++s) {
      bool done = false;
      for (int trial = 0; trial < 100 && !done; ++trial) {
        const uint64_t r = g.below(58);  // weights set 1, pass 50, increment 7
        if (r < 1) {
          const int64_t v = int64_t(g.below(uint64_t(cfg_.vars)));
          if (!is_set[size_t(v)]) order.push_back(v);
          is_set[size_t(v)] = true;
          value[size_t(v)] = 0;
          for (const std::string& t : {std::string(1, char('a' + v)), std::string("="), std::string("0"), std::string(";")})
            ex.tokens.push_back(id(t));
          done = true;
        } else if (r < 51) {
          ex.tokens.push_back(id("pass;"));
          done = true;
        } else {
          if (order.empty()) continue;
          const int64_t v = order[size_t(g.below(order.size()))];
          if (value[size_t(v)] + 1 > kMaxVal) continue;
          ++value[size_t(v)];
          ex.tokens.push_back(id(std::string(1, char('a' + v))));
          ex.tokens.push_back(id("++;"));
          done = true;
        }
      }
      if (!done) return false;
    }
    if (order.empty()) return false;
    const int64_t q = order[size_t(g.below(order.size()))];
    ex.tokens.push_back(id("print"));
    ex.tokens.push_back(id(std::string(1, char('a' + q))));
    ex.tokens.push_back(id(std::to_string(value[size_t(q)])));
    ex.mask.assign(ex.tokens.size(), 0);
    ex.mask[ex.tokens.size() - 2] = 1;
    return true;
  }

  std::vector<std::string> vocab_;
};
}  // namespace

std::unique_ptr<Task> make_counting(const TaskConfig& cfg) { return std::make_unique<Counting>(cfg); }

}  // namespace copper::tasks
