// xor_mlp.cpp — standalone example: a small MLP learns XOR (build/bin/example_xor_mlp).
//
// The model and the training loop are in xor_mlp.h, so that `copper demo --xor` runs the
// same code; read that file top to bottom. This program only sets things up:
//   build/bin/example_xor_mlp            # 2000 steps, a loss line every 200
//   build/bin/example_xor_mlp 5000 0.3   # steps, learning rate
#include <cstdlib>

#include "examples/xor_mlp.h"
#include "tensor/error.h"
#include "tensor/runtime.h"

int main(int argc, char** argv) {
  copper::runtime_init(argc, argv);  // the right OpenBLAS kernel (see tensor/runtime.h)
  copper::examples::XorConfig cfg;
  if (argc > 1) cfg.steps = std::atoll(argv[1]);
  if (argc > 2) cfg.lr = std::atof(argv[2]);
  try {
    copper::examples::XorResult r = copper::examples::train_xor_mlp(cfg);
    return r.solved ? 0 : 1;
  } catch (const copper::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
