// data_parallel.cpp — batch shards, start-up agreement checks and the start-up broadcast
// of a data-parallel run (see data_parallel.h).
#include "train/data_parallel.h"

#include <map>

#include <fmt/format.h>

#include "tensor/error.h"

namespace copper::train::dp {

Batch shard(const Batch& global, int rank, int ranks) {
  const int64_t B = global.ids.size(0);
  COPPER_CHECK(B >= ranks, "train", "the global batch has {} rows, fewer than the {} ranks: some ranks would have "
               "nothing to do. HINT: raise --batch to a multiple of the number of ranks, or start fewer ranks", B,
               ranks);
  const int64_t lo = int64_t(rank) * B / ranks, hi = int64_t(rank + 1) * B / ranks;
  Batch out;
  out.ids = global.ids.narrow(0, lo, hi - lo).contiguous();
  out.targets = global.targets.narrow(0, lo, hi - lo).contiguous();
  out.tokens = global.tokens * (hi - lo) / B;
  return out;
}

int64_t counted_targets(const Tensor& targets) {
  Tensor t = targets.contiguous();
  const int64_t* p = t.data<int64_t>();
  int64_t n = 0;
  for (int64_t i = 0, e = t.numel(); i < e; ++i) n += p[i] != kIgnoreIndex;
  return n;
}

void check_same(dist::Communicator& comm, const nlohmann::json& mine, const std::string& what) {
  const std::vector<std::string> all = comm.all_gather(mine.dump());
  for (int r = 1; r < comm.size(); ++r) {
    if (all[size_t(r)] == all[0]) continue;
    const nlohmann::json ref = nlohmann::json::parse(all[0]), other = nlohmann::json::parse(all[size_t(r)]);
    std::string diffs;
    int shown = 0;
    const nlohmann::json patch = nlohmann::json::diff(ref, other);
    for (const auto& op : patch) {
      if (shown == 3) {
        diffs += fmt::format("; and {} more", patch.size() - 3);
        break;
      }
      const nlohmann::json::json_pointer at(op.at("path").get<std::string>());
      const std::string a = ref.contains(at) ? ref.at(at).dump() : "(absent)";
      const std::string b = other.contains(at) ? other.at(at).dump() : "(absent)";
      diffs += fmt::format("{}{}: {} on rank 0, {} on rank {}", shown ? "; " : "", op.at("path").get<std::string>(), a,
                           b, r);
      ++shown;
    }
    COPPER_THROW("train", "rank {} was started with different {} than rank 0: {}. HINT: start every rank with the same "
                 "command line, config and data (with mpirun: one command, not a ':'-separated list)", r, what, diffs);
  }
}

uint64_t hash_bytes(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t hash_tensors(const nn::NamedTensors& ts) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const auto& [name, t] : ts) {
    Tensor c = t.to(kCPU).contiguous();
    h = hash_bytes(name.data(), name.size(), h);
    h = hash_bytes(c.raw_data(), size_t(c.numel()) * dtype_size(c.dtype()), h);
  }
  return h;
}

namespace {
void broadcast_tensor(dist::Communicator& comm, const std::string& name, const Tensor& t) {
  COPPER_CHECK(t.is_contiguous(), "train", "cannot broadcast '{}': it is not contiguous", name);
  COPPER_CHECK(t.device() == comm.device(), "train", "cannot broadcast '{}' on {} through the {} communicator, which "
               "works on {}", name, t.device().str(), comm.backend(), comm.device().str());
  comm.broadcast(t.raw_data(), t.numel() * int64_t(dtype_size(t.dtype())), 0);
}
}  // namespace

void broadcast_weights_and_optimizer(dist::Communicator& comm, const nn::NamedTensors& weights, nn::Optimizer& opt) {
  for (const auto& [name, t] : weights) broadcast_tensor(comm, name, t);
  // The optimizer's moments: rank 0 says which tensors it has (SGD allocates its momentum
  // on the first step), every other rank makes room for them and loads them.
  nlohmann::json head;
  std::map<std::string, Tensor> mine;
  if (comm.rank() == 0) {
    mine = opt.state_tensors();
    head["json"] = opt.state_json();
    head["tensors"] = nlohmann::json::array();
    for (const auto& [name, t] : mine)
      head["tensors"].push_back({{"name", name}, {"shape", t.shape()}, {"dtype", int(t.dtype())}});
  }
  head = nlohmann::json::parse(comm.broadcast_string(head.dump(), 0));
  std::map<std::string, Tensor> got;
  for (const auto& e : head.at("tensors")) {
    const std::string name = e.at("name").get<std::string>();
    Tensor t = comm.rank() == 0 ? mine.at(name).contiguous()
                                : Tensor::empty(e.at("shape").get<Shape>(), DType(e.at("dtype").get<int>()),
                                                comm.device());
    broadcast_tensor(comm, name, t);
    got.emplace(name, t);
  }
  if (comm.rank() != 0) opt.load_state(got, head.at("json"));
}

}  // namespace copper::train::dp
