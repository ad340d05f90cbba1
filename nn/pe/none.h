// none.h — NoPE: no position encoding at all. Causal attention alone still lets a model
// infer positions (it can count how many tokens it sees), which makes NoPE a real baseline.
#pragma once
#include "nn/pe/position_encoding.h"

namespace copper::nn {

// Always nullptr: nothing to add anywhere.
std::shared_ptr<PositionEncoding> make_none_pe(const PEConfig& cfg);

}  // namespace copper::nn
