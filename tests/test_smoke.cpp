#include <gtest/gtest.h>
#include "tensor/ops.h"
#include "autograd/grad_mode.h"
using namespace copper;
TEST(Smoke, AddBackward) {
  Tensor a = from_vector(std::vector<double>{1, 2, 3}).requires_grad_();
  Tensor b = from_vector(std::vector<double>{4, 5, 6}).requires_grad_();
  Tensor y = sum(mul(a, b) + a);
  y.backward();
  EXPECT_DOUBLE_EQ(y.item(), 4 + 10 + 18 + 6);
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{5, 6, 7}));
  Tensor m = matmul(randn({3, 4}, DType::f64), randn({4, 5}, DType::f64));
  EXPECT_EQ(m.shape(), (Shape{3, 5}));
}
