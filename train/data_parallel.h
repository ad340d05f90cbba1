// data_parallel.h — what the trainer does differently when a run has several ranks
// (docs/08-data-parallel.md): each rank's share of the global batch, the start-up checks
// that all ranks run the same thing, and rank 0's weights and optimizer state sent to all.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "dist/comm.h"
#include "nn/optim.h"
#include "train/trainer.h"

namespace copper::train::dp {

// Rank r's rows of the global batch: [r*B/N, (r+1)*B/N). Throws when B < N.
Batch shard(const Batch& global, int rank, int ranks);

// The positions of `targets` that count in the loss (not kIgnoreIndex).
int64_t counted_targets(const Tensor& targets);

// Every rank passes what must be equal on all of them (the run config, the loop, the
// parameter names and shapes); a rank that differs from rank 0 stops every rank with an
// error naming the first differing fields. `what` names the thing compared in the message.
void check_same(dist::Communicator& comm, const nlohmann::json& mine, const std::string& what);

// A 64-bit hash (FNV-1a) of a tensor's bytes, for comparing data and weights across ranks
// (tensors on a GPU are copied to the host first).
uint64_t hash_bytes(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull);
uint64_t hash_tensors(const nn::NamedTensors& ts);

// Rank 0's weights and optimizer state (moments, step count) copied into every rank's, through
// `comm`, whose device() is where the weights are (the NCCL communicator for a model on a GPU).
void broadcast_weights_and_optimizer(dist::Communicator& comm, const nn::NamedTensors& weights, nn::Optimizer& opt);

}  // namespace copper::train::dp
