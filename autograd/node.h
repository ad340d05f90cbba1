// node.h — one recorded operation in the autograd graph.
//
// Every op that produces a tensor needing a gradient creates a Node: the op's name, an
// Edge per input (where that input's gradient must go), and a backward closure mapping
// the output's gradient to one gradient per input. The closure holds the tensors the
// backward needs ("saved tensors"); the engine drops it after use so that memory is
// released as the backward pass walks the graph (unless retain_graph).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace copper {

struct Node;

// Where a gradient goes: into another node, or into a leaf tensor's .grad, or nowhere.
struct Edge {
  std::shared_ptr<Node> node;          // set when the input was produced by an op
  std::shared_ptr<TensorImpl> leaf;    // set when the input is a leaf that requires grad
  bool active() const { return node || leaf; }
};

struct Node {
  using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out)>;

  std::string op;            // "matmul", "add", ... (error messages and graph dumps)
  std::vector<Edge> inputs;  // one per op input, in the op's argument order
  BackwardFn backward;       // empty once released
  Shape out_shape;           // to check the gradient shape
  DType out_dtype = DType::f32;
  int64_t seq = 0;           // creation order, for readable dumps

  // Frees the chain of input nodes iteratively: the default destructor would recurse once
  // per node, and a graph 100k ops deep would overflow the stack when its output is dropped.
  ~Node();
};

// Attach a node to `out` if grad mode is on and any input requires grad.
// `fn` returns one gradient per input (an undefined Tensor for "no gradient").
// Save what the backward needs inside `fn` by value, detached (x.detach()) so that
// the closure never holds the graph — and never `out` itself with its grad_fn,
// which would make a reference cycle.
void record_op(const char* op, Tensor& out, const std::vector<Tensor>& inputs, Node::BackwardFn fn);

// True if grad mode is on and any of the tensors requires grad.
bool any_requires_grad(const std::vector<Tensor>& ts);

// Graphviz dot text of the graph that produced `root` (docs/02-autograd.md shows one).
std::string graph_dot(const Tensor& root);

}  // namespace copper
