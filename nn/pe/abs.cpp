// abs.cpp — learned absolute positions (see abs.h).
#include "nn/pe/abs.h"

#include "tensor/ops.h"

namespace copper::nn {

AbsolutePE::AbsolutePE(const PEConfig& cfg) {
  weight = register_parameter("weight", randn({cfg.context, cfg.d_model}, DType::f32, cfg.init_gen, 0.0, cfg.embed_std));
}

Tensor AbsolutePE::embedding_term(int64_t T, DType dtype) const {
  COPPER_CHECK(T <= weight.size(0), "abs", "sequence of {} tokens but the table has {} positions. HINT: build the "
               "model with context >= {}, or use an encoding that extrapolates (rel, rope, alibi, cope)",
               T, weight.size(0), T);
  Tensor w = weight.narrow(0, 0, T);  // (T, D)
  return w.dtype() == dtype ? w : w.to(dtype);
}

std::shared_ptr<PositionEncoding> make_abs_pe(const PEConfig& cfg) {
  if (cfg.scope != PEConfig::Scope::Embedding) return nullptr;
  return std::make_shared<AbsolutePE>(cfg);
}

}  // namespace copper::nn
