// A loaded model: config, tokenizer and weight tensors under llama.cpp's
// canonical names (token_embd.weight, blk.N.attn_q.weight, ...), whatever the
// source format. Weights are views into memory-mapped files.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "core/tensor_names.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace lmpress {

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;  // small: kept as f32
  std::vector<float> bq, bk, bv;           // empty unless qkv_bias
  std::vector<float> bo, b_down;           // attn_output / ffn_down biases, usually absent
  std::vector<float> q_norm, k_norm;       // head_dim each; empty unless qk_norm (Qwen3, Gemma 3)
  std::vector<float> attn_post_norm, ffn_post_norm;  // empty unless post_norms (Gemma)
  std::vector<float> sinks;                          // per head; empty unless attn_sinks (gpt-oss)
  const Tensor* wq = nullptr;
  const Tensor* wk = nullptr;
  const Tensor* wv = nullptr;
  const Tensor* wo = nullptr;
  const Tensor* w_gate = nullptr;
  const Tensor* w_up = nullptr;
  const Tensor* w_down = nullptr;
  // A mixture of experts (cfg.moe(); w_gate, w_up, w_down null): the router
  // [n_experts, dim], each expert's projections, and the shared expert
  // (null unless cfg.shared_ffn) with its gate row shexp_gate [dim].
  struct Expert {
    const Tensor* gate = nullptr;
    const Tensor* up = nullptr;
    const Tensor* down = nullptr;
    std::vector<float> b_gate, b_up, b_down;  // gpt-oss's biases (rows of the ffn_*_exps.bias stacks), else empty
  };
  const Tensor* router = nullptr;
  std::vector<float> router_bias;  // gpt-oss's, else empty
  std::vector<Expert> experts;
  Expert shared;
  std::vector<float> shexp_gate;
};

struct Model {
  ModelConfig cfg;
  std::vector<Tensor> tensors;  // every tensor, canonical names
  std::unique_ptr<Tokenizer> tokenizer;
  std::string path;    // what the user named
  std::string format;  // "gguf", "hf", "llama2c"
  // The residual rotation applied (compress/rotate.h), e.g. "hadamard:0";
  // GGUF metadata lmpress.rotation. Nothing to apply at run time: recorded so
  // that info shows it. Empty: none.
  std::string rotation;
  // Pre-RoPE inverse frequencies (from config or a rope_freqs.weight tensor).
  std::vector<float> rope_inv_freqs;
  // The sliding layers' when cfg.rope_theta_swa is set (Gemma 3), else empty.
  std::vector<float> rope_inv_freqs_swa;
  // LongRoPE's frequencies beyond cfg.rope_orig_ctx (Phi-3), else empty.
  std::vector<float> rope_inv_freqs_long;
  // Layer l's RoPE frequencies in a context of long_rope(n_ctx).
  const std::vector<float>& rope_freqs(int64_t l, bool long_ctx) const {
    if (!rope_inv_freqs_swa.empty() && cfg.window(l) > 0) return rope_inv_freqs_swa;
    return long_ctx && !rope_inv_freqs_long.empty() ? rope_inv_freqs_long : rope_inv_freqs;
  }
  // Whether a context of n_ctx positions takes LongRoPE's long factors (as
  // llama.cpp decides, by the context size; Hugging Face by the sequence's).
  bool long_rope(int64_t n_ctx) const { return !rope_inv_freqs_long.empty() && n_ctx > cfg.rope_orig_ctx; }

  const Tensor* tok_embd = nullptr;
  const Tensor* output = nullptr;  // == tok_embd when tied
  std::vector<float> output_norm;
  std::vector<LayerWeights> layers;

  const Tensor* find(const std::string& name) const;
  // The tensor `name`; fails naming the model and the tensor when it has none.
  const Tensor& tensor(const std::string& name) const;
  // The same, to replace it in place (the compressors swap a block's linears); bind() afterwards.
  Tensor& tensor_slot(const std::string& name);
  // Replaces tensor `name` by an owned F32 tensor of the same shape holding
  // `values` (what smoothing and rotation write); bind() afterwards.
  void set_f32(const std::string& name, std::vector<float> values);
  int64_t n_params() const;
  uint64_t n_bytes() const;
  // Validates tensor shapes against cfg and fills the pointers above.
  void bind();

 private:
  void bind_experts(int64_t l, LayerWeights& L, const std::unordered_map<std::string, const Tensor*>& by_name) const;
};

// Loads a model from a GGUF file, a Hugging Face directory (or its
// config.json), or a llama2.c checkpoint (tokenizer: `tokenizer_path`, else a
// tok*.bin / tokenizer.bin beside it).
std::unique_ptr<Model> load_model(const std::string& path, const std::string& tokenizer_path = "");

// What load_model(arg) reads: the file, the Hugging Face directory, or the
// llama2.c checkpoint and the tokenizer found beside it (for PathGuard).
std::vector<std::string> model_input_paths(const std::string& arg);

// Fails naming the first tensor and element that is NaN or Inf: a model is
// checked before it is compressed or converted, so that no result is computed
// from (or written with) a non-finite weight.
void check_finite_weights(const Model& m);
// load_model, then every weight checked to be finite (unless skipped, as
// --no-finite-check does): for the commands and API calls that compress or convert a model.
std::unique_ptr<Model> load_for_compression(const std::string& path, const std::string& tokenizer_path = "",
                                            bool skip_finite_check = false);

std::unique_ptr<Model> load_gguf_model(const std::string& path);
// The tokenizer of the model at `path` (as load_model finds it); a GGUF file is
// read for its vocabulary alone, so vocabulary-only GGUFs (llama.cpp's
// models/ggml-vocab-*.gguf) work. Fails when the model has none.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const std::string& tokenizer_path = "");
std::unique_ptr<Model> load_hf_model(const std::string& dir);
// The hyperparameters in the text of a Hugging Face config.json read from `source`.
ModelConfig hf_config_from_text(const std::string& text, const std::string& source);
std::unique_ptr<Model> load_llama2c_model(const std::string& path, const std::string& tokenizer_path);

// Phi-3's fused projections (blk.N.attn_qkv: q, k, v rows; blk.N.ffn_gate_up,
// or a phi3 GGUF's ffn_up of 2·ffn rows: gate, then up) replaced by views of
// their rows under the separate names lmpress runs.
void split_fused_projections(Model& m);
// gpt-oss's fused expert tensors of a Hugging Face checkpoint (f32/f16/bf16 or MXFP4 blocks) as per-expert linears
// and bias stacks under names hf_to_canonical maps (load_hf.cc).
std::vector<Tensor> split_gpt_oss_experts(std::vector<Tensor> tensors, const ModelConfig& c, const std::string& path);

// A mixture of experts' 3-D tensors (blk.N.ffn_{gate,up,down}_exps, [experts,
// rows, cols], as llama.cpp stores them) replaced by views of each expert's
// rows under the per-expert names lmpress runs and compresses
// (blk.N.ffn_gate.E.weight, ...: llama.cpp's older split layout).
void split_expert_tensors(Model& m);

// Adds `delta` to every RMSNorm weight (*norm.weight) of a Gemma model:
// Hugging Face checkpoints store w for x·(1 + w), lmpress (as GGUF) holds 1 + w.
void shift_gemma_norms(Model& m, float delta);


// Canonical (GGUF) name <-> Hugging Face name of a tensor of a model of
// config c (Gemma 2/3's and OLMo 2's post_attention_layernorm normalizes the
// attention's output; Mixtral's experts are block_sparse_moe.experts.E.w1..3,
// the other mixtures' mlp.experts.E.*_proj); empty when the name is not a
// model weight lmpress knows.
std::string hf_to_canonical(const std::string& hf_name, const ModelConfig& c);
std::string canonical_to_hf(const std::string& name, const ModelConfig& c);

}  // namespace lmpress
