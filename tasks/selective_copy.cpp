// selective_copy.cpp — selective copying (Gu & Dao 2023, as in the CoPE paper).
//
// `content` tokens drawn from `symbols` symbols (a, b, c, ...) are scattered among
// `blanks` blank tokens `_`; after the input and a separator `|` the model emits the
// content tokens in order. File line: {"input": "a _ _ c ...", "output": "a c ..."}.
#include <algorithm>
#include <numeric>

#include "tasks/task.h"

namespace copper::tasks {

namespace {
class SelectiveCopy final : public Task {
 public:
  explicit SelectiveCopy(const TaskConfig& c) : Task(c) {
    COPPER_CHECK(c.symbols >= 1 && c.symbols <= 26, "selective-copy", "symbols must lie in [1, 26], got {}", c.symbols);
    COPPER_CHECK(c.content >= 1 && c.blanks >= 0, "selective-copy", "need content >= 1 and blanks >= 0, got {} and {}",
                 c.content, c.blanks);
    for (int64_t i = 0; i < c.symbols; ++i) vocab_.push_back(std::string(1, char('a' + i)));
    vocab_.push_back("_");
    vocab_.push_back("|");
  }
  const std::vector<std::string>& vocab() const override { return vocab_; }
  int64_t blank() const { return cfg_.symbols; }
  int64_t sep() const { return cfg_.symbols + 1; }
  int64_t max_tokens() const override { return cfg_.blanks + 2 * cfg_.content + 1; }
  bool error_per_sample() const override { return true; }

  std::vector<std::pair<std::string, TaskConfig>> splits() const override {
    TaskConfig dense = cfg_, sparse = cfg_;
    dense.blanks = cfg_.blanks / 2;
    sparse.blanks = cfg_.blanks * 2;
    return {{"in", cfg_}, {"ood_dense", dense}, {"ood_sparse", sparse}};
  }

  Example build(const std::vector<int64_t>& input, const std::vector<int64_t>& output) const {
    Example ex;
    ex.tokens = input;
    ex.tokens.push_back(sep());
    ex.tokens.insert(ex.tokens.end(), output.begin(), output.end());
    ex.mask.assign(ex.tokens.size(), 0);
    for (size_t t = input.size(); t + 1 < ex.tokens.size(); ++t) ex.mask[t] = 1;  // from `|` on
    return ex;
  }

  Example sample(Generator& g) const override {
    const int64_t n = cfg_.blanks + cfg_.content;
    // Choose the content positions: a partial Fisher-Yates shuffle, then sort.
    std::vector<int64_t> pos(static_cast<size_t>(n));
    std::iota(pos.begin(), pos.end(), 0);
    for (int64_t i = 0; i < cfg_.content; ++i) std::swap(pos[size_t(i)], pos[size_t(i + int64_t(g.below(uint64_t(n - i))))]);
    std::vector<int64_t> chosen(pos.begin(), pos.begin() + cfg_.content);
    std::sort(chosen.begin(), chosen.end());
    std::vector<int64_t> input(size_t(n), blank()), output;
    for (int64_t p : chosen) {
      const int64_t s = int64_t(g.below(uint64_t(cfg_.symbols)));
      input[size_t(p)] = s;
      output.push_back(s);
    }
    return build(input, output);
  }

  std::string to_line(const Example& ex) const override {
    std::string in, out;
    bool after = false;
    for (size_t t = 0; t < ex.tokens.size(); ++t) {
      if (ex.tokens[t] == sep()) {
        after = true;
        continue;
      }
      std::string& s = after ? out : in;
      if (!s.empty()) s += ' ';
      s += vocab_[size_t(ex.tokens[t])];
    }
    return nlohmann::json{{"input", in}, {"output", out}}.dump();
  }

  std::vector<int64_t> tokens_of(const std::string& text, const std::string& field, const std::string& where,
                                 bool allow_blank) const {
    std::vector<int64_t> out;
    size_t i = 0;
    while (i < text.size()) {
      if (text[i] == ' ') {
        ++i;
        continue;
      }
      size_t j = text.find(' ', i);
      if (j == std::string::npos) j = text.size();
      const std::string tok = text.substr(i, j - i);
      const int64_t id = token_id(tok);
      COPPER_CHECK(id >= 0 && id != sep() && (allow_blank || id != blank()), "selective-copy",
                   "{}: '{}' token {} is '{}', not one of the {} symbols a..{}{}", where, field, out.size() + 1, tok,
                   cfg_.symbols, vocab_[size_t(cfg_.symbols - 1)], allow_blank ? " or the blank _" : "");
      out.push_back(id);
      i = j;
    }
    return out;
  }

  Example parse_line(const std::string& line, const std::string& where) const override {
    nlohmann::json js = parse_json_line(line, where, "selective-copy", R"({"input": ..., "output": ...})");
    COPPER_CHECK(js.is_object() && js.contains("input") && js.contains("output") && js["input"].is_string() &&
                     js["output"].is_string(),
                 "selective-copy", "{}: needs string fields \"input\" and \"output\"", where);
    auto input = tokens_of(js["input"].get<std::string>(), "input", where, true);
    auto output = tokens_of(js["output"].get<std::string>(), "output", where, false);
    std::vector<int64_t> content;
    for (int64_t t : input)
      if (t != blank()) content.push_back(t);
    COPPER_CHECK(!content.empty(), "selective-copy", "{}: the input has no content tokens", where);
    COPPER_CHECK(content == output, "selective-copy",
                 "{}: the output ({} tokens) is not the input's content tokens in order ({} tokens)", where,
                 output.size(), content.size());
    return build(input, output);
  }

 private:
  std::vector<std::string> vocab_;
};
}  // namespace

std::unique_ptr<Task> make_selective_copy(const TaskConfig& cfg) { return std::make_unique<SelectiveCopy>(cfg); }

}  // namespace copper::tasks
