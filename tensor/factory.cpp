// factory.cpp — tensors made from nothing: constants, ranges, random draws, vectors.
#include <cmath>
#include <cstring>

#include "tensor/backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace copper {

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_for(device).fill(t, value);
  return t;
}
Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.dtype(), t.device()); }
Tensor scalar_tensor(double v, DType dtype, Device device) { return full({}, v, dtype, device); }

namespace {
// Fill a CPU tensor of any dtype element by element from f(i), then move it to `device`.
template <class F>
Tensor generate(const Shape& shape, DType dtype, Device device, F f) {
  Tensor t = Tensor::empty(shape, dtype);
  const int64_t n = t.numel();
  COPPER_DISPATCH_ALL(dtype, "factory", [&] {
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = cpu::from_double<T>(f(i));
  });
  return t.to(device);
}
}  // namespace

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  COPPER_CHECK(step != 0, "arange", "step must be non-zero");
  const int64_t n = std::max<int64_t>(0, int64_t(std::ceil((end - start) / step)));
  return generate({n}, dtype, device, [&](int64_t i) { return start + double(i) * step; });
}
Tensor arange(int64_t end, DType dtype) { return arange(0, double(end), 1, dtype); }

namespace {
// rand/randn: one draw of the generator keys a Philox stream that the device's kernel expands
// (Backend::random_fill), so a tensor is made where it lives and has the same values on every
// device. bf16/f16 are drawn in f32 and rounded.
Tensor random_tensor(const char* op, const Shape& shape, DType dtype, Generator* gen, bool normal, double a, double b,
                     Device device) {
  COPPER_CHECK(is_floating(dtype), op, "makes floating tensors, got {}. HINT: use randint for integers", dtype_name(dtype));
  const uint64_t key = (gen ? *gen : default_generator()).next_u64();
  const DType compute = dtype == DType::f64 ? DType::f64 : DType::f32;
  Tensor t = Tensor::empty(shape, compute, device);
  backend_for(device).random_fill(t, normal, a, b, key);
  return compute == dtype ? t : t.to(dtype);
}
}  // namespace

Tensor rand(const Shape& shape, DType dtype, Generator* gen, double lo, double hi, Device device) {
  return random_tensor("rand", shape, dtype, gen, false, lo, hi, device);
}

Tensor randn(const Shape& shape, DType dtype, Generator* gen, double mean, double stddev, Device device) {
  return random_tensor("randn", shape, dtype, gen, true, mean, stddev, device);
}

Tensor randint(int64_t lo, int64_t hi, const Shape& shape, DType dtype, Generator* gen) {
  COPPER_CHECK(hi > lo, "randint", "empty range [{}, {})", lo, hi);
  Generator& g = gen ? *gen : default_generator();
  return generate(shape, dtype, kCPU, [&](int64_t) { return double(lo + int64_t(g.below(uint64_t(hi - lo)))); });
}

namespace {
template <class T>
Tensor from_values(const std::vector<T>& v, const Shape& shape) {
  Shape s = shape.empty() ? Shape{int64_t(v.size())} : shape;
  COPPER_CHECK(shape_numel(s) == int64_t(v.size()), "from_vector", "{} values for shape {} ({} elements)", v.size(),
               shape_str(s), shape_numel(s));
  Tensor t = Tensor::empty(s, dtype_of<T>());
  if (!v.empty()) std::memcpy(t.raw_data(), v.data(), v.size() * sizeof(T));
  return t;
}
}  // namespace

Tensor from_vector(const std::vector<float>& v, const Shape& s) { return from_values(v, s); }
Tensor from_vector(const std::vector<double>& v, const Shape& s) { return from_values(v, s); }
Tensor from_vector(const std::vector<int32_t>& v, const Shape& s) { return from_values(v, s); }
Tensor from_vector(const std::vector<int64_t>& v, const Shape& s) { return from_values(v, s); }

}  // namespace copper
