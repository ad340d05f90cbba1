// abs.cpp — learned absolute positions (see abs.h).
#include "nn/pe/abs.h"

#include "tensor/ops.h"

namespace copper::nn {

AbsolutePE::AbsolutePE(const PEConfig& cfg) {
  weight = register_parameter("weight", randn({cfg.context, cfg.d_model}, DType::f32, cfg.init_gen, 0.0, cfg.embed_std));
}

Tensor AbsolutePE::embedding_term(int64_t t0, int64_t T, DType dtype) {
  COPPER_CHECK(t0 >= 0 && T >= 0, "abs", "bad position range [{}, {})", t0, t0 + T);
  COPPER_CHECK(t0 + T <= weight.size(0), "abs", "positions [{}, {}) but the table has {} positions. HINT: build the "
               "model with context >= {}, keep prompt plus generated tokens within the context (or crop them), "
               "or use an encoding that extrapolates (rel, rope, alibi, cope)",
               t0, t0 + T, weight.size(0), t0 + T);
  Tensor w = weight.narrow(0, t0, T);  // (T, D)
  return w.dtype() == dtype ? w : w.to(dtype);
}

std::shared_ptr<PositionEncoding> make_abs_pe(const PEConfig& cfg) {
  if (cfg.scope != PEConfig::Scope::Embedding) return nullptr;
  return std::make_shared<AbsolutePE>(cfg);
}

}  // namespace copper::nn
