// Hyperparameters of a Llama-family model, whatever file they came from.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/hadamard.h"
#include "kernels/ops.h"

namespace lmpress {

// The feed-forward gate's activation: SwiGLU (Llama, Qwen), GeGLU with
// GELU's tanh approximation (Gemma), or gpt-oss's clamped SwiGLU: gate g ≤ 7,
// up u in [−7, 7], g·σ(1.702·g)·(u + 1).
enum class FfnAct { SiLU, GeluTanh, SwigluOai };

struct ModelConfig {
  // "llama" (also Mistral, Mixtral), "qwen2", "qwen3", "gemma2", "gemma3", "granite", "smollm3", "olmo2", "phi3",
  // or the mixtures of experts "qwen2moe", "qwen3moe", "olmoe", "deepseek" (DeepSeekMoE, v1), "gpt-oss"
  std::string arch = "llama";
  int64_t n_vocab = 0;
  int64_t dim = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn_dim = 0;
  int64_t ctx_len = 0;  // trained context
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  int64_t rope_dim = 0;  // rotated dimensions per head (normally head_dim)
  RopeLayout rope_layout = RopeLayout::Interleaved;
  // rope_scaling: "" (none), "linear", "llama3", "longrope" (Phi-3) or "yarn" (gpt-oss, Qwen's long contexts).
  std::string rope_scaling;
  // LongRoPE: per rotated pair, the divisor of its frequency in contexts up
  // to rope_orig_ctx (short) and beyond (long); rope_mscale multiplies the
  // rotated dimensions of q and k (HF's attention_factor, llama.cpp's
  // rope.scaling.attn_factor), 1 for the other scalings.
  std::vector<float> rope_short_factors, rope_long_factors;
  float rope_mscale = 1.0f;
  float rope_factor = 1.0f;
  float rope_low_freq_factor = 1.0f;
  float rope_high_freq_factor = 4.0f;
  int64_t rope_orig_ctx = 8192;
  // YaRN (rope_factor, rope_orig_ctx): the pairs between the correction dims of beta_fast and beta_slow rotations
  // blend interpolated and original frequencies (rounded outward to whole dims unless !yarn_truncate, as
  // gpt-oss's config asks); rope_mscale holds its attention factor (0.1·ln factor + 1 unless the file says).
  float rope_yarn_beta_fast = 32.0f, rope_yarn_beta_slow = 1.0f;
  bool rope_yarn_truncate = true;
  bool tied_embeddings = false;
  bool qkv_bias = false;
  bool qk_norm = false;  // Qwen3, Gemma 3: RMSNorm of each head of q and k (weights of head_dim) before RoPE
  // Sliding-window attention: a layer l with swa(l) lets the query at p see
  // the keys p − sliding_window < j ≤ p (Mistral, Gemma's local layers). 0: none.
  int64_t sliding_window = 0;
  // Which layers slide (1) and which see everything (0); empty: all of them
  // when sliding_window is set.
  std::vector<uint8_t> layer_swa;
  // RoPE base of the sliding layers when it differs (Gemma 3's local layers,
  // which also take no rope_scaling); 0: rope_theta, scaled as the rest.
  float rope_theta_swa = 0;
  // Gemma: the embeddings are multiplied by embed_scale (√hidden_size);
  // post-attention and post-feed-forward RMSNorms on each block's two outputs
  // before they join the residual (blk.N.post_attention_norm / post_ffw_norm);
  // the queries scaled by attn_scale instead of 1/√head_dim (0: 1/√head_dim);
  // scores soft-capped (attn_softcap) and logits (final_softcap), 0: not.
  float embed_scale = 1.0f;
  bool post_norms = false;
  // OLMo 2: no norms before attention and feed-forward (post_norms only), and
  // q_norm / k_norm over all of q and k (weights of q_dim / kv_dim) instead
  // of per head.
  bool pre_norms = true;
  bool qk_norm_full = false;
  float attn_scale = 0;
  float attn_softcap = 0, final_softcap = 0;
  FfnAct ffn_act = FfnAct::SiLU;
  // Granite: each block output joins the residual times residual_scale, and
  // the logits are divided by logit_scale (its embedding and attention
  // multipliers are embed_scale and attn_scale above).
  float residual_scale = 1.0f, logit_scale = 1.0f;
  // SmolLM3: per layer, whether q and k are rotated (0: no RoPE); empty: all.
  std::vector<uint8_t> layer_rope;
  // Mixture of experts (every block's feed-forward): a router (blk.N.ffn_gate_inp,
  // [n_experts, dim]) scores the experts, softmax; the n_experts_used best run
  // (SwiGLU of expert_ffn each: blk.N.ffn_{gate,up,down}.E) and their outputs
  // are summed weighted by their probabilities, renormalized to sum 1 when
  // expert_norm (Mixtral, Qwen3-MoE; not Qwen2-MoE, OLMoE), times
  // expert_scale. shared_ffn > 0: a shared expert of that size every token
  // takes (blk.N.ffn_{gate,up,down}_shexp), gated by sigmoid(x · ffn_gate_inp_shexp)
  // for Qwen2-MoE, ungated for DeepSeek (its shared experts as one). The first
  // n_dense_lead blocks have a dense feed-forward of ffn(l) (DeepSeek's
  // first_k_dense_replace), as every block of a model without experts.
  int64_t n_experts = 0, n_experts_used = 0, expert_ffn = 0, shared_ffn = 0, n_dense_lead = 0;
  // Dense blocks among the sparse ones, a flag per layer (empty: none besides the first n_dense_lead): Qwen's
  // decoder_sparse_step / mlp_only_layers, DeepSeek's moe_layer_freq. GGUF: lmpress.dense_layers.
  std::vector<uint8_t> layer_dense;
  bool expert_norm = false;
  float expert_scale = 1.0f;
  // gpt-oss: the router has a bias and the weights are the softmax of the chosen experts' logits alone
  // (llama.cpp's SOFTMAX_WEIGHT gating); every expert projection has a bias (blk.N.ffn_*_exps.bias stacks);
  // each attention head has a sink logit (blk.N.attn_sinks.weight, kernels/attention.h) and o_proj a bias.
  bool expert_softmax_chosen = false;
  bool attn_sinks = false;
  // W8A8: the block linears' inputs are quantized to int8 per token (dynamic,
  // symmetric) as the engine a W8A8 checkpoint is made for computes them.
  bool act_int8 = false;
  // QuaRot's R4 (compress/rotate.h): ffn_down's columns hold W·Q for a random
  // Hadamard Q of size ffn_dim, so its input (the SwiGLU product) is rotated by
  // Q at run time (GGUF lmpress.rotation.ffn_down_seed). Null: none.
  std::shared_ptr<const HadamardRotation> down_rotation;
  int32_t bos_id = -1, eos_id = -1;
  // Per-layer head counts and feed-forward sizes, for models whose layers
  // differ (non-uniform structured pruning; GGUF stores them as arrays under
  // llama.cpp's "deci" architecture). Empty when every layer has n_heads,
  // n_kv_heads and ffn_dim; when set, those scalars hold the largest layer's
  // values, which size the shared buffers.
  std::vector<int64_t> layer_heads, layer_kv_heads, layer_ffn;
  // The GGUF architecture ("llama", "qwen2", "deci") when read from GGUF, so
  // that errors name the file's own metadata keys; empty otherwise.
  std::string gguf_arch;

  // Sets arch and the structural flags that follow from it alone (q/k/v bias,
  // q/k norms, pre/post-norms, the feed-forward activation), one place for
  // every loader; the flags a file states (sizes, scales, windows) are read
  // after.
  void set_arch(const std::string& a);

  // Range checks against absurd values; throws naming `source` and the field.
  // A context of at least 2 positions: with 1, nothing can be predicted from
  // anything (calibration windows would hold BOS alone, task scoring nothing).
  void validate(const std::string& source) const;
  // A config.json field name (e.g. "num_hidden_layers") as the source spells
  // it: the GGUF key ("llama.block_count") for GGUF files.
  std::string field(const std::string& hf_name) const;
  // Per rotated pair i: the angle per position (theta^(-2i/d), with scaling).
  std::vector<float> rope_inv_freqs() const;
  // YaRN's default attention factor for rope_factor: 0.1·ln factor + 1 (1 for factors ≤ 1).
  float yarn_mscale() const;
  // The unscaled frequencies, each divided by its pair's factor (llama.cpp's
  // rope_freqs, LongRoPE's factors).
  std::vector<float> rope_inv_freqs_divided(const std::vector<float>& factors) const;
  // The sliding layers' frequencies when rope_theta_swa is set (no scaling).
  std::vector<float> rope_inv_freqs_swa() const;
  // Layer l's attention window (0: none) and scale.
  int64_t window(int64_t l) const {
    return sliding_window > 0 && (layer_swa.empty() || layer_swa[size_t(l)]) ? sliding_window : 0;
  }
  float attention_scale() const;
  bool uses_rope(int64_t l) const { return layer_rope.empty() || layer_rope[size_t(l)]; }
  // Whether the architecture is Gemma's (norm weights stored as w with the
  // model computing x·(1 + w) in Hugging Face checkpoints; GGUF stores 1 + w).
  bool gemma() const { return arch == "gemma2" || arch == "gemma3"; }
  bool moe() const { return n_experts > 0; }
  bool layer_moe(int64_t l) const {
    return moe() && l >= n_dense_lead && (layer_dense.empty() || !layer_dense[size_t(l)]);
  }
  // Whether some block of a mixture has a dense feed-forward of ffn_dim.
  bool any_dense_block() const;
  bool shared_gate() const { return arch == "qwen2moe"; }
  // The config field that holds the expert count ("count"), an expert's size
  // ("size") or the shared expert ("shared") in this architecture's files
  // (num_local_experts for Mixtral, n_routed_experts for DeepSeek, ...).
  std::string expert_field(const std::string& what) const;
  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  bool uniform() const { return layer_heads.empty(); }
  int64_t heads(int64_t l) const { return uniform() ? n_heads : layer_heads[size_t(l)]; }
  int64_t kv_heads(int64_t l) const { return uniform() ? n_kv_heads : layer_kv_heads[size_t(l)]; }
  int64_t ffn(int64_t l) const { return uniform() ? ffn_dim : layer_ffn[size_t(l)]; }
  // Every layer's feed-forward is ffn_dim (the heads may still differ).
  bool uniform_ffn() const {
    for (int64_t f : layer_ffn)
      if (f != ffn_dim) return false;
    return true;
  }
  int64_t q_dim(int64_t l) const { return heads(l) * head_dim; }
  int64_t kv_dim(int64_t l) const { return kv_heads(l) * head_dim; }
  // Sets the per-layer dimensions (one value per layer each); collapses to
  // the scalars when all layers agree, else sets the scalars to the maxima.
  void set_layer_dims(std::vector<int64_t> heads, std::vector<int64_t> kv_heads, std::vector<int64_t> ffn);
};

// How a GGUF architecture pairs RoPE dimensions: llama.cpp's converter
// permutes q/k rows to (2i, 2i+1) pairs for llama, deci, granite and smollm3;
// the others keep Hugging Face's (i, i + d/2).
RopeLayout gguf_rope_layout(const std::string& gguf_arch);
// A Hugging Face architecture lmpress reads and writes: its class
// (config.json's architectures[0]), model_type, and lmpress's arch.
struct HfArch {
  const char* hf_class;
  const char* model_type;
  const char* arch;
};
const std::vector<HfArch>& hf_archs();
// The row config.json's class names, null when lmpress does not read it.
const HfArch* find_hf_arch(const std::string& hf_class);
// The class a config is written as (llama: Mixtral with experts, Mistral with
// a sliding window, else Llama); null when none expresses it.
const HfArch* hf_arch_of(const ModelConfig& c);

// Whether an architecture is a mixture of experts whatever its config says
// (Mixtral is "llama" with num_local_experts).
bool moe_arch(const std::string& arch);

// A number read from a config file as float, or as an integer in [lo, hi];
// fails naming `field` when it is NaN, infinite or out of range, so that the
// conversion is defined (a double beyond float's range, or 1e30 cast to an
// integer, is undefined behaviour).
float config_float(double v, const std::string& src, const std::string& field);
int64_t config_int(double v, int64_t lo, int64_t hi, const std::string& src, const std::string& field);

}  // namespace lmpress
