// profile.cpp — the per-op profile of profile.h: rows, the table, the timing Backend.
#include "tensor/profile.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "tensor/backend.h"

namespace copper::profile {

namespace detail {
bool g_on = false;
std::atomic<DeviceWait> g_device_wait{nullptr};
}

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// What one thread has open: the phase, how deep the Scopes are nested, and the FLOPs and
// bytes the outermost open Scope has gathered from the ones inside it.
struct ThreadState {
  Phase phase = Phase::forward;
  int depth = 0;
  double flops = 0, bytes = 0;
};
thread_local ThreadState t_state;

// The rows of every thread, keyed by (phase, name). Never destroyed, so that the report at
// exit (an atexit handler) finds it alive whatever the order of static destructors.
struct Table {
  std::mutex mu;
  std::map<std::pair<int, std::string>, Row> rows;
  int64_t start_ns = now_ns();
  int64_t steps = 0;
};
Table& table() {
  static auto* t = new Table;
  return *t;
}

// Bytes a tensor occupies once, a broadcast dimension (stride 0) counted once.
double span_bytes(const Tensor& t) {
  if (!t.defined()) return 0;
  double n = double(dtype_size(t.dtype()));
  for (size_t i = 0; i < t.shape().size(); ++i)
    if (t.strides()[i] != 0) n *= double(t.shape()[i]);
  return n;
}
template <class... T>
double bytes_of(const T&... ts) {
  return (span_bytes(ts) + ...);
}

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::neg: return "neg";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::rsqrt: return "rsqrt";
    case UnaryOp::pow: return "pow";
    case UnaryOp::square: return "square";
    case UnaryOp::sin: return "sin";
    case UnaryOp::cos: return "cos";
    case UnaryOp::tanh: return "tanh";
    case UnaryOp::sigmoid: return "sigmoid";
    case UnaryOp::relu: return "relu";
    case UnaryOp::gelu_erf: return "gelu_erf";
    case UnaryOp::gelu_tanh: return "gelu_tanh";
    case UnaryOp::silu: return "silu";
    case UnaryOp::abs: return "abs";
    case UnaryOp::clamp: return "clamp";
    case UnaryOp::floor: return "floor";
    case UnaryOp::ceil: return "ceil";
  }
  return "unary";
}

const char* unary_backward_name(UnaryOp op) {
  // Kernels inside a backward node add to the node's row, so these names show only when a
  // backward kernel is called outside the engine (gradcheck, a hand-written backward).
  switch (op) {
    case UnaryOp::gelu_erf: return "gelu_erf_backward";
    case UnaryOp::gelu_tanh: return "gelu_tanh_backward";
    case UnaryOp::sigmoid: return "sigmoid_backward";
    case UnaryOp::silu: return "silu_backward";
    case UnaryOp::tanh: return "tanh_backward";
    default: return "unary_backward";
  }
}

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
    case BinaryOp::eq:
    case BinaryOp::ne:
    case BinaryOp::lt:
    case BinaryOp::le:
    case BinaryOp::gt:
    case BinaryOp::ge: return "compare";
  }
  return "binary";
}

const char* reduce_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
    case ReduceOp::argmax: return "argmax";
  }
  return "reduce";
}

// Every kernel of `inner`, each inside a Scope named after its op. The FLOP count is given
// for matmul only (2·M·N·K per batch entry); the other kernels are memory-bound, and for
// them the bytes they must read and write once are counted instead.
class TimingBackend final : public Backend {
 public:
  explicit TimingBackend(Backend* inner) : in_(*inner) {}
  const char* name() const override { return in_.name(); }

  void transfer(const Tensor& src, const Tensor& dst) override {
    Scope s("transfer", 0, bytes_of(src, dst));
    in_.transfer(src, dst);
  }
  void synchronize(Device d) override { in_.synchronize(d); }
  // Four rows: a change of dtype (autocast's casts) or not, between dense tensors or not.
  void copy(const Tensor& src, const Tensor& dst) override {
    const bool cast = src.dtype() != dst.dtype(), dense = src.is_contiguous() && dst.is_contiguous();
    Scope s(cast ? (dense ? "cast" : "cast (strided)") : (dense ? "copy" : "copy (strided)"), 0, bytes_of(src, dst));
    in_.copy(src, dst);
  }
  void fill(const Tensor& dst, double value) override {
    Scope s("fill", 0, bytes_of(dst));
    in_.fill(dst, value);
  }
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) override {
    Scope s(unary_name(op), 0, bytes_of(x, out));
    in_.unary(op, x, out, a, b);
  }
  void bias_gelu(const Tensor& x, const Tensor& bias, const Tensor& y, const Tensor& slope, int64_t rows,
                 int64_t n) override {
    Scope s("bias_gelu", 0, bytes_of(x, y, slope));
    in_.bias_gelu(x, bias, y, slope, rows, n);
  }
  void bias_gelu_backward(const Tensor& slope, const Tensor& g, const Tensor& dx, const Tensor& dbias, int64_t rows,
                          int64_t n) override {
    Scope s("bias_gelu_backward", 0, bytes_of(slope, g, dx));
    in_.bias_gelu_backward(slope, g, dx, dbias, rows, n);
  }
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& grad, const Tensor& out, double a,
                      double b) override {
    Scope s(unary_backward_name(op), 0, bytes_of(x, grad, out));
    in_.unary_backward(op, x, y, grad, out, a, b);
  }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    Scope s(binary_name(op), 0, bytes_of(a, b, out));
    in_.binary(op, a, b, out);
  }
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override {
    Scope s("where", 0, bytes_of(cond, a, b, out));
    in_.where(cond, a, b, out);
  }
  void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) override {
    Scope s(reduce_name(op), 0, bytes_of(x, out));
    in_.reduce(op, x, outer, n, inner, out);
  }
  // a: [batch, n, k], c: [batch, n, m]
  static double gemm_flop(const Tensor& a, const Tensor& c) {
    return 2.0 * double(c.shape()[0]) * double(c.shape()[1]) * double(a.shape()[2]) * double(c.shape()[2]);
  }
  void gemm(const Tensor& a, const Tensor& b, const Tensor& c, bool accumulate) override {
    Scope s("matmul", gemm_flop(a, c), bytes_of(a, b, c));
    in_.gemm(a, b, c, accumulate);
  }
  void gemm_bias(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& c) override {
    Scope s("matmul", gemm_flop(a, c), bytes_of(a, b, c));  // the bias's add is in the product's row
    in_.gemm_bias(a, b, bias, c);
  }
  void softmax(const Tensor& x, const Tensor& y, int64_t rows, int64_t n, bool log) override {
    Scope s(log ? "log_softmax" : "softmax", 0, bytes_of(x, y));
    in_.softmax(x, y, rows, n, log);
  }
  void softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t n,
                        bool log) override {
    Scope s("softmax_backward", 0, bytes_of(y, dy, dx));
    in_.softmax_backward(y, dy, dx, rows, n, log);
  }
  void causal_softmax(const Tensor& x, const Tensor& y, int64_t rows, int64_t t, int64_t n) override {
    Scope s("causal_softmax", 0, bytes_of(x, y));
    in_.causal_softmax(x, y, rows, t, n);
  }
  void causal_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t t,
                               int64_t n) override {
    Scope s("causal_softmax_backward", 0, bytes_of(y, dy, dx));
    in_.causal_softmax_backward(y, dy, dx, rows, t, n);
  }
  void cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& lse,
                     int64_t ignore_index) override {
    Scope s("cross_entropy", 0, bytes_of(logits, targets, loss, lse));
    in_.cross_entropy(logits, targets, loss, lse, ignore_index);
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, const Tensor& dlogits,
                              const Tensor& scale, int64_t ignore_index) override {
    Scope s("cross_entropy_backward", 0, bytes_of(logits, targets, lse, dlogits));
    in_.cross_entropy_backward(logits, targets, lse, dlogits, scale, ignore_index);
  }
  void cross_entropy_with_grad(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& lse,
                               const Tensor& dlogits, const Tensor& scale, int64_t ignore_index) override {
    Scope s("cross_entropy_with_grad", 0, bytes_of(logits, targets, loss, lse, dlogits));
    in_.cross_entropy_with_grad(logits, targets, loss, lse, dlogits, scale, ignore_index);
  }
  void rotate_pairs(const Tensor& x, const Tensor& cs, const Tensor& sn, const Tensor& out, int64_t outer, int64_t t,
                    int64_t p, bool inverse) override {
    Scope s("rotate_pairs", 0, bytes_of(x, cs, sn, out));
    in_.rotate_pairs(x, cs, sn, out, outer, t, p, inverse);
  }
  // About 10 flops per visible (query, key) pair each way: half of the rows x keys on average.
  void cope_positions(const Tensor& gate_logits, const Tensor& z, const Tensor& term, const Tensor& gates,
                      const Tensor& pos, int64_t rows, int64_t Tq, int64_t Tk, int64_t t0, int64_t npos) override {
    Scope s("cope_positions", 10.0 * double(rows) * double(Tk) / 2, bytes_of(gate_logits, z, term, gates, pos));
    in_.cope_positions(gate_logits, z, term, gates, pos, rows, Tq, Tk, t0, npos);
  }
  void cope_positions_backward(const Tensor& dterm, const Tensor& z, const Tensor& gates, const Tensor& pos,
                               const Tensor& dgate_logits, const Tensor& dz, int64_t rows, int64_t Tq, int64_t Tk,
                               int64_t t0, int64_t npos) override {
    Scope s("cope_positions_backward", 10.0 * double(rows) * double(Tk) / 2,
            bytes_of(dterm, z, gates, pos, dgate_logits, dz));
    in_.cope_positions_backward(dterm, z, gates, pos, dgate_logits, dz, rows, Tq, Tk, t0, npos);
  }
  // FLOPs of the products over the visible (query, key) pairs: two in the forward, the
  // recomputed q·kᵀ plus four in the backward.
  static double attention_flops(int64_t bh, int64_t Tq, int64_t Tk, int64_t Dh, int products) {
    const double pairs = double(bh) * double(Tq) * (double(Tk - Tq) + double(Tq + 1) / 2.0);
    return 2.0 * products * pairs * double(Dh);
  }
  bool has_fused_attention() const override { return in_.has_fused_attention(); }
  bool attention_takes_views() const override { return in_.attention_takes_views(); }
  bool attention_reads_cope_table() const override { return in_.attention_reads_cope_table(); }
  bool attention_rotates() const override { return in_.attention_rotates(); }
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, int64_t bh,
                 int64_t Tq, int64_t Tk, int64_t Dh, double scale, double p, uint64_t key,
                 const AttentionCope& cope, const AttentionRotation& rot, DType products) override {
    Scope s(cope.z.defined() ? "cope_attention" : "attention", attention_flops(bh, Tq, Tk, Dh, 2), 0);
    in_.attention(q, k, v, out, lse, bh, Tq, Tk, Dh, scale, p, key, cope, rot, products);
  }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv, int64_t bh,
                          int64_t Tq, int64_t Tk, int64_t Dh, double scale, double p, uint64_t key,
                          const AttentionCope& cope, const AttentionRotation& rot, DType products) override {
    Scope s(cope.z.defined() ? "cope_attention_backward" : "attention_backward", attention_flops(bh, Tq, Tk, Dh, 5),
            0);
    in_.attention_backward(q, k, v, out, lse, dout, dq, dk, dv, bh, Tq, Tk, Dh, scale, p, key, cope, rot, products);
  }
  void cumsum(const Tensor& x, const Tensor& out, int64_t outer, int64_t n, int64_t inner, bool reverse) override {
    Scope s("cumsum", 0, bytes_of(x, out));
    in_.cumsum(x, out, outer, n, inner, reverse);
  }
  void index_select(const Tensor& x, const Tensor& index, const Tensor& out, int64_t outer, int64_t n,
                    int64_t inner) override {
    Scope s("index_select", 0, span_bytes(index) + 2 * span_bytes(out));  // reads the rows it writes
    in_.index_select(x, index, out, outer, n, inner);
  }
  void index_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t outer, int64_t n,
                 int64_t inner) override {
    Scope s("index_add", 0, span_bytes(index) + 3 * span_bytes(src));  // reads src, reads and writes its rows of out
    in_.index_add(out, index, src, outer, n, inner);
  }
  void gather(const Tensor& x, const Tensor& index, const Tensor& out, int64_t outer, int64_t n, int64_t k,
              int64_t inner) override {
    Scope s("gather", 0, span_bytes(index) + 2 * span_bytes(out));
    in_.gather(x, index, out, outer, n, k, inner);
  }
  void scatter_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t outer, int64_t n, int64_t k,
                   int64_t inner) override {
    Scope s("scatter_add", 0, span_bytes(index) + 3 * span_bytes(src));
    in_.scatter_add(out, index, src, outer, n, k, inner);
  }
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y, const Tensor& mean,
                  const Tensor& rstd, int64_t rows, int64_t n, double eps) override {
    Scope s("layer_norm", 0, bytes_of(x, weight, bias, y, mean, rstd));
    in_.layer_norm(x, weight, bias, y, mean, rstd, rows, n, eps);
  }
  void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                           const Tensor& dy, const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                           int64_t rows, int64_t n) override {
    Scope s("layer_norm_backward", 0, bytes_of(x, weight, mean, rstd, dy, dx, dweight, dbias));
    in_.layer_norm_backward(x, weight, mean, rstd, dy, dx, dweight, dbias, rows, n);
  }
  void rms_norm(const Tensor& x, const Tensor& weight, const Tensor& y, const Tensor& rstd, int64_t rows, int64_t n,
                double eps) override {
    Scope s("rms_norm", 0, bytes_of(x, weight, y, rstd));
    in_.rms_norm(x, weight, y, rstd, rows, n, eps);
  }
  void rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                         const Tensor& dweight, int64_t rows, int64_t n) override {
    Scope s("rms_norm_backward", 0, bytes_of(x, weight, rstd, dy, dx, dweight));
    in_.rms_norm_backward(x, weight, rstd, dy, dx, dweight, rows, n);
  }
  void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, double lr, double b1, double b2,
                  double eps, double wd, double bc1, double bc2) override {
    // reads p, g, m, v and writes p, m, v
    Scope s("adamw_step", 0, bytes_of(p, g, m, v) + bytes_of(p, m, v));
    in_.adamw_step(p, g, m, v, lr, b1, b2, eps, wd, bc1, bc2);
  }
  // Forwarded as a whole (a GPU does it in one launch), so one call of the adamw_step row is
  // the optimizer's whole step.
  void adamw_steps(const std::vector<AdamWParam>& params, double lr, double b1, double b2, double eps) override {
    double bytes = 0;
    for (const AdamWParam& a : params) bytes += bytes_of(a.p, a.g, a.m, a.v) + bytes_of(a.p, a.m, a.v);
    Scope s("adamw_step", 0, bytes);
    in_.adamw_steps(params, lr, b1, b2, eps);
  }
  void dropout_mask(const Tensor& out, double p, uint64_t key) override {
    Scope s("dropout_mask", 0, bytes_of(out));
    in_.dropout_mask(out, p, key);
  }
  void random_fill(const Tensor& out, bool normal, double a, double b, uint64_t key) override {
    Scope s(normal ? "randn" : "rand", 0, bytes_of(out));
    in_.random_fill(out, normal, a, b, key);
  }
  void sum_squares(const std::vector<Tensor>& xs, const Tensor& out) override {
    double bytes = 0;
    for (const Tensor& x : xs) bytes += bytes_of(x);
    Scope s("sum_squares", 0, bytes);
    in_.sum_squares(xs, out);
  }

 private:
  Backend& in_;
};

// The rate column: GFLOP/s where FLOPs were counted, else GB/s where bytes were, else blank.
std::string rate_str(const Row& r) {
  if (r.seconds <= 0) return "";
  char buf[32];
  if (r.flops > 0)
    std::snprintf(buf, sizeof buf, "%.1f GFLOP/s", r.flops / r.seconds / 1e9);
  else if (r.bytes > 0)
    std::snprintf(buf, sizeof buf, "%.1f GB/s", r.bytes / r.seconds / 1e9);
  else
    return "";
  return buf;
}

void print_at_exit() { report(stderr); }

// COPPER_PROFILE=1 (any value but empty or "0") turns the profiler on before main and
// prints the table at exit. runtime_init() may re-execute the program: exec runs no atexit
// handlers, so only the final process prints.
const bool g_from_env = [] {
  const char* v = std::getenv("COPPER_PROFILE");
  if (!v || !*v || std::string(v) == "0") return false;
  enable(true);
  std::atexit(print_at_exit);
  return true;
}();

}  // namespace

void enable(bool on) {
  if (on && !detail::g_on) reset();
  detail::g_on = on;
}

void reset() {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  t.rows.clear();
  t.start_ns = now_ns();
  t.steps = 0;
}

void count_step() {
  if (!enabled()) return;
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  ++t.steps;
}

int64_t counted_steps() {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  return t.steps;
}

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::forward: return "forward";
    case Phase::backward: return "backward";
    case Phase::optimizer: return "optimizer";
  }
  return "?";
}

PhaseScope::PhaseScope(Phase p) : saved_(t_state.phase) { t_state.phase = p; }
PhaseScope::~PhaseScope() { t_state.phase = saved_; }

void set_device_wait(DeviceWait wait) { detail::g_device_wait.store(wait, std::memory_order_relaxed); }

void Scope::begin(const char* name, double flops, double bytes) {
  ThreadState& st = t_state;
  active_ = true;
  outermost_ = st.depth == 0;
  ++st.depth;
  if (outermost_) {
    name_ = name;
    st.flops = flops;
    st.bytes = bytes;
    if (DeviceWait wait = detail::g_device_wait.load(std::memory_order_relaxed)) wait();
    t0_ns_ = now_ns();
  } else {
    st.flops += flops;
    st.bytes += bytes;
  }
}

void Scope::end() {
  ThreadState& st = t_state;
  --st.depth;
  if (!outermost_) return;
  if (DeviceWait wait = detail::g_device_wait.load(std::memory_order_relaxed)) wait();
  const double dt = double(now_ns() - t0_ns_) * 1e-9;
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  Row& r = t.rows[{int(st.phase), name_}];
  if (r.calls == 0) {
    r.phase = st.phase;
    r.name = name_;
  }
  r.calls += 1;
  r.seconds += dt;
  r.flops += st.flops;
  r.bytes += st.bytes;
}

std::vector<Row> rows() {
  Table& t = table();
  std::vector<Row> out;
  {
    std::lock_guard<std::mutex> lock(t.mu);
    for (const auto& [key, r] : t.rows) out.push_back(r);
  }
  std::stable_sort(out.begin(), out.end(), [](const Row& a, const Row& b) {
    if (a.phase != b.phase) return int(a.phase) < int(b.phase);
    return a.seconds > b.seconds;
  });
  return out;
}

double wall_seconds() {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  return double(now_ns() - t.start_ns) * 1e-9;
}

void report(std::FILE* out, double total_s, int64_t steps) {
  const std::vector<Row> rs = rows();
  const bool whole_run = total_s <= 0;  // no step time given: shares of the wall time since enable()/reset()
  if (whole_run) total_s = wall_seconds();
  if (steps < 1) steps = counted_steps();
  const bool per_step = steps > 0;
  constexpr double kMs = 1e3;
  if (whole_run && per_step)
    std::fprintf(out, "\ncopper profile: %.1f ms of wall time since profiling began, %lld training step(s)\n",
                 total_s * kMs, (long long)steps);
  else if (whole_run)
    std::fprintf(out, "\ncopper profile: %.1f ms of wall time since profiling began (no training steps)\n",
                 total_s * kMs);
  else
    std::fprintf(out, "\ncopper profile: %lld step(s), %.2f ms per step\n", (long long)steps,
                 total_s * kMs / double(steps));
  std::fprintf(out, "%-9s %-26s %8s %11s %10s %7s  %s\n", "phase", "op", "calls", "total ms", "ms/step", "share",
               "GFLOP/s or GB/s");
  auto line = [&](const char* phase, const char* name, const std::string& calls, double s, const std::string& rate) {
    const std::string ms_per_step = per_step ? fmt::format("{:.3f}", s * kMs / double(steps)) : "-";
    std::fprintf(out, "%-9s %-26s %8s %11.2f %10s %6.1f%%  %s\n", phase, name, calls.c_str(), s * kMs,
                 ms_per_step.c_str(), 100.0 * s / total_s, rate.c_str());
  };
  double all_s = 0, phase_s = 0;
  for (size_t i = 0; i < rs.size(); ++i) {
    const Row& r = rs[i];
    line(phase_name(r.phase), r.name.c_str(), std::to_string(r.calls), r.seconds, rate_str(r));
    phase_s += r.seconds;
    all_s += r.seconds;
    if (i + 1 == rs.size() || rs[i + 1].phase != r.phase) {
      line(phase_name(r.phase), "= subtotal", "", phase_s, "");
      phase_s = 0;
    }
  }
  line("", "not in any row", "", total_s - all_s,
       whole_run ? "(everything outside kernels and backward nodes: start-up, data, bookkeeping, fused loops)"
                 : "(ops' checks and allocations, views, fused loops that bypass the Backend)");
  std::fflush(out);
}

Backend* timing_backend(Backend* inner) { return new TimingBackend(inner); }

}  // namespace copper::profile
