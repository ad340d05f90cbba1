// test_autograd.cpp — the engine: gradient accumulation, graph shapes (shared inputs,
// diamonds, 100k-deep chains), nodes with several outputs (split), grad mode, detach,
// retain_graph, release of saved tensors, no leaks over a training-like loop, and the
// Graphviz dump.
#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace copper;

namespace {
Tensor F(std::vector<double> v, Shape s = {}) { return from_vector(v, s); }
std::vector<double> V(const Tensor& t) { return t.to_vector<double>(); }
Tensor leaf(std::vector<double> v, Shape s = {}) { return F(v, s).requires_grad_(); }
int64_t allocated() { return allocator_for(kCPU).stats().allocated_bytes; }
}  // namespace

TEST(Autograd, SharedInputAccumulates) {
  // x * x: both edges of mul lead to x, and their gradients add: d(x^2)/dx = 2x
  Tensor x = leaf({1, -2, 3});
  sum(mul(x, x)).backward();
  EXPECT_EQ(V(x.grad()), (std::vector<double>{2, -4, 6}));
  // x used by two different ops: d(x + 3x)/dx = 4
  Tensor y = leaf({1, 2});
  sum(add(y, mul(y, 3.0))).backward();
  EXPECT_EQ(V(y.grad()), (std::vector<double>{4, 4}));
}

// The engine adds a gradient into a pending sum in place when the sum is nobody else's. It
// must not when the sum is shared (add passes one gradient to both inputs), a broadcast
// view (sum's backward), or the user's seed; the values show it did not.
TEST(Autograd, GradientSumsInPlaceOnlyWhenSafe) {
  Tensor x = leaf({1, 2, 3});
  Tensor u = mul(x, 1.0);                   // a node, so that its gradients are summed in pending
  Tensor loss = add(sum(add(u, u)),         // add: the same gradient to both edges into u
                    add(sum(u), sum(u)));    // sum: broadcast views of one element
  loss = add(loss, sum(mul(u, u)));          // and one gradient of its own: 2u
  loss.backward();
  EXPECT_EQ(V(x.grad()), (std::vector<double>{6, 8, 10}));  // 2 + 2 + 2u
  // an op whose backward returns a broadcast view (y_i = sum x, so dx_j = sum g: one element
  // seen three times); its view reaches w's pending sum first and is alone when 3·g comes
  auto spread = [](const Tensor& t) {
    Tensor y = mul(ones(t.shape(), t.dtype()), sum(t.detach()));
    record_op("spread", y, {t}, [](const Tensor& g) { return std::vector<Tensor>{sum(g).expand(g.shape())}; });
    return y;
  };
  Tensor z = leaf({1, 2, 3});
  Tensor w = mul(z, 1.0);
  add(sum(mul(w, 3.0)), sum(spread(w))).backward();
  EXPECT_EQ(V(z.grad()), (std::vector<double>{6, 6, 6}));  // 3 + 3
  // a seed the user keeps is not written
  Tensor y = leaf({1, 2});
  Tensor v = mul(y, 1.0);
  Tensor out = add(v, mul(v, 2.0));
  Tensor seed = F({1, 1}, {2});
  out.backward(seed);
  EXPECT_EQ(V(seed), (std::vector<double>{1, 1}));
  EXPECT_EQ(V(y.grad()), (std::vector<double>{3, 3}));
}

// A linear layer's weight gradient comes out of matmul's backward in the weight's own [out, in]
// layout (g^T x, handed back transposed through Wᵀ's view) and the engine keeps it as the
// .grad; the values are the product's. Two leaves given one gradient tensor (add passes g to
// both) still get buffers of their own.
TEST(Autograd, WeightGradientsArriveInTheirLayoutAndLeavesShareNoBuffer) {
  Generator gen(4);
  const Tensor x = randn({7, 5}, DType::f64, &gen), r = randn({7, 3}, DType::f64, &gen);
  Tensor w = randn({3, 5}, DType::f64, &gen).requires_grad_(), b = randn({3}, DType::f64, &gen).requires_grad_();
  sum(mul(linear(x, w, b), r)).backward();
  ASSERT_TRUE(w.grad().is_contiguous());
  EXPECT_EQ(w.grad().shape(), (Shape{3, 5}));
  const std::vector<double> want = V(matmul(r.t(), x)), got = V(w.grad());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12) << i;
  Tensor p = leaf({1, 2}), q = leaf({3, 4});
  sum(mul(add(p, q), 2.0)).backward();
  EXPECT_EQ(V(p.grad()), (std::vector<double>{2, 2}));
  EXPECT_NE(p.grad().raw_data(), q.grad().raw_data());
  Tensor pg = p.grad();
  add_(pg, F({5, 5}));  // an optimizer writing one leaf's gradient must not change the other's
  EXPECT_EQ(V(q.grad()), (std::vector<double>{2, 2}));
}

TEST(Autograd, DiamondGraph) {
  //      x
  //     / \         a = 2x, b = x^2, out = a * b = 2x^3, d/dx = 6x^2
  //    a   b
  //     \ /
  //     out
  Tensor x = leaf({1, 2});
  Tensor a = mul(x, 2.0), b = square(x);
  sum(mul(a, b)).backward();
  EXPECT_EQ(V(x.grad()), (std::vector<double>{6, 24}));
  // a deeper diamond, checked numerically
  auto f = [](const std::vector<Tensor>& in) {
    Tensor h = tanh(in[0]);
    Tensor l = mul(h, in[1]), r = exp(h);
    return add(matmul(l, r.t()), sum(h));
  };
  Generator g(3);
  GradcheckResult res = gradcheck(f, {randn({2, 3}, DType::f64, &g).requires_grad_(),
                                      randn({2, 3}, DType::f64, &g).requires_grad_()});
  EXPECT_TRUE(res.ok) << res.message;
}

TEST(Autograd, GradientsThroughViewsOfALeaf) {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  // rows through a transpose and a narrow, plus a flipped copy
  Tensor y = add(sum(x.t().narrow(0, 1, 2)), sum(mul(x.flip({1}), F({1, 2, 3}))));
  y.backward();
  // first term: 1 on columns 1, 2; second: flip puts weight 3 on column 0, 2 on 1, 1 on 2
  EXPECT_EQ(V(x.grad()), (std::vector<double>{3, 3, 2, 3, 3, 2}));
}

TEST(Autograd, RequiresGradPropagation) {
  Tensor a = leaf({1, 2}), b = F({3, 4});
  EXPECT_TRUE(a.is_leaf());
  EXPECT_TRUE(add(a, b).requires_grad());
  EXPECT_FALSE(add(b, b).requires_grad());
  Tensor c = mul(a, b);
  EXPECT_FALSE(c.is_leaf());
  EXPECT_NE(c.grad_fn(), nullptr);
  EXPECT_EQ(c.grad_fn()->op, "mul");
  EXPECT_THROW(c.requires_grad_(), Error);  // only leaves
  // a constant operand gets no gradient; the other does
  sum(c).backward();
  EXPECT_EQ(V(a.grad()), (std::vector<double>{3, 4}));
  EXPECT_FALSE(b.grad().defined());
  EXPECT_FALSE(c.grad().defined());  // non-leaves keep no .grad
}

TEST(Autograd, NoGradGuard) {
  Tensor x = leaf({1, 2});
  EXPECT_TRUE(grad_enabled());
  {
    NoGradGuard ng;
    EXPECT_FALSE(grad_enabled());
    Tensor y = mul(x, x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    {
      NoGradGuard nested;
      EXPECT_FALSE(grad_enabled());
    }
    EXPECT_FALSE(grad_enabled());  // the inner guard restores the outer state
  }
  EXPECT_TRUE(grad_enabled());
  EXPECT_TRUE(mul(x, x).requires_grad());
  // grad mode is per thread
  bool other_thread = false;
  {
    NoGradGuard ng;
    std::thread t([&] { other_thread = grad_enabled(); });
    t.join();
  }
  EXPECT_TRUE(other_thread);
}

TEST(Autograd, DetachCutsTheGraph) {
  Tensor x = leaf({1, 2});
  Tensor d = mul(x, 3.0).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  EXPECT_EQ(V(d), (std::vector<double>{3, 6}));
  Tensor x2 = x.detach();
  EXPECT_TRUE(x2.same_storage(x));  // no copy
  // y = x * stop_gradient(x): the detached factor acts as a constant
  sum(mul(x, x.detach())).backward();
  EXPECT_EQ(V(x.grad()), (std::vector<double>{1, 2}));
}

TEST(Autograd, RetainGraph) {
  Tensor x = leaf({1, 2});
  Tensor loss = sum(exp(x));
  loss.backward();
  std::vector<double> g1 = V(x.grad());
  // the saved tensors are gone: a second backward is a clear error
  try {
    loss.backward();
    FAIL() << "second backward without retain_graph did not throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("[backward] the graph through 'sum' was already freed"), std::string::npos) << m;
    EXPECT_NE(m.find("retain_graph=true"), std::string::npos) << m;
  }
  // with retain_graph the graph survives, and gradients accumulate
  x.zero_grad();
  Tensor loss2 = sum(exp(x));
  loss2.backward(Tensor(), /*retain_graph=*/true);
  loss2.backward();
  std::vector<double> g2 = V(x.grad());
  EXPECT_DOUBLE_EQ(g2[0], 2 * g1[0]);
  EXPECT_DOUBLE_EQ(g2[1], 2 * g1[1]);
}

TEST(Autograd, BackwardSeedsAndLeafGrads) {
  Tensor x = leaf({1, 2, 3});
  Tensor y = mul(x, 2.0);
  EXPECT_THROW(y.backward(), Error);  // non-scalar needs a gradient
  y.backward(F({1, 0, -1}));
  EXPECT_EQ(V(x.grad()), (std::vector<double>{2, 0, -2}));
  x.set_grad(F({5, 5, 5}));
  EXPECT_EQ(V(x.grad()), (std::vector<double>{5, 5, 5}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  EXPECT_THROW(x.set_grad(F({1})), Error);
  // backward on a leaf itself: its gradient is the seed
  Tensor s = leaf({4});
  s.backward();
  EXPECT_EQ(V(s.grad()), (std::vector<double>{1}));
  // an f32 leaf fed through an f64 computation gets an f32 gradient
  Tensor x32 = ones({2}).requires_grad_();
  sum(x32.to(DType::f64)).backward();
  EXPECT_EQ(x32.grad().dtype(), DType::f32);
}

// split returns its pieces under one node with an output per piece. Its backward runs once,
// after every piece's consumers, and sees each piece's summed gradient (none for a piece
// that was not used).
TEST(Autograd, SplitIsOneNodeWithAnOutputPerPiece) {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {6});
  std::vector<Tensor> p = split(x, std::vector<int64_t>{1, 2, 3});
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].grad_fn(), p[2].grad_fn());
  EXPECT_EQ(p[2].grad_fn_output(), 2);
  EXPECT_EQ(p[0].grad_fn()->outputs.size(), 3u);
  // piece 1 unused, piece 2 used twice (its gradients summed before split's backward runs)
  Tensor loss = add(sum(mul(p[0], 5.0)), sum(mul(p[2], p[2])));
  loss.backward(Tensor(), /*retain_graph=*/true);
  EXPECT_EQ(V(x.grad()), (std::vector<double>{5, 0, 0, 8, 10, 12}));
  loss.backward();  // the node runs again on a retained graph: the gradients add up
  EXPECT_EQ(V(x.grad()), (std::vector<double>{10, 0, 0, 16, 20, 24}));
  // the graph dump shows one split node with the shapes of its three outputs
  const std::string dot = graph_dot(loss);
  EXPECT_NE(dot.find("split\\nf64[1] f64[2] f64[3]"), std::string::npos) << dot;
  // backward seeded at one piece itself
  Tensor y = leaf({1, 2, 3, 4}, {2, 2});
  std::vector<Tensor> q = chunk(y, 2, 1);
  q[1].backward(F({7, 8}, {2, 1}));
  EXPECT_EQ(V(y.grad()), (std::vector<double>{0, 7, 0, 8}));
}

// When the pieces' gradients are the pieces of one buffer (as the fused attention writes dq,
// dk and dv), split passes that buffer on instead of copying; in any other arrangement it
// copies, and the values are the same either way.
TEST(Autograd, SplitPassesOnGradientsWrittenSideBySide) {
  const Tensor buf = F({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, {2, 7});
  // `pieces(buf)` are the gradients a two-input op gives its inputs of shapes (2, 2) and (2, 4)
  auto run = [&](const std::function<std::vector<Tensor>(const Tensor&)>& pieces, Tensor* seen) {
    Tensor x = leaf(std::vector<double>(12, 0.0), {2, 6});
    Tensor probe = x.detach();  // records the gradient that reaches x from split
    record_op("probe", probe, {x}, [seen](const Tensor& g) {
      *seen = g;
      return std::vector<Tensor>{g};
    });
    std::vector<Tensor> p = split(probe, std::vector<int64_t>{2, 4}, 1);
    Tensor out = zeros({1}, DType::f64);
    record_op("pair", out, {p[0], p[1]}, [pieces, buf](const Tensor&) { return pieces(buf); });
    out.backward(F({1}, {1}));
    return V(x.grad());
  };
  Tensor seen, made;
  // in place: the buffer's first six columns, pieces where split put them
  auto in_place = [&made](const Tensor& b) {
    made = b.narrow(1, 0, 6).contiguous();
    return std::vector<Tensor>{made.narrow(1, 0, 2), made.narrow(1, 2, 4)};
  };
  EXPECT_EQ(run(in_place, &seen), (std::vector<double>{1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13}));
  EXPECT_TRUE(seen.same_storage(made));
  // pieces of a (2, 7) buffer: in order, but with a gap between rows, so copied
  auto gapped = [](const Tensor& b) { return std::vector<Tensor>{b.narrow(1, 0, 2), b.narrow(1, 2, 4)}; };
  EXPECT_EQ(run(gapped, &seen), (std::vector<double>{1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13}));
  EXPECT_FALSE(seen.same_storage(buf));
  // the pieces swapped in the buffer, so copied
  auto swapped = [&made](const Tensor& b) {
    made = b.narrow(1, 0, 6).contiguous();
    return std::vector<Tensor>{made.narrow(1, 4, 2), made.narrow(1, 0, 4)};
  };
  EXPECT_EQ(run(swapped, &seen), (std::vector<double>{5, 6, 1, 2, 3, 4, 12, 13, 8, 9, 10, 11}));
  EXPECT_FALSE(seen.same_storage(made));
}

TEST(Autograd, LeafGradIsNotAliased) {
  // the first gradient is copied into .grad, so updating it in place touches nothing else
  Tensor a = leaf({1, 2}), b = leaf({3, 4});
  sum(add(a, b)).backward();
  EXPECT_FALSE(a.grad().same_storage(b.grad()));
}

TEST(Autograd, SavedTensorsAreReleasedAfterBackward) {
  const int64_t n = 1 << 16;  // 512 KiB per f64 tensor
  Tensor x = randn({n}, DType::f64).requires_grad_();
  std::weak_ptr<Storage> h_storage;
  const int64_t base = allocated();
  Tensor loss;
  {
    Tensor h = exp(x);    // saved by exp (as its output) and by sin (as its input)
    Tensor h2 = sin(h);   // saved by sin (as its output)
    loss = sum(h2);
    h_storage = h.impl()->storage;
  }
  // only the graph keeps h and h2 alive now
  EXPECT_FALSE(h_storage.expired());
  EXPECT_GE(allocated() - base, 2 * n * 8);
  loss.backward();
  EXPECT_TRUE(h_storage.expired()) << "exp/sin still hold their saved tensors after backward";
  // what remains beyond the baseline: x.grad and the scalar loss
  EXPECT_LE(allocated() - base, n * 8 + 1024);
}

TEST(Autograd, HundredThousandOpChainWithoutRecursion) {
  Tensor x = leaf({0.5});
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = add(y, 1e-6);
  EXPECT_NEAR(y.item(), 0.5 + 0.1, 1e-9);
  y.backward();
  EXPECT_EQ(V(x.grad()), (std::vector<double>{1}));
  // and freeing the 100k-node graph must not recurse either
  y = Tensor();
  Tensor z = x;
  for (int i = 0; i < 100000; ++i) z = mul(z, 1.0);
  z = Tensor();  // dropped without a backward
  SUCCEED();
}

TEST(Autograd, TrainingLoopDoesNotLeak) {
  // linear regression with manual SGD; every step must end with the memory it started with
  Generator g(11);
  Tensor xs = randn({32, 8}, DType::f32, &g), w_true = randn({8, 1}, DType::f32, &g);
  Tensor ys = matmul(xs, w_true);
  Tensor w = zeros({8, 1}).requires_grad_();
  Tensor b = zeros({1}).requires_grad_();
  auto step = [&] {
    Tensor pred = add(matmul(xs, w), b);
    Tensor loss = mean(square(sub(pred, ys)));
    loss.backward();
    {
      NoGradGuard ng;
      add_(w, w.grad(), -0.1);
      add_(b, b.grad(), -0.1);
    }
    w.zero_grad();
    b.zero_grad();
    return loss.item();
  };
  double first = step();
  const int64_t after_first = allocated();
  double last = 0;
  for (int i = 0; i < 300; ++i) last = step();
  EXPECT_EQ(allocated(), after_first) << "memory grew over 300 steps";
  EXPECT_LT(last, first * 1e-3);  // and it learned
}

TEST(Autograd, GraphDotNamesTheOps) {
  Tensor x = leaf({1, 2}), w = leaf({1, 2, 3, 4}, {2, 2});
  Tensor y = sum(tanh(add(matmul(x, w), x)));
  std::string dot = graph_dot(y);
  EXPECT_EQ(dot.rfind("digraph copper {", 0), 0u) << dot;
  for (const char* op : {"matmul", "add", "tanh", "sum", "leaf"}) EXPECT_NE(dot.find(op), std::string::npos) << op;
  EXPECT_NE(dot.find("->"), std::string::npos);
  EXPECT_EQ(graph_dot(F({1})), "digraph copper {\n  rankdir=BT;\n  node [shape=box, fontname=\"monospace\"];\n}\n");
}

TEST(Autograd, SmallNetworkGradcheck) {
  // embedding -> linear -> gelu -> layer_norm -> linear -> cross_entropy, end to end
  Generator g(5);
  Tensor ids = from_vector(std::vector<int64_t>{1, 3, 3, 0});
  Tensor targets = from_vector(std::vector<int64_t>{2, 0, -100, 1});
  auto f = [&](const std::vector<Tensor>& p) {
    Tensor h = embedding(p[0], ids);                  // [4, 3]
    h = gelu(linear(h, p[1], p[2]));                  // [4, 5]
    h = layer_norm(h, p[3], Tensor());                // [4, 5]
    return cross_entropy(linear(h, p[4]), targets);   // logits [4, 3]
  };
  std::vector<Tensor> params = {randn({4, 3}, DType::f64, &g), randn({5, 3}, DType::f64, &g),
                                randn({5}, DType::f64, &g), randn({5}, DType::f64, &g), randn({3, 5}, DType::f64, &g)};
  for (Tensor& p : params) p.requires_grad_();
  GradcheckResult r = gradcheck(f, params);
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.num_checked, 12 + 15 + 5 + 5 + 15);
}
