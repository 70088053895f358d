// A Llama-family model as trainable master weights (T = float for training,
// double for the gradient checks): forward, loss and backward over a batch of
// sequences, with activation checkpointing per block (only each block's input
// is kept through the forward; a block's activations are recomputed when the
// backward reaches it) and the loss over the vocabulary taken a chunk of rows
// at a time, so a batch's logits never exist at once.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "train/grad_ops.h"

namespace lmpress::train {

// Fails naming `who` and the feature when the trainer does not run a model of
// config c: it runs Llama, Mistral (no window) and Qwen2 (q/k/v biases) blocks,
// tied or untied heads, either RoPE pairing, any rope scaling given as
// frequencies.
void check_trainable(const ModelConfig& c, const std::string& who);

// One weight of the model inside the flat parameter vector.
struct Param {
  std::string name;  // canonical (blk.0.attn_q.weight, ...)
  int64_t rows = 0, cols = 0;
  size_t offset = 0;
  int64_t size() const { return rows * cols; }
};

template <class T>
class TrainModel {
 public:
  // The model's weights (any stored type, dequantized) as T.
  explicit TrainModel(const Model& m);

  // The teacher's logits for sequence b of the batch, out[n, vocab].
  using TeacherFn = std::function<void(int64_t b, float* out)>;
  // Forward and backward over B sequences of n tokens (tokens[B·n], each
  // position predicting targets[B·n]): grad += scale · ∂(Σ loss)/∂w. Returns
  // the loss summed over the B·n positions; ce (may be null) += their summed
  // cross-entropy. teacher: null unless the loss needs one.
  double step(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t n, const Loss& loss,
              const TeacherFn& teacher, double scale, double* ce);
  // The summed cross-entropy of the positions, no gradients.
  double eval_ce(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t n);
  // Every position's logits, out[B·n, vocab].
  void logits(const int32_t* tokens, int64_t B, int64_t n, T* out);

  // The model's weights written back into m as F32 tensors (m.bind() after).
  void store(Model& m) const;

  const ModelConfig& cfg() const { return c_; }
  const std::vector<Param>& params() const { return params_; }
  // The parameter `name`, or null.
  const Param* find(const std::string& name) const;
  std::vector<T> w, grad;  // every parameter, flat in params() order

 private:
  struct LayerIdx {
    size_t attn_norm, wq, wk, wv, bq, bk, bv, wo, ffn_norm, gate, up, down;
  };
  static constexpr size_t kNone = ~size_t(0);
  size_t add(const std::string& name, int64_t rows, int64_t cols);
  T* W(size_t i) { return w.data() + params_[i].offset; }
  const T* W(size_t i) const { return w.data() + params_[i].offset; }
  T* G(size_t i) { return grad.data() + params_[i].offset; }
  T* Wopt(size_t i) { return i == kNone ? nullptr : W(i); }
  T* Gopt(size_t i) { return i == kNone ? nullptr : G(i); }

  void resize(int64_t B, int64_t n);
  void embed(const int32_t* tokens, T* x);
  // Block l on x_in (B·n rows) into x_out, keeping its activations in the buffers below.
  void block_forward(int64_t l, const T* x_in, T* x_out);
  // Backward of block l (its activations just recomputed): dx holds ∂/∂x_out and becomes ∂/∂x_in.
  void block_backward(int64_t l, const T* x_in, T* dx);
  // Forward through every block, keeping each block's input (xs_[l]).
  void forward_blocks(const int32_t* tokens);

  ModelConfig c_;
  std::vector<Param> params_;
  size_t embd_ = 0, out_norm_ = 0, out_ = 0;
  std::vector<LayerIdx> layers_;
  std::vector<std::vector<float>> rope_;  // per layer; empty: no RoPE
  int64_t B_ = 0, n_ = 0;
  // Activations of B_·n_ rows.
  std::vector<std::vector<T>> xs_;
  std::vector<T> xn1_, rstd1_, q_, k_, v_, P_, att_, x1_, xn2_, rstd2_, g_, u_, a_;
  std::vector<T> dxn_, dx1_, dq_, dk_, dv_, datt_, dg_, du_, da_, hn_, rstdf_, chunk_;
  std::vector<float> teacher_;
};

extern template class TrainModel<float>;
extern template class TrainModel<double>;

}  // namespace lmpress::train
