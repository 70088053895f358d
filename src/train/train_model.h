// A Llama-family model as trainable master weights (T = float for training,
// double for the gradient checks): forward, loss and backward over a batch of
// sequences, with activation checkpointing per block (only each block's input
// is kept through the forward; a block's activations are recomputed when the
// backward reaches it) and the loss over the vocabulary taken a chunk of rows
// at a time, so a batch's logits never exist at once.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/lora.h"
#include "model/model.h"
#include "train/grad_ops.h"
#include "train/qat.h"

namespace lmpress::train {

// Fails naming `who` and the feature when the trainer does not run a model of
// config c: it runs Llama, Mistral (no window), Qwen2 (q/k/v biases) and
// Qwen3 (q/k norms) blocks, tied or untied heads, either RoPE pairing, any
// rope scaling given as frequencies, and their mixtures of experts (Mixtral,
// Qwen2-MoE with its gated shared expert, Qwen3-MoE, DeepSeekMoE; dense blocks
// among them). Routing: the top-k choice is held fixed in the backward; the
// router learns through the chosen experts' weights.
void check_trainable(const ModelConfig& c, const std::string& who);

// LoRA (Hu et al.): each targeted linear W gains B·A (A [rank, in], B [out,
// rank]; y = W·x + alpha/rank · B·(A·x)), A drawn as PEFT draws it (uniform in
// ±1/√in), B zero, so training starts from the model itself; the base
// weights stay frozen in the type they are stored in (QLoRA on a Q4_0 file).
struct LoraSpec {
  int64_t rank = 0;  // 0: no adapters (full fine-tuning)
  double alpha = 0;  // the adapters' scale is alpha / rank
  // Linears by their role in a block: q, k, v, o, gate, up, down.
  std::vector<std::string> targets;
  uint32_t seed = 0;
  double scale() const { return alpha / double(rank); }
};
// Parses --lora: r=N[,alpha=A][,targets=T[,T...]] with T one of q, k, v, o,
// gate, up, down, or qkvo (the attention's four), mlp (the feed-forward's
// three), all. Defaults: alpha = 2·r, targets all.
LoraSpec parse_lora(const std::string& s);

// One weight of the model inside the flat parameter vector.
struct Param {
  std::string name;  // canonical (blk.0.attn_q.weight, ...); adapters: <weight>.lora_a / .lora_b
  int64_t rows = 0, cols = 0;
  size_t offset = 0;
  bool trainable = true;  // frozen: no gradient is computed for it
  bool model_weight = true;  // false: a QAT scale or offset (<weight>.qat_scale, .qat_offset)
  int64_t size() const { return rows * cols; }
};

template <class T>
class TrainModel {
 public:
  // Full fine-tuning: the model's weights (any stored type, dequantized) as T.
  // With lora.rank > 0: the adapters are the parameters to train; the
  // model's weights stay where they are (m must outlive this), frozen, its
  // norms and biases copied as frozen parameters.
  explicit TrainModel(const Model& m, const LoraSpec& lora = {});

  // The teacher's distribution at the n positions of sequence b of the
  // batch (the pointers valid until the next call).
  using TeacherFn = std::function<TeacherLogits(int64_t b)>;
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

  // The model's weights written back into m as F32 tensors (m.bind() after);
  // with adapters, each targeted weight merged: W + alpha/rank · B·A.
  void store(Model& m) const;
  // Quantization-aware training: the weights named in `formats` take part
  // in the forward and in the input gradients rounded to their format and
  // back, as a file of those formats will hold them (train/qat.h); their
  // gradients pass to the f32 master weights straight through (STE). With
  // learn_scales, each weight's scales (and Q4_1/Q5_1 offsets) become
  // parameters (<weight>.qat_scale [rows, groups], .qat_offset), starting at
  // round to nearest's, for the weights whose format has them (qat.h's
  // learnable_scales; the others round to nearest). Full fine-tuning only;
  // call before reading w's size.
  // Returns how many weights it covers.
  int64_t set_fake_quant(const std::map<std::string, QatFormat>& formats, bool learn_scales = false);
  // With learned scales, once per optimizer step after its micro-batches'
  // step() calls (the rounding is the same for all of them): turns the
  // gradients reaching the rounded weights into the masters' and the scales'.
  void fake_quant_backward();
  // Per element of w, its learning-rate factor: 1, and qat.h's
  // scale_lr_factor for learned scales and offsets.
  std::vector<float> lr_factors() const;
  // How many weights have learned scales.
  int64_t learned_scale_weights() const;
  // The weights with learned scales, encoded on them for the file.
  QatEncoded encode_fake_quant() const;
  // The trained adapters (lora().rank > 0).
  LoraAdapter adapter() const;
  // Whether element i of w is trained (the optimizer leaves the others).
  std::vector<uint8_t> frozen_mask() const;

  const std::vector<Param>& params() const { return params_; }
  std::vector<T> w, grad;  // every parameter, flat in params() order

 private:
  static constexpr size_t kNone = ~size_t(0);
  // A linear layer: a trained matrix (param) or a frozen model tensor, with
  // or without an adapter (a, b).
  struct Lin {
    size_t param = kNone, a = kNone, b = kNone;
    const Tensor* frozen = nullptr;
    int64_t in = 0, out = 0;
    std::string name;  // the model's weight (blk.0.attn_q.weight, ...)
  };
  struct LayerIdx {
    size_t attn_norm, ffn_norm, bq, bk, bv, q_norm, k_norm;
    Lin q, k, v, o, gate, up, down;
    // A block with experts: the router [experts, dim], each expert's projections, the shared expert (sg.out 0:
    // none) and Qwen2-MoE's gate row for it.
    bool moe = false;
    Lin router, sg, su, sd;
    std::vector<Lin> eg, eu, ed;
    size_t shexp_gate = kNone;
  };
  size_t add(const std::string& name, int64_t rows, int64_t cols, bool trainable = true);
  Lin linear(const Model& m, const std::string& name, int64_t in, int64_t out, int64_t layer, const std::string& role);
  // y[n, out] = x·Wᵀ (+ bias) (+ the adapter's term).
  void lin_forward(const Lin& L, size_t bias, const T* x, int64_t n, T* y);
  // Gradients of what lin_forward computed: the weight's (when trained),
  // the bias's, the adapter's; dx (null: not wanted) overwritten or added to.
  void lin_backward(const Lin& L, size_t bias, const T* x, const T* dy, int64_t n, T* dx, bool accumulate_dx);
  T* W(size_t i) { return w.data() + params_[i].offset; }
  const T* W(size_t i) const { return w.data() + params_[i].offset; }
  T* G(size_t i) { return grad.data() + params_[i].offset; }
  T* Wopt(size_t i) { return i == kNone ? nullptr : W(i); }
  // A weight's QAT rounding: its format, the values it computes with, and
  // with learned scales their parameters (and int-N zero points, fixed).
  struct FakeQuant {
    QatFormat format;
    std::vector<T> values;  // empty: not quantized
    size_t scale = kNone, offset = kNone;
    std::vector<uint16_t> zero;
  };
  // The values a weight computes with: its fake-quantized copy under QAT.
  const T* Wf(size_t i) const { return i >= fq_.size() || fq_[i].values.empty() ? W(i) : fq_[i].values.data(); }
  void refresh_fake_quant();
  // f(param, fake quant, row, the row's master values as floats, its scales or null) on the threads.
  template <class F>
  void for_each_fake_quant_row(F&& f);
  T* Gopt(size_t i) { return i == kNone || !params_[i].trainable ? nullptr : G(i); }

  void resize(int64_t B, int64_t n);
  void embed(const int32_t* tokens, T* x);
  // RoPE on every row's q and k (each row at its position in its sequence);
  // inverse: the backward's rotation of their gradients.
  void rope_rows(int64_t l, T* q, T* k, bool inverse);
  // Block l on x_in (B·n rows) into x_out, keeping its activations in the buffers below.
  void block_forward(int64_t l, const T* x_in, T* x_out);
  // Backward of block l (its activations just recomputed): dx holds ∂/∂x_out and becomes ∂/∂x_in.
  void block_backward(int64_t l, const T* x_in, T* dx);
  // A block's mixture of experts on xn2_ into y[N, dim] (overwritten), keeping its activations; its backward
  // from dy into dxn_ (overwritten).
  void moe_forward(const LayerIdx& L, T* y);
  void moe_backward(const LayerIdx& L, const T* dy);
  // Forward through every block, keeping each block's input (xs_[l]).
  void forward_blocks(const int32_t* tokens);

  ModelConfig c_;
  std::vector<Param> params_;
  LoraSpec lora_;
  size_t embd_ = kNone, out_norm_ = 0;
  const Tensor* embd_frozen_ = nullptr;
  Lin head_;
  std::vector<LayerIdx> layers_;
  std::vector<std::vector<float>> rope_;  // per layer; empty: no RoPE
  int64_t B_ = 0, n_ = 0;
  // Activations of B_·n_ rows.
  std::vector<std::vector<T>> xs_;
  // q/k norms: q and k before them, their 1/rms per row, ∂/∂(k before its norm).
  std::vector<T> qpre_, kpre_, rstdq_, rstdk_, dkpre_;
  std::vector<T> xn1_, rstd1_, q_, k_, v_, lse_, att_, x1_, xn2_, rstd2_, g_, u_, a_;
  std::vector<T> dxn_, dx1_, dq_, dk_, dv_, datt_, dg_, du_, da_, hn_, rstdf_, chunk_, lora_t_, lora_dt_, deq_, head_deq_;
  std::vector<FakeQuant> fq_;  // per model weight (empty: no QAT)
  // Mixtures of experts: the router's probabilities [N, experts], each row's chosen experts and weights [N, K]
  // and the chosen probabilities' sums [N]; the (row, k) pairs grouped by expert (slot_, expert e's from
  // eoff_[e]) with their inputs gx_ [N·K, dim], activations eg_/eu_/ea_ [N·K, expert_ffn] and outputs ey_; the
  // shared expert's sg_/su_/sa_ [N, shared_ffn], output sy_ and gate logits sgl_ [N]; and the backward's.
  std::vector<T> probs_, wts_, sums_, dwts_, dz_, gx_, eg_, eu_, ea_, ey_, dgx_, deg_, deu_, dea_;
  std::vector<T> sg_, su_, sa_, sy_, sgl_, dsy_, dsg_, dsu_, dsa_;
  std::vector<int32_t> chosen_;
  std::vector<int64_t> slot_, eoff_;
};

extern template class TrainModel<float>;
extern template class TrainModel<double>;

}  // namespace lmpress::train
