#include <fmt/format.h>
#include "tensor/runtime.h"
int main(int argc, char** argv) {
  copper::runtime_init(argc, argv);
  auto r = copper::runtime_info();
  fmt::print("blas {} ({})\n", r.blas_core, r.coretype_src);
}
