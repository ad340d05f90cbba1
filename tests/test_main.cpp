// test_main.cpp — GoogleTest entry point shared by every test binary.
// runtime_init() first, so that tests run with the same OpenBLAS kernel as the program.
#include <gtest/gtest.h>

#include "tensor/runtime.h"

int main(int argc, char** argv) {
  copper::runtime_init(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
