// The Llama-family forward pass with a KV cache of any KvCacheSpec (f16 by
// default, as llama.cpp keeps it):
// prompt batches go through GEMMs and the tiled attention of
// kernels/attention.h, decoding steps reuse the cache.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/attention.h"
#include "model/early_exit.h"
#include "model/kivi_stage.h"
#include "model/kv_policy.h"
#include "model/model.h"

namespace lmpress {

// Where a transformer block feeds activations into its linear layers:
// q/k/v read the normed input (AttnIn), wo the attention output (AttnOut),
// gate/up the normed residual (FfnIn), down the SiLU(gate)·up product (FfnDown).
enum class LinearSite { AttnIn, AttnOut, FfnIn, FfnDown };
// Sees x[n, cols] just before the linear layers at `site` multiply it. In a
// mixture of experts, expert e >= 0 at FfnIn / FfnDown: the rows routed to
// it (its gate/up input, its down input); expert -1: the layer's other
// linears there (the router and the shared expert's gate/up at FfnIn, the
// shared expert's down at FfnDown). A dense layer's linears are all -1.
using LinearObserver =
    std::function<void(LinearSite site, int64_t expert, const float* x, int64_t n, int64_t cols)>;

// n floats (whole blocks of t) into a cache row at `row`, converted to t
// (block types quantized as ggml's reference quantizers do, as llama.cpp
// stores its cache).
void store_cache_row(KvType t, const float* x, int64_t n, uint8_t* row);
// One token's q, k, v of layer l after its projections: the biases (Qwen2)
// added, each head of q and k normalised (Qwen3; all of q and k for OLMo 2),
// q and k rotated for position `pos` (unless the layer has no RoPE).
// long_rope: LongRoPE's long factors (Model::long_rope of the context).
void bias_and_rope(const Model& m, int64_t l, float* q, float* k, float* v, int64_t pos, bool long_rope);
// Everything between one token's projections and attention: bias_and_rope,
// the cache's Hadamard rotations (queries and keys, values), then K and V
// stored in the cache's types at krow and vrow (for a KIVI cache, whose rows
// go through its KiviStage, k and v rounded to f16 values instead).
void prepare_token(const Model& m, const KvCacheSpec& kv, int64_t l, float* q, float* k, float* v, int64_t pos,
                   bool long_rope, uint8_t* krow, uint8_t* vrow);
// sink-window's sinks: a key k as prepare_token left it (RoPE'd for its
// position, then the cache's Hadamard rotation) kept in `out` without the
// Hadamard rotation; store_moved_key puts such a key k0 into a cache row
// rotated for `shift` positions later (RoPE composes: rotations by p, then
// by shift, are one by p + shift), Hadamard-rotated and in the cache's type.
void keep_unrotated_key(const Model& m, const KvCacheSpec& kv, int64_t l, const float* k, float* out);
void store_moved_key(const Model& m, const KvCacheSpec& kv, int64_t l, const float* k0, int64_t shift, bool long_rope,
                     uint8_t* krow);
// Undoes the values' rotation on attention outputs out[n, q_dim(l)] (nothing
// when the cache rotates no values).
void unrotate_attention(const Model& m, const KvCacheSpec& kv, int64_t l, float* out, int64_t n);
// x += y (+ bias, when the projection has one), n rows of D.
void add_residual(float* x, const float* y, const std::vector<float>& bias, int64_t n, int64_t D);
// The input of a block's attention or feed-forward: x[n, dim] RMS-normalized
// by w, or copied when the model has no such norm (OLMo 2).
void pre_norm(const ModelConfig& c, const std::vector<float>& w, const float* x, int64_t n, float* out);
// A block's attention or feed-forward output y[n, dim] joins the residual x:
// its bias added, then (Gemma) RMS-normalized by post_norm when that is
// non-empty, (Granite) times cfg.residual_scale (y is overwritten), then
// added to x.
void join_residual(const ModelConfig& c, float* x, float* y, const std::vector<float>& bias,
                   const std::vector<float>& post_norm, int64_t n);
// Token `token`'s embedding row into x[dim], times cfg.embed_scale; fails on
// an id outside the vocabulary.
void embed_token(const Model& m, int32_t token, float* x);
// gate[t] = act(gate[t]) · up[t] for n rows of F (SwiGLU or GeGLU).
void ffn_activation(const ModelConfig& c, float* gate, const float* up, int64_t n, int64_t F);
// logits[n, vocab] divided by cfg.logit_scale (Granite), then soft-capped
// (Gemma 2); nothing for the others.
void finish_logits(const ModelConfig& c, float* logits, int64_t n);
// Layer l's attention: head counts, strides of packed rows, sliding window,
// soft-capping, sinks.
AttentionShape attention_shape(const Model& m, int64_t l);

// The activations of a forward pass over up to `tokens` tokens at once
// (InferenceState's batch, BatchEngine's step); a mixture of experts' grow
// with the tokens an expert takes.
struct ForwardBuffers {
  std::vector<float> x, xn, q, k, v, att, gate, up;
  std::vector<float> probs, weights, slots, moe_y, shared_y;  // mixture of experts
  std::vector<int32_t> chosen;
  void resize(const ModelConfig& c, size_t tokens);
  uint64_t floats() const {
    return x.size() + xn.size() + q.size() + k.size() + v.size() + att.size() + gate.size() + up.size() + probs.size() +
           weights.size() + slots.size() + moe_y.size() + shared_y.size() + chosen.size();
  }
};

// Runs a linear layer on rows of activations (InferenceState: matmul;
// BatchEngine: per kind of row).
using LinearFn = std::function<void(const Tensor& w, const float* x, int64_t n, float* y)>;
// The router of a mixture of experts for n tokens: probs[n, experts] (the
// router's logits, softmaxed), the chosen experts chosen[n, used] in order of
// probability (ties: the lower expert) and their weights[n, used] (llama.cpp's
// build_moe_ffn: the softmax of the chosen logits when cfg.expert_softmax_chosen,
// renormalized when cfg.expert_norm, times cfg.expert_scale).
void route_experts(const ModelConfig& c, const float* logits, int64_t n, float* probs, int32_t* chosen, float* weights);
// b (empty: none) added to each of the k rows of y (rows of b.size() values: gpt-oss's router and expert biases).
void add_bias_rows(float* y, const std::vector<float>& b, int64_t k);
// Layer l's mixture of experts on xn[n, dim] into y[n, dim]. Each expert
// runs once on the rows routed to it (experts side by side on the threads);
// a row's kernels depend on its kind (batched[t]: a prompt row) and the
// weight's type only, never on which other rows share its experts, so a
// batch engine's step equals a lone sequence's. The shared expert
// (Qwen2-MoE) runs on every row through `linear`.
// obs (may be null; calibration) sees each expert's inputs, the experts
// then running one after another.
void moe_feed_forward(const Model& m, int64_t l, const float* xn, int64_t n, const uint8_t* batched,
                      const LinearFn& linear, ForwardBuffers& a, float* y, const LinearObserver* obs = nullptr);

class InferenceState {
 public:
  // n_ctx: KV-cache capacity in tokens; n_batch: most tokens per GEMM batch;
  // kv: the cache's types and rotation (checked against the model's head size);
  // policy: which positions the cache keeps (model/kv_policy.h; a bounded
  // policy's cache holds policy.capacity() positions and takes any number).
  InferenceState(const Model& m, int64_t n_ctx, int64_t n_batch = 512, KvCacheSpec kv = {}, KvPolicy policy = {});

  // Runs `n` tokens at positions n_past().., appending to the cache. Writes
  // logits[n, vocab] when all_logits, else logits[vocab] of the last token;
  // logits may be null. Throws if the cache would overflow. With a bounded
  // policy the cache evicts before each step to make room (steps of at most
  // policy.step() tokens once it is full); with snapkv the first eval after
  // reset() is the prompt, compressed once its last batch has run.
  void eval(const int32_t* tokens, int64_t n, float* logits, bool all_logits);
  // Calibration: runs block `layer` alone with weights `w` on hidden states
  // x[n, dim] (updated in place) of a fresh sequence at positions 0..n-1,
  // reporting each linear layer's input to `obs` (may be null). n <= n_batch.
  // Its K/V go to a cache of one block's size, so a calibration that runs
  // block after block holds no cache per layer (and leaves eval's cache alone).
  void eval_layer(int64_t layer, const LayerWeights& w, float* x, int64_t n, const LinearObserver* obs);
  // What eval_layer holds: one batch's activation buffers and its one-block K/V cache.
  uint64_t layer_buffer_bytes() const;
  // Hidden states after the embedding: x[n, dim].
  void embed(const int32_t* tokens, int64_t n, float* x) const;

  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return n_ctx_; }
  // Positions the cache holds (n_past() less those evicted).
  int64_t n_cached() const { return n_kept_; }
  // No room for another token: the cache holds n_ctx positions (never with a bounded policy).
  bool full() const { return !policy_.bounded() && n_kept_ >= slots_; }
  const KvPolicy& policy() const { return policy_; }
  const KvCacheSpec& cache_spec() const { return kv_; }
  // Bytes the cache holds once allocated: n_ctx positions of every computed
  // layer (and a KIVI cache's staged f16 rows).
  uint64_t cache_bytes() const;
  void reset();
  // Forgets every token after the first n (a shared prefix is kept and its
  // continuations are evaluated one after another). A KIVI cache cannot take
  // back quantized positions, nor an evicting one positions after an
  // eviction: it throws for those.
  void truncate(int64_t n);
  // The state after the positions evaluated so far, to come back to after
  // evaluating more (llama-bench's depth, filled once): unlike truncate it
  // works for KIVI caches too, whose pages before the mark later positions
  // never rewrite (only the staged f16 rows are kept). Not with an eviction policy.
  struct Mark {
    int64_t n_past = 0;
    std::vector<KiviStage> stages;
  };
  Mark mark() const { return {n_past_, stages_}; }
  void rewind(const Mark& m);
  // Layer skipping (a cheaper copy of the model as a speculative draft): the
  // blocks marked true are bypassed, the residual stream passing through
  // unchanged. Set before the first eval; empty: none skipped.
  void skip_layers(std::vector<bool> skip);
  // Early exit (model/early_exit.h) for decoding steps: every eval() of one
  // token after the first eval of a sequence (the prompt's) may stop after
  // block e.layer. Can be changed between evals; inactive e turns it off.
  // Not with a KIVI cache or an eviction policy.
  void set_early_exit(const EarlyExit& e);
  const EarlyExit& early_exit() const { return exit_; }
  const EarlyExitStats& early_exit_stats() const { return exit_stats_; }
  const Model& model() const { return m_; }

 private:
  void eval_batch(const int32_t* tokens, int64_t n, float* logits, bool all_logits);
  AttentionShape shape(int64_t layer) const;
  float attention_scale() const { return m_.cfg.attention_scale(); }
  void attention(int64_t layer, int64_t n, const uint8_t* kc, const uint8_t* vc);
  // Eviction (policy_): every computed layer's cache down to `keep` positions
  // before a step (sink-window, h2o); one layer's prompt down to the snapkv
  // budget after the prompt's last batch of n tokens ran its attention.
  void evict_to(int64_t keep);
  void snapkv_compress(int64_t layer, int64_t n, uint8_t* kc, uint8_t* vc);
  // Moves KV head g's slots `keep` (ascending) of layer l to slots 0.. (all heads when g < 0).
  void compact(int64_t l, int64_t g, const std::vector<int64_t>& keep, uint8_t* kc, uint8_t* vc);
  // sink-window: the sinks' keys rotated to sit just before the oldest window position.
  void place_sinks();
  // kc, vc: the K/V cache block `layer` reads and appends to.
  void block(int64_t layer, const LayerWeights& w, float* x, int64_t n, const LinearObserver* obs, uint8_t* kc,
             uint8_t* vc);

  const Model& m_;
  int64_t n_ctx_, n_batch_, n_past_ = 0;
  KvCacheSpec kv_;
  KvPolicy policy_;
  int64_t slots_;          // positions the cache is allocated for
  bool long_rope_;         // LongRoPE's long factors (Model::long_rope(n_ctx))
  int64_t n_kept_ = 0;     // positions it holds
  int64_t snap_rows_ = 0;  // snapkv: the batch now running ends the prompt, its last snap_rows_ tokens the window
  std::vector<std::vector<float>> score_;   // h2o: per layer [kv_heads][slots_] accumulated attention
  std::vector<std::vector<float>> sink_k_;  // sink-window: per layer [sinks][kv_dim] keys as rotated for positions 0..S-1
  std::vector<bool> skip_;
  // logits[rows, vocab] of the hidden states a_.x rows first.. (final norm, output matrix, finish_logits).
  void head(int64_t first, int64_t rows, float* logits);
  // A decoding step's token after block exit_.layer: true when it exits
  // (logits written when asked for, the later blocks' K/V rows filled from
  // its hidden state). before: its hidden state before that block (read by
  // the state measure only).
  bool try_exit(float* logits, const float* before);
  EarlyExit exit_;
  EarlyExitStats exit_stats_;
  bool exit_step_ = false;                   // the eval running may exit
  std::vector<float> exit_before_, exit_logits_;  // the state measure's input; the softmax measure's logits
  std::vector<std::vector<uint8_t>> k_cache_, v_cache_;  // per layer [n_ctx] rows of kv_dim values, made by the first eval
  std::vector<uint8_t> layer_k_, layer_v_;               // eval_layer's [n_batch, kv_dim]
  std::vector<KiviStage> stages_;                        // a KIVI cache's f16 rows, per layer
  ForwardBuffers a_;
};

}  // namespace lmpress
