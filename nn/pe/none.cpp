// none.cpp — NoPE (see none.h).
#include "nn/pe/none.h"

namespace copper::nn {

std::shared_ptr<PositionEncoding> make_none_pe(const PEConfig&) { return nullptr; }

}  // namespace copper::nn
