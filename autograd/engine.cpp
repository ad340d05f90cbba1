// engine.cpp — grad mode, recording, and the backward pass.
//
// backward() in three steps, all iterative so a graph a million ops deep is fine:
//  1. walk from the root and count, for every node, how many edges point at it;
//  2. seed the root with the given gradient (1 for a scalar);
//  3. take a node whose count is zero, run its closure on its outputs' gradients, add each
//     input gradient into the pending sum of the output it belongs to (or into a leaf's
//     .grad), decrement counts, repeat.
// Gradients are summed with `+`, which is what makes a tensor used twice work (in place when
// the running sum is nobody else's: owned_alone).
// With a LeafGradHook installed, step 1 also counts the edges into each leaf, and step 3
// calls the hook when a leaf's last edge has been processed (its gradient is final).
#include <atomic>
#include <unordered_map>
#include <unordered_set>

#include "autograd/grad_hook.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "tensor/ops.h"
#include "tensor/profile.h"

namespace copper {

namespace {
thread_local bool t_grad_enabled = true;
thread_local const LeafGradHook::Fn* t_leaf_hook = nullptr;
std::atomic<int64_t> g_node_seq{0};
}  // namespace

LeafGradHook::LeafGradHook(Fn fn) : fn_(std::move(fn)), previous_(t_leaf_hook) { t_leaf_hook = &fn_; }
LeafGradHook::~LeafGradHook() { t_leaf_hook = previous_; }
const LeafGradHook::Fn* LeafGradHook::current() { return t_leaf_hook; }

bool grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool on) { t_grad_enabled = on; }

bool any_requires_grad(const std::vector<Tensor>& ts) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : ts)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

namespace {

std::shared_ptr<Node> make_node(const char* op, const std::vector<Tensor>& inputs, Node::BackwardFn fn) {
  auto node = std::make_shared<Node>();
  node->op = op;
  node->backward = std::move(fn);
  node->seq = g_node_seq++;
  node->inputs.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    Edge e;
    if (t.defined() && t.requires_grad()) {
      if (t.grad_fn()) {
        e.node = t.grad_fn();
        e.output = t.grad_fn_output();
      } else {
        e.leaf = t.impl_ptr();
      }
    }
    node->inputs.push_back(std::move(e));
  }
  return node;
}

void attach(const std::shared_ptr<Node>& node, Tensor& out, int64_t output) {
  node->outputs.push_back(Node::Output{out.shape(), out.dtype()});
  out.impl()->grad_fn = node;
  out.impl()->grad_fn_output = output;
  out.impl()->requires_grad = true;
}

}  // namespace

void record_op(const char* op, Tensor& out, const std::vector<Tensor>& inputs,
               std::function<std::vector<Tensor>(const Tensor& grad_out)> fn) {
  if (!any_requires_grad(inputs)) return;
  auto node = make_node(op, inputs, [fn = std::move(fn)](const std::vector<Tensor>& g) { return fn(g[0]); });
  attach(node, out, 0);
}

void record_op_outputs(const char* op, std::vector<Tensor>& outs, const std::vector<Tensor>& inputs,
                       Node::BackwardFn fn) {
  if (!any_requires_grad(inputs)) return;
  auto node = make_node(op, inputs, std::move(fn));
  for (size_t i = 0; i < outs.size(); ++i) attach(node, outs[i], int64_t(i));
}

Node::~Node() {
  // Take over the inputs of every node that dies with this one, so that each destructor
  // below finds its inputs already moved out and returns without recursing.
  std::vector<std::shared_ptr<Node>> dying;
  for (Edge& e : inputs)
    if (e.node) dying.push_back(std::move(e.node));
  while (!dying.empty()) {
    std::shared_ptr<Node> n = std::move(dying.back());
    dying.pop_back();
    if (n.use_count() == 1)  // the last owner: steal its inputs before it is freed
      for (Edge& e : n->inputs)
        if (e.node) dying.push_back(std::move(e.node));
  }
}

namespace {

// True when nothing but this handle sees t's memory (no other tensor, view or saved tensor
// shares its storage) and each of its elements has a place of its own there (no broadcast
// view, whose elements share one). A pending sum like that can take the next gradient in
// place: one pass over memory, no new buffer. Any other, such as a gradient a backward
// passed on unchanged to two inputs, is summed into a new tensor.
bool owned_alone(const Tensor& t) {
  return t.impl_ptr().use_count() == 1 && t.impl()->storage.use_count() == 1 && t.is_dense();
}

// Add g into a leaf's .grad. The first gradient becomes the .grad as it is when nothing else
// sees it (owned_alone) and it is contiguous; otherwise it is copied, so that no two leaves
// (and no saved tensor) share a gradient buffer that an optimizer might later modify in place.
void accumulate_leaf(TensorImpl* leaf, const Tensor& g) {
  if (!leaf->grad) {
    if (g.dtype() == leaf->dtype && g.is_contiguous() && owned_alone(g)) {  // nothing else sees it: kept as it is
      leaf->grad = g.impl_ptr();
      return;
    }
    Tensor own = g.to(leaf->dtype);  // a new tensor when the dtype differs, else g itself
    leaf->grad = (own.impl() == g.impl() ? g.clone() : own).impl_ptr();
  } else {
    Tensor acc(leaf->grad);
    add_(acc, g.to(leaf->dtype));
  }
}

}  // namespace

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  const char* op = "backward";
  COPPER_CHECK(requires_grad(), op, "this tensor {} does not require grad. HINT: set requires_grad_() on the inputs",
               repr_shape());
  Tensor seed = grad;
  if (!seed.defined()) {
    COPPER_CHECK(numel() == 1, op, "a gradient must be given for a non-scalar output {}. HINT: call backward(grad) or reduce with sum()/mean() first",
                 repr_shape());
    seed = ones(shape(), dtype(), device());
  }
  COPPER_CHECK(seed.shape() == shape(), op, "gradient shape {} does not match the output {}", shape_str(seed.shape()),
               shape_str(shape()));
  NoGradGuard no_grad;  // the backward pass itself records nothing
  profile::PhaseScope phase(profile::Phase::backward);  // what the profiler counts below is backward time

  const LeafGradHook::Fn* hook = LeafGradHook::current();
  if (!grad_fn()) {  // backward on a leaf: its gradient is the seed
    accumulate_leaf(impl(), seed);
    if (hook) (*hook)(impl());
    return;
  }

  // 1. dependency counts over the reachable graph (and, for the hook, edges into leaves)
  std::unordered_map<Node*, int> deps;
  std::unordered_map<TensorImpl*, int> leaf_edges;
  std::vector<Node*> stack{grad_fn().get()};
  std::unordered_set<Node*> seen{grad_fn().get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->inputs) {
      if (hook && e.leaf) leaf_edges[e.leaf.get()]++;
      if (!e.node) continue;
      deps[e.node.get()]++;
      if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }

  // 2./3. process nodes whose every consumer has been processed; pending holds, per node, the
  // running sum of the gradient of each of its outputs
  std::unordered_map<Node*, std::vector<Tensor>> pending;
  pending[grad_fn().get()].resize(grad_fn()->outputs.size());
  pending[grad_fn().get()][size_t(grad_fn_output())] = seed;
  std::vector<std::shared_ptr<Node>> ready{grad_fn()};
  auto consumed = [&](const std::shared_ptr<Node>& input) {
    if (input && --deps[input.get()] == 0) ready.push_back(input);
  };
  auto leaf_consumed = [&](const std::shared_ptr<TensorImpl>& leaf) {
    if (hook && leaf && --leaf_edges[leaf.get()] == 0) (*hook)(leaf.get());
  };
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.back());
    ready.pop_back();
    auto pit = pending.find(node.get());
    if (pit == pending.end()) {  // no gradient reached this node: pass the news upstream
      for (const Edge& e : node->inputs) {
        consumed(e.node);
        leaf_consumed(e.leaf);
      }
      continue;
    }
    std::vector<Tensor> g = std::move(pit->second);
    pending.erase(pit);
    COPPER_CHECK(node->backward != nullptr, op,
                 "the graph through '{}' was already freed by an earlier backward(). HINT: pass retain_graph=true to the first backward() to call it twice",
                 node->op);
    std::vector<Tensor> grads;
    {
      profile::Scope timed(node->op.c_str());  // one profile row per node name (when profiling)
      grads = node->backward(g);
    }
    g.clear();  // the node is done with its gradients: a tensor it passed on is now held only where it went
    if (!retain_graph) node->backward = nullptr;  // release the saved tensors now
    COPPER_CHECK(grads.size() == node->inputs.size(), op, "backward of '{}' returned {} gradients for {} inputs",
                 node->op, grads.size(), node->inputs.size());
    profile::Scope timed("(sum of gradients)");  // accumulate_leaf and the pending sums
    for (size_t i = 0; i < grads.size(); ++i) {
      const Edge& e = node->inputs[i];
      if (e.active() && grads[i].defined()) {
        const Shape& want = e.leaf ? e.leaf->shape : e.node->outputs[size_t(e.output)].shape;
        COPPER_CHECK(grads[i].shape() == want, op, "backward of '{}' gave gradient {} for its input {} of shape {}",
                     node->op, shape_str(grads[i].shape()), i, shape_str(want));
        if (e.leaf) {
          accumulate_leaf(e.leaf.get(), grads[i]);
        } else {
          std::vector<Tensor>& sums = pending[e.node.get()];
          sums.resize(e.node->outputs.size());
          Tensor& sum = sums[size_t(e.output)];
          if (!sum.defined())
            sum = grads[i];
          else if (owned_alone(sum) && sum.dtype() == grads[i].dtype())
            add_(sum, grads[i]);
          else
            sum = add(sum, grads[i]);
        }
      }
      consumed(e.node);
      leaf_consumed(e.leaf);
    }
  }
}

std::string graph_dot(const Tensor& root) {
  std::string out = "digraph copper {\n  rankdir=BT;\n  node [shape=box, fontname=\"monospace\"];\n";
  if (!root.defined() || !root.grad_fn()) return out + "}\n";
  std::vector<Node*> stack{root.grad_fn().get()};
  std::unordered_set<Node*> seen{root.grad_fn().get()};
  std::unordered_set<TensorImpl*> leaves;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    std::string shapes;
    for (const Node::Output& o : n->outputs) {
      if (!shapes.empty()) shapes += ' ';
      shapes += dtype_name(o.dtype) + shape_str(o.shape);
    }
    out += fmt::format("  n{} [label=\"{}\\n{}\"];\n", n->seq, n->op, shapes);
    for (const Edge& e : n->inputs) {
      if (e.node) {
        out += fmt::format("  n{} -> n{};\n", e.node->seq, n->seq);
        if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
      } else if (e.leaf) {
        if (leaves.insert(e.leaf.get()).second)
          out += fmt::format("  l{} [label=\"leaf\\n{}{}\", shape=ellipse];\n", fmt::ptr(e.leaf.get()),
                             dtype_name(e.leaf->dtype), shape_str(e.leaf->shape));
        out += fmt::format("  l{} -> n{};\n", fmt::ptr(e.leaf.get()), n->seq);
      }
    }
  }
  return out + "}\n";
}

}  // namespace copper
