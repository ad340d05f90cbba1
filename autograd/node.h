// node.h — one recorded operation in the autograd graph.
//
// Every op that produces a tensor needing a gradient creates a Node: the op's name, an
// Edge per input (where that input's gradient must go), and a backward closure mapping
// the outputs' gradients to one gradient per input. Most ops have one output; an op that
// returns several tensors at once (split) has one node for all of them, and its backward
// sees all their gradients together. The closure holds the tensors the backward needs
// ("saved tensors"); the engine drops it after use so that memory is released as the
// backward pass walks the graph (unless retain_graph).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace copper {

struct Node;

// Where a gradient goes: into one output of another node, or into a leaf tensor's .grad, or
// nowhere.
struct Edge {
  std::shared_ptr<Node> node;          // set when the input was produced by an op
  int64_t output = 0;                  // which of node's outputs the input is
  std::shared_ptr<TensorImpl> leaf;    // set when the input is a leaf that requires grad
  bool active() const { return node || leaf; }
};

struct Node {
  // One gradient per output in (undefined for an output that received none; a node with one
  // output is only run when its output received one), one per input out.
  using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grads_out)>;
  struct Output {
    Shape shape;  // to check the gradients that arrive
    DType dtype = DType::f32;  // shown with the shape by graph_dot
  };

  std::string op;               // "matmul", "add", ... (error messages and graph dumps)
  std::vector<Edge> inputs;     // one per op input, in the op's argument order
  std::vector<Output> outputs;  // one per tensor the op returned
  BackwardFn backward;          // empty once released
  int64_t seq = 0;              // creation order, for readable dumps

  // Frees the chain of input nodes iteratively: the default destructor would recurse once
  // per node, and a graph 100k ops deep would overflow the stack when its output is dropped.
  ~Node();
};

// Attach a node to `out` if grad mode is on and any input requires grad.
// `fn` maps the gradient of `out` to one gradient per input (an undefined Tensor for "no
// gradient"). Save what the backward needs inside `fn` by value, detached (x.detach()) so
// that the closure never holds the graph — and never `out` itself with its grad_fn, which
// would make a reference cycle.
void record_op(const char* op, Tensor& out, const std::vector<Tensor>& inputs,
               std::function<std::vector<Tensor>(const Tensor& grad_out)> fn);

// The same for an op with several outputs: one node shared by all of `outs`, whose `fn`
// receives their gradients in order (undefined where an output received none).
void record_op_outputs(const char* op, std::vector<Tensor>& outs, const std::vector<Tensor>& inputs,
                       Node::BackwardFn fn);

// True if grad mode is on and any of the tensors requires grad.
bool any_requires_grad(const std::vector<Tensor>& ts);

// Graphviz dot text of the graph that produced `root` (docs/02-autograd.md shows one): a box
// per node with its op and its outputs' dtypes and shapes, an ellipse per leaf.
std::string graph_dot(const Tensor& root);

}  // namespace copper
