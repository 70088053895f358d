#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "core/error.h"

namespace lmpress {

void ModelConfig::validate(const std::string& src) const {
  auto range = [&](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) fail("{}: {} = {} is out of range [{}, {}]", src, field(name), v, lo, hi);
  };
  static const char* const kArchs[] = {"llama",  "qwen2", "qwen3",    "gemma2",   "gemma3", "granite",
                                       "smollm3", "olmo2", "phi3", "qwen2moe", "qwen3moe", "olmoe", "deepseek",
                                       "gpt-oss"};
  if (std::find(std::begin(kArchs), std::end(kArchs), arch) == std::end(kArchs))
    fail("{}: unknown architecture '{}'", src, arch);
  range("vocab_size", n_vocab, 1, 1 << 24);
  range("hidden_size", dim, 1, 1 << 17);
  range("num_hidden_layers", n_layers, 1, 1024);
  range("num_attention_heads", n_heads, 1, 4096);
  range("num_key_value_heads", n_kv_heads, 1, n_heads);
  range("head_dim", head_dim, 2, 4096);
  range("intermediate_size", ffn_dim, 1, 1 << 20);
  range("max_position_embeddings", ctx_len, 2, 1 << 24);
  range("rope dimension count", rope_dim, 2, head_dim);
  if (head_dim % 2 || rope_dim % 2) fail("{}: head_dim {} / rope dim {} must be even", src, head_dim, rope_dim);
  if (down_rotation && (moe() || !uniform_ffn() || down_rotation->size() != ffn_dim))
    fail("{}: ffn_down's input is rotated online (R4, size {}), which needs every layer's {} to be that size and no "
         "experts",
         src, down_rotation->size(), field("intermediate_size"));
  if (uniform() && n_heads % n_kv_heads)
    fail("{}: {} {} is not a multiple of {} {}", src, field("num_attention_heads"), n_heads,
         field("num_key_value_heads"), n_kv_heads);
  if (!uniform()) {
    if (layer_heads.size() != size_t(n_layers) || layer_kv_heads.size() != size_t(n_layers) ||
        layer_ffn.size() != size_t(n_layers))
      fail("{}: per-layer head counts / feed-forward sizes need {} values each ({}, {}, {} given)", src, n_layers,
           layer_heads.size(), layer_kv_heads.size(), layer_ffn.size());
    for (int64_t l = 0; l < n_layers; l++) {
      const int64_t h = heads(l), kv = kv_heads(l), f = ffn(l);
      if (h < 1 || h > n_heads || kv < 1 || kv > n_kv_heads || f < 1 || f > ffn_dim || h % kv)
        fail("{}: layer {} has {} heads, {} KV heads, feed-forward {}: each must be in [1, the maximum] and the "
             "heads a multiple of the KV heads (layers without attention or MLP are not supported)",
             src, l, h, kv, f);
    }
  }
  if (!(rms_eps > 0 && rms_eps < 1)) fail("{}: {} {} is out of range (0, 1)", src, field("rms_norm_eps"), rms_eps);
  if (!(std::isfinite(rope_theta) && rope_theta > 1))
    fail("{}: {} {} must be a finite number > 1", src, field("rope_theta"), rope_theta);
  if (!rope_scaling.empty() && rope_scaling != "linear" && rope_scaling != "llama3" && rope_scaling != "longrope" &&
      rope_scaling != "yarn")
    fail("{}: rope_scaling type '{}' is not supported (linear, llama3, longrope, yarn)", src, rope_scaling);
  if (!rope_long_factors.empty() && rope_long_factors.size() != size_t(rope_dim / 2))
    fail("{}: {} has {} values, the {} rotated pairs need one each", src, field("rope_scaling.long_factor"),
         rope_long_factors.size(), rope_dim / 2);
  if (rope_scaling == "longrope") {
    for (const auto* f : {&rope_short_factors, &rope_long_factors}) {
      const char* name = f == &rope_short_factors ? "rope_scaling.short_factor" : "rope_scaling.long_factor";
      if (f->size() != size_t(rope_dim / 2))
        fail("{}: {} has {} values, the {} rotated pairs need one each", src, field(name), f->size(), rope_dim / 2);
      for (float x : *f)
        if (!(std::isfinite(x) && x != 0)) fail("{}: {} holds {}, which is not a finite nonzero number", src, field(name), x);
    }
    range("rope_scaling.original_max_position_embeddings", rope_orig_ctx, 1, 1 << 24);
  }
  if (!(std::isfinite(rope_mscale) && rope_mscale > 0))
    fail("{}: {} {} must be a finite number > 0", src, field("rope_scaling.attention_factor"), rope_mscale);
  const auto positive = [&](const char* name, float v) {
    if (!(std::isfinite(v) && v > 0)) fail("{}: {} {} must be a finite number > 0", src, field(name), v);
  };
  if (rope_scaling == "linear" || rope_scaling == "llama3" || rope_scaling == "yarn")
    positive("rope_scaling.factor", rope_factor);
  if (rope_scaling == "yarn") {
    positive("rope_scaling.beta_fast", rope_yarn_beta_fast);
    positive("rope_scaling.beta_slow", rope_yarn_beta_slow);
    range("rope_scaling.original_max_position_embeddings", rope_orig_ctx, 1, 1 << 24);
  }
  if (rope_scaling == "llama3") {
    positive("rope_scaling.low_freq_factor", rope_low_freq_factor);
    positive("rope_scaling.high_freq_factor", rope_high_freq_factor);
    if (!(rope_high_freq_factor > rope_low_freq_factor))
      fail("{}: {} {} must exceed {} {}", src, field("rope_scaling.high_freq_factor"), rope_high_freq_factor,
           field("rope_scaling.low_freq_factor"), rope_low_freq_factor);
    range("rope_scaling.original_max_position_embeddings", rope_orig_ctx, 1, 1 << 24);
  }
  range("sliding_window", sliding_window, 0, 1 << 24);
  if (!layer_swa.empty() && layer_swa.size() != size_t(n_layers))
    fail("{}: {} names {} layers, the model has {}", src, field("layer_types"), layer_swa.size(), n_layers);
  if (rope_theta_swa != 0 && !(std::isfinite(rope_theta_swa) && rope_theta_swa > 1))
    fail("{}: {} {} must be a finite number > 1", src, field("rope_local_base_freq"), rope_theta_swa);
  const auto non_negative = [&](const char* name, float v) {
    if (!(std::isfinite(v) && v >= 0)) fail("{}: {} {} must be a finite number ≥ 0", src, field(name), v);
  };
  non_negative("attn_logit_softcapping", attn_softcap);
  non_negative("final_logit_softcapping", final_softcap);
  non_negative("query_pre_attn_scalar", attn_scale);
  if (!(std::isfinite(embed_scale) && embed_scale > 0)) fail("{}: {} {} must be > 0", src, field("embedding_multiplier"), embed_scale);
  if (!(std::isfinite(residual_scale) && residual_scale > 0))
    fail("{}: {} {} must be > 0", src, field("residual_multiplier"), residual_scale);
  if (!(std::isfinite(logit_scale) && logit_scale > 0)) fail("{}: {} {} must be > 0", src, field("logits_scaling"), logit_scale);
  if (moe_arch(arch) && !moe()) fail("{}: {} is a mixture of experts, but {} is 0", src, arch, field(expert_field("count")));
  if (moe()) {
    const std::string count = expert_field("count"), size = expert_field("size");
    range(count.c_str(), n_experts, 1, 1024);
    range("num_experts_per_tok", n_experts_used, 1, n_experts);
    range(size.c_str(), expert_ffn, 1, 1 << 20);
    if (arch != "deepseek") range(expert_field("shared").c_str(), shared_ffn, 0, 1 << 20);
    range("first_k_dense_replace", n_dense_lead, 0, n_layers - 1);
    if (!layer_dense.empty()) {
      if (layer_dense.size() != size_t(n_layers))
        fail("{}: {} flags {} layers, the model has {}", src, field("mlp_only_layers"), layer_dense.size(), n_layers);
      int64_t sparse = 0;
      for (int64_t l = 0; l < n_layers; l++) sparse += layer_moe(l);
      if (sparse == 0)
        fail("{}: {} leave no block with experts", src,
             gguf_arch.empty() ? "mlp_only_layers / decoder_sparse_step / moe_layer_freq" : "lmpress.dense_layers");
    }
    if (arch == "deepseek" && shared_ffn % expert_ffn)
      fail("{}: DeepSeek's shared experts ({}) are whole experts of {}", src, shared_ffn, expert_ffn);
    if (!uniform()) fail("{}: a mixture of experts with layers of different sizes is not supported", src);
    if (!(std::isfinite(expert_scale) && expert_scale > 0))
      fail("{}: {} {} must be a finite number > 0", src, field("routed_scaling_factor"), expert_scale);
  } else if (n_experts_used || shared_ffn || n_dense_lead || !layer_dense.empty()) {
    fail("{}: {} / {} / {} / {} are set on a model without experts", src, field("num_experts_per_tok"),
         field(expert_field("shared")), field("first_k_dense_replace"), field("mlp_only_layers"));
  }
  if (!layer_rope.empty() && layer_rope.size() != size_t(n_layers))
    fail("{}: {} names {} layers, the model has {}", src, field("no_rope_layers"), layer_rope.size(), n_layers);
}

void ModelConfig::set_arch(const std::string& a) {
  arch = a;
  const bool gemma_arch = gemma(), olmo2 = a == "olmo2", oss = a == "gpt-oss";
  qkv_bias = a == "qwen2" || a == "qwen2moe" || oss;
  attn_sinks = expert_softmax_chosen = oss;
  qk_norm = a == "qwen3" || a == "qwen3moe" || a == "gemma3" || olmo2 || a == "olmoe";
  qk_norm_full = olmo2 || a == "olmoe";
  // llama.cpp's rule per architecture (Mixtral is llama with experts).
  expert_norm = a == "llama" || a == "qwen3moe";
  post_norms = gemma_arch || olmo2;
  pre_norms = !olmo2;
  ffn_act = gemma_arch ? FfnAct::GeluTanh : oss ? FfnAct::SwigluOai : FfnAct::SiLU;
}

const std::vector<HfArch>& hf_archs() {
  static const std::vector<HfArch> rows = {
      {"LlamaForCausalLM", "llama", "llama"},         {"MistralForCausalLM", "mistral", "llama"},
      {"MixtralForCausalLM", "mixtral", "llama"},     {"Qwen2ForCausalLM", "qwen2", "qwen2"},
      {"Qwen3ForCausalLM", "qwen3", "qwen3"},         {"Gemma2ForCausalLM", "gemma2", "gemma2"},
      {"Gemma3ForCausalLM", "gemma3_text", "gemma3"}, {"Phi3ForCausalLM", "phi3", "phi3"},
      {"Olmo2ForCausalLM", "olmo2", "olmo2"},         {"GraniteForCausalLM", "granite", "granite"},
      {"SmolLM3ForCausalLM", "smollm3", "smollm3"},   {"Qwen2MoeForCausalLM", "qwen2_moe", "qwen2moe"},
      {"Qwen3MoeForCausalLM", "qwen3_moe", "qwen3moe"}, {"OlmoeForCausalLM", "olmoe", "olmoe"},
      {"DeepseekForCausalLM", "deepseek", "deepseek"}, {"GptOssForCausalLM", "gpt_oss", "gpt-oss"}};
  return rows;
}

const HfArch* find_hf_arch(const std::string& hf_class) {
  for (const HfArch& a : hf_archs())
    if (hf_class == a.hf_class) return &a;
  return nullptr;
}

const HfArch* hf_arch_of(const ModelConfig& c) {
  if (c.arch == "gpt-oss") return nullptr;  // read, not written: its fused expert layout is not built
  if (c.arch == "llama")
    return find_hf_arch(c.moe() ? "MixtralForCausalLM" : c.sliding_window > 0 ? "MistralForCausalLM" : "LlamaForCausalLM");
  for (const HfArch& a : hf_archs())
    if (c.arch == a.arch) return &a;
  return nullptr;
}

std::string ModelConfig::expert_field(const std::string& what) const {
  const bool mixtral_like = arch == "llama" || arch == "gpt-oss";
  if (what == "count") return mixtral_like ? "num_local_experts" : arch == "deepseek" ? "n_routed_experts" : "num_experts";
  if (what == "size") return mixtral_like || arch == "olmoe" ? "intermediate_size" : "moe_intermediate_size";
  return arch == "deepseek" ? "n_shared_experts" : "shared_expert_intermediate_size";
}

bool moe_arch(const std::string& a) {
  return a == "qwen2moe" || a == "qwen3moe" || a == "olmoe" || a == "deepseek" || a == "gpt-oss";
}

RopeLayout gguf_rope_layout(const std::string& a) {
  return a == "llama" || a == "deci" || a == "granite" || a == "smollm3" || a == "deepseek" ? RopeLayout::Interleaved
                                                                                           : RopeLayout::Halves;
}

bool ModelConfig::any_dense_block() const {
  for (int64_t l = 0; l < n_layers; l++)
    if (!layer_moe(l)) return true;
  return false;
}

float ModelConfig::attention_scale() const { return attn_scale > 0 ? attn_scale : 1.0f / std::sqrt(float(head_dim)); }

std::string ModelConfig::field(const std::string& hf_name) const {
  if (gguf_arch.empty()) return hf_name;
  // config.json field -> GGUF key; a leading '.' takes the architecture prefix.
  static const std::map<std::string, std::string> kGguf = {
      {"vocab_size", ".vocab_size"},
      {"hidden_size", ".embedding_length"},
      {"num_hidden_layers", ".block_count"},
      {"num_attention_heads", ".attention.head_count"},
      {"num_key_value_heads", ".attention.head_count_kv"},
      {"head_dim", ".attention.key_length"},
      {"intermediate_size", ".feed_forward_length"},
      {"max_position_embeddings", ".context_length"},
      {"rope dimension count", ".rope.dimension_count"},
      {"rms_norm_eps", ".attention.layer_norm_rms_epsilon"},
      {"rope_theta", ".rope.freq_base"},
      {"sliding_window", ".attention.sliding_window"},
      {"layer_types", ".attention.sliding_window_pattern"},
      {"rope_local_base_freq", ".rope.freq_base_swa"},
      {"attn_logit_softcapping", ".attn_logit_softcapping"},
      {"final_logit_softcapping", ".final_logit_softcapping"},
      {"embedding_multiplier", ".embedding_scale"},
      {"residual_multiplier", ".residual_scale"},
      {"logits_scaling", ".logit_scale"},
      {"rope_scaling.attention_factor", ".rope.scaling.attn_factor"},
      {"num_experts", ".expert_count"},
      {"num_local_experts", ".expert_count"},
      {"num_experts_per_tok", ".expert_used_count"},
      {"moe_intermediate_size", ".expert_feed_forward_length"},
      {"shared_expert_intermediate_size", ".expert_shared_feed_forward_length"},
      {"norm_topk_prob", ".expert_weights_norm"},
      {"n_routed_experts", ".expert_count"},
      {"n_shared_experts", ".expert_shared_count"},
      {"first_k_dense_replace", ".leading_dense_block_count"},
      {"mlp_only_layers", "lmpress.dense_layers"},
      {"routed_scaling_factor", ".expert_weights_scale"},
      {"rope_scaling.short_factor", "rope_factors_short.weight"},
      {"rope_scaling.long_factor", "rope_factors_long.weight"},
      {"rope_scaling.low_freq_factor", "lmpress.rope_scaling.llama3.low_freq_factor"},
      {"rope_scaling.high_freq_factor", "lmpress.rope_scaling.llama3.high_freq_factor"},
      {"rope_scaling.original_max_position_embeddings", "lmpress.rope_scaling.llama3.original_context_length"},
  };
  if (hf_name == "rope_scaling.beta_fast" || hf_name == "rope_scaling.beta_slow")
    return gguf_arch + ".rope.scaling.yarn_" + hf_name.substr(13);
  if (hf_name == "rope_scaling.original_max_position_embeddings" && (rope_scaling == "longrope" || rope_scaling == "yarn"))
    return gguf_arch + ".rope.scaling.original_context_length";
  if (hf_name == "rope_scaling.factor")
    return rope_scaling == "llama3" ? "lmpress.rope_scaling.llama3.factor" : gguf_arch + ".rope.scaling.factor";
  const auto it = kGguf.find(hf_name);
  if (it == kGguf.end()) return hf_name;
  return it->second[0] == '.' ? gguf_arch + it->second : it->second;
}

float config_float(double v, const std::string& src, const std::string& field) {
  if (!std::isfinite(v) || std::fabs(v) > double(std::numeric_limits<float>::max()))
    fail("{}: {} = {} is not a finite 32-bit float", src, field, v);
  return float(v);
}

int64_t config_int(double v, int64_t lo, int64_t hi, const std::string& src, const std::string& field) {
  if (!(v >= double(lo) && v <= double(hi)) || v != std::floor(v))
    fail("{}: {} = {} is not an integer in [{}, {}]", src, field, v, lo, hi);
  return int64_t(v);
}

void ModelConfig::set_layer_dims(std::vector<int64_t> heads, std::vector<int64_t> kv_heads, std::vector<int64_t> ffn) {
  const auto all_equal = [](const std::vector<int64_t>& v) {
    return std::all_of(v.begin(), v.end(), [&](int64_t x) { return x == v.front(); });
  };
  const auto max_of = [](const std::vector<int64_t>& v) { return *std::max_element(v.begin(), v.end()); };
  if (heads.empty() || heads.size() != kv_heads.size() || heads.size() != ffn.size())
    fail("per-layer dimensions: {} head counts, {} KV head counts, {} feed-forward sizes", heads.size(),
         kv_heads.size(), ffn.size());
  n_heads = max_of(heads), n_kv_heads = max_of(kv_heads), ffn_dim = max_of(ffn);
  layer_heads.clear(), layer_kv_heads.clear(), layer_ffn.clear();
  if (all_equal(heads) && all_equal(kv_heads) && all_equal(ffn)) return;
  layer_heads = std::move(heads), layer_kv_heads = std::move(kv_heads), layer_ffn = std::move(ffn);
}

std::vector<float> ModelConfig::rope_inv_freqs_swa() const {
  ModelConfig local = *this;
  local.rope_theta = rope_theta_swa;
  if (gemma()) local.rope_scaling.clear();  // Gemma 3's local layers take no scaling; gpt-oss's keep YaRN
  return local.rope_inv_freqs();
}

std::vector<float> ModelConfig::rope_inv_freqs_divided(const std::vector<float>& factors) const {
  ModelConfig base = *this;
  base.rope_scaling.clear();
  std::vector<float> f = base.rope_inv_freqs();
  for (size_t i = 0; i < f.size(); i++) f[i] /= factors[i];
  return f;
}

float ModelConfig::yarn_mscale() const { return rope_factor <= 1 ? 1.0f : float(0.1 * std::log(double(rope_factor)) + 1); }

std::vector<float> ModelConfig::rope_inv_freqs() const {
  std::vector<float> f(size_t(rope_dim / 2));
  // YaRN's correction range (ggml_rope_yarn_corr_dims; Hugging Face's find_correction_range): the pairs whose
  // wavelength makes beta rotations over the original context.
  double low = 0, high = 0;
  if (rope_scaling == "yarn") {
    const auto corr_dim = [&](double beta) {
      return double(rope_dim) * std::log(double(rope_orig_ctx) / (beta * 2 * M_PI)) / (2 * std::log(double(rope_theta)));
    };
    low = corr_dim(rope_yarn_beta_fast), high = corr_dim(rope_yarn_beta_slow);
    if (rope_yarn_truncate) low = std::floor(low), high = std::ceil(high);
    low = std::max(0.0, low), high = std::min(double(rope_dim - 1), high);
  }
  for (size_t i = 0; i < f.size(); i++) {
    double freq = std::pow(double(rope_theta), -2.0 * double(i) / double(rope_dim));
    if (rope_scaling == "linear") {
      freq /= rope_factor;
    } else if (rope_scaling == "longrope") {
      freq /= rope_short_factors[i];  // as rope_inv_freqs_divided(rope_short_factors)
    } else if (rope_scaling == "llama3") {
      // Hugging Face's _compute_llama3_parameters.
      const double low_wavelen = double(rope_orig_ctx) / rope_low_freq_factor;
      const double high_wavelen = double(rope_orig_ctx) / rope_high_freq_factor;
      const double wavelen = 2 * M_PI / freq;
      if (wavelen > low_wavelen) {
        freq /= rope_factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (double(rope_orig_ctx) / wavelen - rope_low_freq_factor) /
                        (rope_high_freq_factor - rope_low_freq_factor);
        freq = (1 - smooth) * freq / rope_factor + smooth * freq;
      }
    } else if (rope_scaling == "yarn") {
      // The share kept at the original frequency: 1 below the range, 0 above it, a linear ramp between.
      const double extrapolate = 1 - std::clamp((double(i) - low) / std::max(0.001, high - low), 0.0, 1.0);
      freq = freq / rope_factor * (1 - extrapolate) + freq * extrapolate;
    }
    f[i] = float(freq);
  }
  return f;
}

}  // namespace lmpress
