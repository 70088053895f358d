// Small random models in Hugging Face layout, made by tests, plus a plain
// double-precision forward pass written from the HF modeling code as an
// independent reference.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"

namespace lmpress::test {

struct SyntheticSpec {
  // or Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM,
  // GraniteForCausalLM (its four multipliers set), SmolLM3ForCausalLM (odd layers without RoPE),
  // Olmo2ForCausalLM, Phi3ForCausalLM (fused projections, LongRoPE with an original context of 16),
  // or the mixtures of experts MixtralForCausalLM, Qwen2MoeForCausalLM (with a shared expert),
  // Qwen3MoeForCausalLM, OlmoeForCausalLM, DeepseekForCausalLM (block 0 dense, 2 ungated shared experts),
  // GptOssForCausalLM (sinks, biases, fused experts, even layers sliding, YaRN; MXFP4 experts with mxfp4)
  std::string arch = "LlamaForCausalLM";
  int64_t dim = 32, n_layers = 2, n_heads = 4, n_kv_heads = 2, ffn = 48, ctx = 64;
  int64_t head_dim = 0;  // 0: dim / n_heads; else written as config.json's head_dim
  bool tied = false;
  bool llama3_rope = false;
  // YaRN (factor 4 over an original context of 16, betas 1 and 0.05 so that the ramp crosses the pairs of a
  // head of 8, the range not rounded: gpt-oss's truncate false).
  bool yarn_rope = false;
  // Mistral's and Gemma's sliding window (Gemma: layer 0 slides, layer 1 sees
  // everything, and so on; soft-caps and query_pre_attn_scalar set so that
  // each changes the logits).
  int64_t sliding_window = 0;
  double partial_rotary = 1.0;  // Phi-3 / Phi-4-mini's partial_rotary_factor
  // Mixtures of experts: experts, used per token, each one's size, the
  // shared expert's (Qwen2-MoE), norm_topk_prob (not Mixtral's: it always
  // renormalizes).
  int64_t experts = 4, experts_used = 2, expert_ffn = 24, shared_ffn = 40;
  bool norm_topk = true;
  // Dense blocks among the sparse ones: Qwen-MoE's decoder_sparse_step and mlp_only_layers, DeepSeek's
  // moe_layer_freq (its block 0 is always dense).
  int64_t sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;
  bool mxfp4 = false;  // gpt-oss: experts stored as the released checkpoints store them (MXFP4 blocks and scales)
  uint32_t seed = 1;
};

// Writes config.json, model.safetensors (F32) and a byte-level BPE
// tokenizer.json (256 byte tokens + a few merges + <|bos|>, <|eos|>) to dir.
void write_synthetic_hf(const std::string& dir, const SyntheticSpec& spec);

// Logits of every position, by the reference implementation reading dir.
std::vector<std::vector<double>> reference_logits(const std::string& dir, const std::vector<int32_t>& tokens);

// A model of config c with make-model's random weights (seed) as a GGUF file at path; returns path.
std::string write_random_gguf(const ModelConfig& c, const std::string& path, uint64_t seed);

// A small Qwen3-MoE GGUF in dir, random f32 weights: 16 experts of 128, 4 per token, 2 layers of 256; or
// another family's mixture shape in the same sizes: qwen1.5-moe-a2.7b's (a shared expert of 256 behind a
// sigmoid gate), mixtral-8x7b's, deepseek-moe-16b's. Returns its path.
std::string small_moe(const std::string& dir, const std::string& shape = "qwen3-30b-a3b");

}  // namespace lmpress::test
