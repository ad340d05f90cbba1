// position_encoding.cpp — the registry of position encodings and their '+' combinations.
#include "nn/pe/position_encoding.h"

#include <map>
#include <mutex>

#include "nn/pe/abs.h"
#include "nn/pe/alibi.h"
#include "nn/pe/cope.h"
#include "nn/pe/none.h"
#include "nn/pe/rel.h"
#include "nn/pe/rope.h"
#include "nn/pe/sinusoidal.h"
#include "tensor/ops.h"

namespace copper::nn {

void LogitTerms::add_before(const Tensor& t) { before_scale = before_scale.defined() ? before_scale + t : t; }
void LogitTerms::add_after(const Tensor& t) { after_scale = after_scale.defined() ? after_scale + t : t; }

namespace {

struct Entry {
  PEFactory factory;
  std::string description;
};

// The built-in encodings are listed here rather than registered from their own files:
// a static library drops object files nothing refers to, and their registrations with them.
struct Registry {
  std::mutex mu;
  std::map<std::string, Entry> entries;
  Registry() {
    entries["none"] = {make_none_pe, "no position encoding (NoPE): causal attention alone"};
    entries["sinusoidal"] = {make_sinusoidal_pe, "fixed sin/cos added to the token embeddings"};
    entries["abs"] = {make_abs_pe, "learned absolute positions added to the token embeddings"};
    entries["rel"] = {make_rel_pe, "learned relative positions: q_i·e[i-j] added to the logits"};
    entries["rope"] = {make_rope_pe, "rotary embedding: q and k rotated by their positions"};
    entries["alibi"] = {make_alibi_pe, "fixed per-head linear distance penalty on the logits"};
    entries["cope"] = {make_cope_pe, "contextual positions: gated counts, interpolated q·e[p] on the logits"};
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

std::vector<std::string> split_plus(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t p = name.find('+', start);
    parts.push_back(name.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return parts;
}

PEFactory lookup(const std::string& part, const std::string& whole) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.entries.find(part);
  if (it == r.entries.end())
    COPPER_THROW("position_encoding", "unknown position encoding '{}'{}. HINT: valid names are {}", part,
                 part == whole ? "" : fmt::format(" in '{}'", whole), [&] {
                   std::string s;
                   for (auto& [n, e] : r.entries) s += (s.empty() ? "" : ", ") + n;
                   return s + ", and combinations such as cope+rel, cope+rope";
                 }());
  return it->second.factory;
}

// Several encodings answering together: embedding terms and logit terms add up, q/k
// transforms apply in the order of the name. Each part is a child named after it.
class CombinedPE : public PositionEncoding {
 public:
  CombinedPE(std::string name, std::vector<std::pair<std::string, std::shared_ptr<PositionEncoding>>> parts)
      : name_(std::move(name)) {
    for (auto& [n, p] : parts) parts_.push_back(register_module(n, p));
  }
  std::string name() const override { return name_; }
  Tensor embedding_term(int64_t t0, int64_t T, DType dtype) override {
    Tensor sum;
    for (auto& p : parts_) {
      Tensor t = p->embedding_term(t0, T, dtype);
      if (t.defined()) sum = sum.defined() ? sum + t : t;
    }
    return sum;
  }
  void transform_qk(Tensor& q, Tensor& k, int64_t q_offset, int64_t k_offset) override {
    for (auto& p : parts_) p->transform_qk(q, k, q_offset, k_offset);
  }
  void add_logit_terms(const AttentionContext& ctx, LogitTerms& out) override {
    for (auto& p : parts_) p->add_logit_terms(ctx, out);
  }
  bool adds_logit_terms() const override {
    for (auto& p : parts_)
      if (p->adds_logit_terms()) return true;
    return false;
  }
  // The part that adds logit terms runs the fused attention when it is the only one.
  Tensor fused_attention(const AttentionContext& ctx, const Tensor& v, double scale, double dropout_p) override {
    PositionEncoding* only = nullptr;
    for (auto& p : parts_)
      if (p->adds_logit_terms()) {
        if (only) return Tensor();
        only = p.get();
      }
    return only ? only->fused_attention(ctx, v, scale, dropout_p) : Tensor();
  }
  Tensor last_gates() const override {
    for (auto& p : parts_)
      if (Tensor g = p->last_gates(); g.defined()) return g;
    return Tensor();
  }
  Tensor last_term() const override {
    for (auto& p : parts_)
      if (Tensor z = p->last_term(); z.defined()) return z;
    return Tensor();
  }

 private:
  std::string name_;
  std::vector<std::shared_ptr<PositionEncoding>> parts_;
};

}  // namespace

void check_position_encoding_name(const std::string& name) {
  auto parts = split_plus(name);
  for (size_t i = 0; i < parts.size(); ++i) {
    lookup(parts[i], name);
    for (size_t j = 0; j < i; ++j)
      COPPER_CHECK(parts[i] != parts[j], "position_encoding", "'{}' names '{}' twice", name, parts[i]);
  }
}

std::shared_ptr<PositionEncoding> make_position_encoding(const std::string& name, const PEConfig& cfg) {
  check_position_encoding_name(name);
  COPPER_CHECK(cfg.d_model > 0 && cfg.n_heads > 0 && cfg.d_model % cfg.n_heads == 0, "position_encoding",
               "d_model {} must be a positive multiple of n_heads {}", cfg.d_model, cfg.n_heads);
  std::vector<std::pair<std::string, std::shared_ptr<PositionEncoding>>> built;
  for (auto& part : split_plus(name))
    if (auto pe = lookup(part, name)(cfg)) built.emplace_back(part, pe);
  if (built.empty()) return nullptr;
  if (built.size() == 1) return built[0].second;
  return std::make_shared<CombinedPE>(name, std::move(built));
}

void register_position_encoding(const std::string& name, PEFactory factory, const std::string& description) {
  COPPER_CHECK(!name.empty() && name.find('+') == std::string::npos && name.find('.') == std::string::npos,
               "position_encoding", "invalid name '{}'. HINT: no '+' (it combines encodings) and no '.'", name);
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  COPPER_CHECK(!r.entries.count(name), "position_encoding", "'{}' is already registered", name);
  r.entries[name] = {std::move(factory), description};
}

std::vector<std::string> position_encoding_names() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> names;
  for (auto& [n, e] : r.entries) names.push_back(n);
  return names;
}

std::string position_encoding_description(const std::string& name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.entries.find(name);
  return it == r.entries.end() ? std::string() : it->second.description;
}

}  // namespace copper::nn
