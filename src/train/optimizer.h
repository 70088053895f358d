// AdamW (decoupled weight decay) over a flat parameter vector, with a
// learning-rate schedule of linear warmup then cosine decay, and clipping of
// the global gradient norm.
#pragma once
#include <cstdint>
#include <vector>

namespace lmpress::train {

struct AdamWOptions {
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  double clip = 1.0;          // the gradient's global L2 norm is scaled down to this; 0: no clipping
  int64_t warmup = 0;         // steps of linear warmup from 0
  int64_t steps = 1;          // total steps: cosine decay after warmup, to min_lr_ratio · lr at the end
  double min_lr_ratio = 0.1;
};

// The learning rate of step s (0-based).
double learning_rate(const AdamWOptions& o, int64_t s);

template <class T>
class AdamW {
 public:
  // decay[i]: whether element i takes weight decay (2-D weights; not norms or biases).
  AdamW(const AdamWOptions& o, std::vector<uint8_t> decay);
  // One update of w by grad (grad is clipped in place, not zeroed); frozen
  // (may be null): elements that stay as they are (a pruned weight's zeros).
  // Returns the norm of the trained elements' gradient before clipping.
  double update(std::vector<T>& w, std::vector<T>& grad, const std::vector<uint8_t>* frozen);
  int64_t step() const { return t_; }
  // Per-element learning-rate factors (empty: 1 for all).
  std::vector<float> lr_factor;
  // Resuming: the moments and the step count.
  std::vector<float> m, v;
  int64_t t_ = 0;

 private:
  AdamWOptions o_;
  std::vector<uint8_t> decay_;
};

}  // namespace lmpress::train
