// grad_hook.h — a callback that backward() fires when a leaf's gradient is final.
//
// A leaf (a parameter) gets one gradient contribution per edge that points at it. During
// backward() the engine counts those edges first; when the last one has been processed the
// leaf's .grad will not change again in this pass, and the installed hook is called with
// the leaf (its .grad may be undefined if no contribution carried a gradient). Data-parallel
// training uses it to start the all-reduce of a bucket of gradients while the backward pass
// is still computing the gradients of earlier layers (train/grad_sync.h).
//
// The hook belongs to the calling thread and is installed for the guard's lifetime:
//   LeafGradHook hook([&](TensorImpl* leaf) { ... });
//   loss.backward();
#pragma once
#include <functional>

namespace copper {

struct TensorImpl;

class LeafGradHook {
 public:
  using Fn = std::function<void(TensorImpl* leaf)>;
  explicit LeafGradHook(Fn fn);
  ~LeafGradHook();  // restores the hook that was installed before (usually none)
  LeafGradHook(const LeafGradHook&) = delete;
  LeafGradHook& operator=(const LeafGradHook&) = delete;

  // The calling thread's hook, or nullptr.
  static const Fn* current();

 private:
  Fn fn_;
  const Fn* previous_;
};

}  // namespace copper
