// Hugging Face directory loading: config.json + safetensors + tokenizer files.
// Weights keep HF's q/k row order; RoPE uses the "halves" pairing for them.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <optional>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "io/tokenizer_files.h"
#include "kernels/blocks.h"
#include "kernels/to_f32.h"
#include "model/load_gptq.h"
#include "model/model.h"

namespace lmpress {

namespace {

// j[key], a list of one flag per layer whose elements `flag` reads (nullopt:
// not a `what`); nullopt when absent or null.
std::optional<std::vector<uint8_t>> layer_flags(const nlohmann::json& j, const char* key, const std::string& path,
                                                int64_t n_layers, const char* what,
                                                const std::function<std::optional<bool>(const nlohmann::json&)>& flag) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  const auto& list = j[key];
  if (!list.is_array() || list.size() != size_t(n_layers))
    fail("{}: {} must hold one {} per layer ({} layers)", path, key, what, n_layers);
  std::vector<uint8_t> out;
  for (size_t l = 0; l < list.size(); l++) {
    const auto f = flag(list[l]);
    if (!f) fail("{}: {}[{}] = {} is not {}", path, key, l, list[l].dump(), what);
    out.push_back(*f);
  }
  return out;
}

// Phi-3's LongRoPE (HF's _compute_longrope_parameters): the short and long
// factors; the original context from the config's top level (Phi-3, where
// the attention factor's scale is max_position_embeddings over it) or from
// rope_scaling (scale: its factor); attention_factor, else
// √(1 + ln scale / ln original) for a scale above 1.
void read_longrope(const nlohmann::json& j, const nlohmann::json& rs, const std::string& path, ModelConfig& c) {
  c.rope_scaling = "longrope";
  const auto factors = [&](const char* key) {
    const std::string field = std::string("rope_scaling.") + key;
    if (!rs.contains(key) || !rs[key].is_array()) fail("{}: {} must be a list of numbers", path, field);
    std::vector<float> f;
    for (const auto& x : rs[key]) {
      if (!x.is_number()) fail("{}: {} must be a list of numbers", path, field);
      f.push_back(config_float(x.get<double>(), path, field));
    }
    return f;
  };
  c.rope_short_factors = factors("short_factor");
  c.rope_long_factors = factors("long_factor");
  double scale = 1.0;
  if (j.contains("original_max_position_embeddings") && !j["original_max_position_embeddings"].is_null()) {
    c.rope_orig_ctx = json_int(j, "original_max_position_embeddings", path);
    if (c.rope_orig_ctx < 1 || c.rope_orig_ctx > (1 << 24))
      fail("{}: original_max_position_embeddings {} is out of range [1, 16777216]", path, c.rope_orig_ctx);
    scale = double(c.ctx_len) / double(c.rope_orig_ctx);
  } else {
    c.rope_orig_ctx = json_int(rs, "original_max_position_embeddings", path, "rope_scaling", c.ctx_len);
    scale = json_number(rs, "factor", path, "rope_scaling", 1.0);
  }
  const double att = json_number(rs, "attention_factor", path, "rope_scaling", 0.0);
  c.rope_mscale = config_float(
      att > 0 ? att : scale <= 1 ? 1.0 : std::sqrt(1 + std::log(scale) / std::log(double(c.rope_orig_ctx))), path,
      "rope_scaling.attention_factor");
}

// YaRN (HF's _compute_yarn_parameters): factor, the original context, the
// correction range's betas and rounding (truncate), attention_factor, else
// 0.1·ln factor + 1. The factor is rope_scaling's, as llama.cpp takes it
// (transformers replaces it by max_position_embeddings over the original
// context when both are given; the two agree in gpt-oss's config).
void read_yarn(const nlohmann::json& rs, const std::string& path, ModelConfig& c) {
  c.rope_scaling = "yarn";
  const auto num = [&](const char* k, double def) {
    return config_float(json_number(rs, k, path, "rope_scaling", def), path, std::string("rope_scaling.") + k);
  };
  if ((rs.contains("mscale") && !rs["mscale"].is_null()) || (rs.contains("mscale_all_dim") && !rs["mscale_all_dim"].is_null()))
    fail("{}: rope_scaling.mscale / mscale_all_dim: DeepSeek's YaRN attention factor is not supported", path);
  c.rope_factor = num("factor", 1.0);
  c.rope_orig_ctx = config_int(json_number(rs, "original_max_position_embeddings", path, "rope_scaling", double(c.ctx_len)),
                               1, 1 << 24, path, "rope_scaling.original_max_position_embeddings");
  c.rope_yarn_beta_fast = num("beta_fast", 32.0);
  c.rope_yarn_beta_slow = num("beta_slow", 1.0);
  c.rope_yarn_truncate = json_bool(rs, "truncate", path, "rope_scaling", true);
  const double att = json_number(rs, "attention_factor", path, "rope_scaling", 0.0);
  c.rope_mscale = att > 0 ? config_float(att, path, "rope_scaling.attention_factor") : c.yarn_mscale();
}

// Sliding windows, Gemma's scalings and soft-caps, and which layers slide.
void read_attention_variants(const nlohmann::json& j, const std::string& path, const std::string& arch_name,
                             ModelConfig& c) {
  if (c.n_layers < 1 || c.n_layers > 1024) return;  // validate() names the field; no per-layer list that long
  const auto get_int = [&](const char* key, int64_t def) { return json_int(j, key, path, "", def); };
  const auto number = [&](const char* key, double def) {
    return config_float(json_number(j, key, path, "", def), path, key);
  };
  if (j.contains("use_sliding_window") && json_bool(j, "use_sliding_window", path) &&
      (c.arch == "qwen2" || c.arch == "qwen3"))
    fail("{}: use_sliding_window: Qwen's sliding window over its upper layers (max_window_layers) is not supported",
         path);
  // Mistral's and Phi-3's window (null: none); Hugging Face's Llama has none.
  if (arch_name == "MistralForCausalLM" || arch_name == "MixtralForCausalLM" || c.arch == "phi3")
    c.sliding_window = get_int("sliding_window", 0);
  if (c.arch == "granite") {
    c.embed_scale = number("embedding_multiplier", 1.0);
    c.residual_scale = number("residual_multiplier", 1.0);
    c.attn_scale = number("attention_multiplier", 1.0);  // GraniteConfig's default
    c.logit_scale = number("logits_scaling", 1.0);
  }
  if (c.arch == "smollm3") {
    // no_rope_layers[l] = 1: layer l uses RoPE; else every no_rope_layer_interval-th layer has none.
    const auto listed = layer_flags(j, "no_rope_layers", path, c.n_layers, "0 or 1", [](const nlohmann::json& e) {
      return e.is_number_integer() && (e == 0 || e == 1) ? std::optional<bool>(e == 1) : std::nullopt;
    });
    if (listed) {
      c.layer_rope = *listed;
    } else {
      const int64_t every = get_int("no_rope_layer_interval", 4);
      if (every < 1 || every > 1024) fail("{}: no_rope_layer_interval {} is out of range [1, 1024]", path, every);
      for (int64_t l = 0; l < c.n_layers; l++) c.layer_rope.push_back((l + 1) % every != 0);
    }
  }
  // layer_types: each layer's sliding_attention or full_attention (Gemma, gpt-oss).
  const auto layer_types = [&] {
    return layer_flags(j, "layer_types", path, c.n_layers, "sliding_attention or full_attention", [](const nlohmann::json& e) {
      const std::string t = e.is_string() ? e.get<std::string>() : "";
      return t == "sliding_attention" || t == "full_attention" ? std::optional<bool>(t == "sliding_attention")
                                                               : std::nullopt;
    });
  };
  if (c.arch == "gpt-oss") {  // GptOssConfig: its window on the even layers unless layer_types says otherwise
    c.sliding_window = get_int("sliding_window", 128);
    if (const auto listed = layer_types()) {
      c.layer_swa = *listed;
    } else {
      for (int64_t l = 0; l < c.n_layers; l++) c.layer_swa.push_back(l % 2 == 0);
    }
    const double limit = number("swiglu_limit", 7.0);
    if (limit != 7.0f) fail("{}: swiglu_limit {}: lmpress's clamped SwiGLU (as llama.cpp's) uses 7", path, limit);
  }
  if (!c.gemma()) return;
  c.sliding_window = get_int("sliding_window", 4096);
  c.embed_scale = std::sqrt(float(c.dim));
  c.attn_scale = 1.0f / std::sqrt(number("query_pre_attn_scalar", double(c.head_dim)));
  // Gemma2Config's defaults (Gemma 3 has neither cap).
  const auto cap = [&](const char* key, double gemma2_default) {  // null: no capping; absent: the default
    return j.contains(key) && j[key].is_null() ? 0.0f : number(key, c.arch == "gemma2" ? gemma2_default : 0.0);
  };
  c.attn_softcap = cap("attn_logit_softcapping", 50.0);
  c.final_softcap = cap("final_logit_softcapping", 30.0);
  const auto listed = layer_types();
  if (listed) {
    c.layer_swa = *listed;
  } else {
    // Gemma 2 slides on even layers; Gemma 3 on all but every pattern-th.
    c.layer_swa.assign(size_t(c.n_layers), 0);
    const int64_t pattern = c.arch == "gemma2" ? 2 : get_int("sliding_window_pattern", 6);
    if (pattern < 1 || pattern > 1024) fail("{}: sliding_window_pattern {} is out of range [1, 1024]", path, pattern);
    for (int64_t l = 0; l < c.n_layers; l++)
      c.layer_swa[size_t(l)] = c.arch == "gemma2" ? l % 2 == 0 : (l + 1) % pattern != 0;
  }
  if (c.arch == "gemma3") c.rope_theta_swa = number("rope_local_base_freq", 10000.0);
}

// A mixture of experts' sizes and routing (modeling_mixtral, _qwen2_moe,
// _qwen3_moe, _olmoe): Mixtral's experts have intermediate_size and always
// renormalize the chosen experts' weights; the others follow norm_topk_prob.
void read_experts(const nlohmann::json& j, const std::string& path, const std::string& arch_name, ModelConfig& c) {
  const bool mixtral = arch_name == "MixtralForCausalLM";
  if (!mixtral && !moe_arch(c.arch)) return;
  if (c.arch == "gpt-oss") {  // GptOssConfig: num_local_experts of intermediate_size, num_experts_per_tok
    c.n_experts = json_int(j, "num_local_experts", path, "", std::nullopt);
    c.n_experts_used = json_int(j, "num_experts_per_tok", path, "", json_int(j, "experts_per_token", path, "", 4));
    c.expert_ffn = c.ffn_dim;
    return;
  }
  const auto get = [&](const char* key, std::optional<int64_t> def) { return json_int(j, key, path, "", def); };
  if (c.arch == "deepseek") {  // DeepseekConfig: routed and shared experts of moe_intermediate_size, dense first blocks
    c.n_experts = get("n_routed_experts", std::nullopt);
    c.n_experts_used = get("num_experts_per_tok", std::nullopt);
    c.expert_ffn = get("moe_intermediate_size", std::nullopt);
    const int64_t shared = get("n_shared_experts", 0);
    if (shared < 0 || shared > 64) fail("{}: n_shared_experts {} is out of range [0, 64]", path, shared);
    c.shared_ffn = shared * c.expert_ffn;
    c.n_dense_lead = get("first_k_dense_replace", 0);
    // modeling_deepseek: block l has experts when l >= first_k_dense_replace and l % moe_layer_freq == 0.
    const int64_t freq = get("moe_layer_freq", 1);
    if (freq < 1 || freq > c.n_layers) fail("{}: moe_layer_freq {} is out of range [1, {}]", path, freq, c.n_layers);
    if (freq > 1) {
      c.layer_dense.assign(size_t(c.n_layers), 0);
      for (int64_t l = 0; l < c.n_layers; l++) c.layer_dense[size_t(l)] = l % freq != 0;
    }
    if (const std::string f = json_string(j, "scoring_func", path, "", "softmax"); f != "softmax")
      fail("{}: scoring_func '{}' is not supported (softmax)", path, f);
    c.expert_norm = json_bool(j, "norm_topk_prob", path, "", false);
    c.expert_scale = config_float(json_number(j, "routed_scaling_factor", path, "", 1.0), path, "routed_scaling_factor");
    return;
  }
  const auto get_int = [&](const char* key, std::optional<int64_t> def) { return json_int(j, key, path, "", def); };
  c.n_experts = get_int(mixtral ? "num_local_experts" : "num_experts", std::nullopt);
  c.n_experts_used = get_int("num_experts_per_tok", std::nullopt);
  const bool qwen = c.arch == "qwen2moe" || c.arch == "qwen3moe";
  c.expert_ffn = qwen ? get_int("moe_intermediate_size", std::nullopt) : c.ffn_dim;
  if (c.arch == "qwen2moe") c.shared_ffn = get_int("shared_expert_intermediate_size", std::nullopt);
  c.expert_norm = mixtral || json_bool(j, "norm_topk_prob", path, "", false);
  // Dense blocks among the sparse ones (modeling_qwen2_moe / _qwen3_moe): block l has experts unless it is in
  // mlp_only_layers or (l + 1) % decoder_sparse_step != 0; a dense block's MLP has intermediate_size.
  std::vector<uint8_t> dense(size_t(c.n_layers), 0);
  bool any = false;
  if (qwen) {
    const int64_t step = get_int("decoder_sparse_step", 1);
    if (step < 1 || step > c.n_layers) fail("{}: decoder_sparse_step {} is out of range [1, {}]", path, step, c.n_layers);
    for (int64_t l = 0; l < c.n_layers; l++) {
      dense[size_t(l)] = (l + 1) % step != 0;
      any = any || dense[size_t(l)];
    }
  }
  if (j.contains("mlp_only_layers") && !j["mlp_only_layers"].is_null() &&
      !(j["mlp_only_layers"].is_array() && j["mlp_only_layers"].empty())) {
    if (!qwen) fail("{}: mlp_only_layers is read for Qwen2-MoE and Qwen3-MoE only", path);
    const auto& m = j["mlp_only_layers"];
    if (!m.is_array()) fail("{}: field mlp_only_layers must be an array of layer indices", path);
    for (size_t i = 0; i < m.size(); i++) {
      if (!m[i].is_number_integer()) fail("{}: mlp_only_layers[{}] must be an integer", path, i);
      const int64_t l = m[i].is_number_unsigned() ? int64_t(std::min<uint64_t>(m[i].get<uint64_t>(), INT64_MAX)) : m[i].get<int64_t>();
      if (l < 0 || l >= c.n_layers) fail("{}: mlp_only_layers[{}] = {} is not a layer (0..{})", path, i, l, c.n_layers - 1);
      dense[size_t(l)] = 1, any = true;
    }
  }
  if (any) c.layer_dense = std::move(dense);
  if (j.contains("clip_qkv") && !j["clip_qkv"].is_null())
    fail("{}: clip_qkv: clipping q, k and v (OLMoE's option) is not supported", path);
}

}  // namespace

ModelConfig hf_config_from_text(const std::string& text, const std::string& path) {
  const nlohmann::json j = parse_json(text, path);
  if (!j.is_object()) fail("{}: config is not a JSON object", path);
  ModelConfig c;
  std::string arch_name;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    arch_name = j["architectures"][0].get<std::string>();
  if (const HfArch* a = find_hf_arch(arch_name)) {
    c.set_arch(a->arch);
  } else if (arch_name == "Gemma3ForConditionalGeneration") {
    fail("{}: Gemma3ForConditionalGeneration is Gemma 3 with a vision tower; lmpress runs the text-only "
         "Gemma3ForCausalLM checkpoints (gemma-3-1b, or a text model extracted from the multimodal one)",
         path);
  } else {
    std::string known;
    for (const HfArch& a : hf_archs()) known += (known.empty() ? "" : ", ") + std::string(a.hf_class);
    fail("{}: unknown architecture '{}' (supported: {})", path, arch_name, known);
  }
  auto get_int = [&](const char* key, std::optional<int64_t> def) { return json_int(j, key, path, "", def); };
  c.dim = get_int("hidden_size", std::nullopt);
  c.n_layers = get_int("num_hidden_layers", std::nullopt);
  // Checked before any per-layer list is sized by it (validate() checks the rest).
  if (c.n_layers < 1 || c.n_layers > 1024) fail("{}: num_hidden_layers = {} is out of range [1, 1024]", path, c.n_layers);
  c.n_heads = get_int("num_attention_heads", std::nullopt);
  c.n_kv_heads = get_int("num_key_value_heads", c.n_heads);
  c.ffn_dim = get_int("intermediate_size", std::nullopt);
  c.n_vocab = get_int("vocab_size", std::nullopt);
  c.ctx_len = get_int("max_position_embeddings", 2048);
  c.head_dim = get_int("head_dim", c.gemma() ? 256 : c.n_heads > 0 ? c.dim / c.n_heads : 0);  // Gemma's default: 256
  if (j.contains("rope_parameters"))
    fail("{}: rope_parameters (transformers' per-layer-type RoPE layout) is not supported yet; use a config with "
         "rope_theta / rope_scaling",
         path);
  c.rope_dim = c.head_dim;
  if (j.contains("partial_rotary_factor") && !j["partial_rotary_factor"].is_null()) {  // Phi-4-mini: 0.75
    const double f = json_number(j, "partial_rotary_factor", path);
    if (!(f > 0 && f <= 1)) fail("{}: partial_rotary_factor {} is out of range (0, 1]", path, f);
    c.rope_dim = int64_t(double(c.head_dim) * f);
  }
  c.rms_eps = config_float(json_number(j, "rms_norm_eps", path, "", 1e-6), path, "rms_norm_eps");
  c.rope_theta = config_float(json_number(j, "rope_theta", path, "", 10000.0), path, "rope_theta");
  c.tied_embeddings = json_bool(j, "tie_word_embeddings", path, "", c.gemma());
  if (c.arch != "qwen2" && c.arch != "qwen2moe") c.qkv_bias = json_bool(j, "attention_bias", path, "", c.qkv_bias);
  if (c.gemma()) {
    // Gemma configs name the activation hidden_activation (hidden_act is legacy).
    const std::string act = json_string(j, "hidden_activation", path, "", json_string(j, "hidden_act", path, "", "gelu_pytorch_tanh"));
    if (act != "gelu_pytorch_tanh" && act != "gelu_tanh")
      fail("{}: hidden_activation '{}' is not supported (gelu_pytorch_tanh)", path, act);
  } else if (const std::string act = json_string(j, "hidden_act", path, "", "silu"); act != "silu") {
    fail("{}: hidden_act '{}' is not supported (silu)", path, act);
  }
  read_attention_variants(j, path, arch_name, c);
  read_experts(j, path, arch_name, c);
  c.rope_layout = RopeLayout::Halves;
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const auto& rs = j["rope_scaling"];
    if (!rs.is_object()) fail("{}: rope_scaling must be an object", path);
    const std::string type = json_string(rs, "rope_type", path, "rope_scaling", json_string(rs, "type", path, "rope_scaling", ""));
    if (type != "linear" && type != "llama3" && type != "default" && type != "longrope" && type != "su" && type != "yarn")
      fail("{}: rope_scaling type '{}' is not supported (linear, llama3, longrope, yarn)", path, type);
    if (type == "longrope" || type == "su") {
      read_longrope(j, rs, path, c);
    } else if (type == "yarn") {
      read_yarn(rs, path, c);
    } else if (type != "default") {
      c.rope_scaling = type;
      auto num = [&](const char* k, double def) { return json_number(rs, k, path, "rope_scaling", def); };
      c.rope_factor = config_float(num("factor", 1.0), path, "rope_scaling.factor");
      c.rope_low_freq_factor = config_float(num("low_freq_factor", 1.0), path, "rope_scaling.low_freq_factor");
      c.rope_high_freq_factor = config_float(num("high_freq_factor", 4.0), path, "rope_scaling.high_freq_factor");
      c.rope_orig_ctx = config_int(num("original_max_position_embeddings", 8192), 1, 1 << 24, path,
                                   "rope_scaling.original_max_position_embeddings");
    }
  }
  // Some configs list several ids here; only a single one is used.
  auto token_id = [&](const char* key) -> int32_t {
    if (!j.contains(key) || !j[key].is_number_integer()) return -1;
    const int64_t id = json_int(j, key, path);
    if (id < -1 || id > INT32_MAX) fail("{}: {} = {} is out of range", path, key, id);
    return int32_t(id);
  };
  c.bos_id = token_id("bos_token_id");
  c.eos_id = token_id("eos_token_id");
  c.validate(path);
  return c;
}

namespace {

// An owned [rows, cols] tensor of src's (plain, 2- or 4-byte) elements: element (r, c) = src[base + r·rs + c·cs].
Tensor gather_matrix(std::string name, const Tensor& src, int64_t rows, int64_t cols, int64_t base, int64_t rs,
                     int64_t cs) {
  const size_t es = dtype_info(src.dtype).block_bytes;
  std::vector<uint8_t> out(size_t(rows * cols) * es);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++)
      std::memcpy(&out[size_t(r * cols + c) * es], src.data + size_t(base + r * rs + c * cs) * es, es);
  return make_owned_tensor(std::move(name), src.dtype, {rows, cols}, std::move(out));
}

// Rows `row0 + step·i` (i < rows) of expert e's MXFP4 matrix in Hugging Face's layout (blocks [E, R, cols/32, 16]:
// byte k holds values 2k and 2k + 1, low nibble first; scales [E, R, cols/32], E8M0) as ggml's MXFP4 blocks
// (the exponent, then byte j holding values j and j + 16).
Tensor mxfp4_rows(std::string name, const Tensor& blocks, const Tensor& scales, int64_t e, int64_t row0, int64_t step,
                  int64_t rows) {
  const int64_t R = blocks.shape[1], G = blocks.shape[2];
  std::vector<uint8_t> out(size_t(rows * G) * sizeof(BlockMXFP4));
  auto* o = reinterpret_cast<BlockMXFP4*>(out.data());
  for (int64_t i = 0; i < rows; i++)
    for (int64_t g = 0; g < G; g++, o++) {
      const int64_t src = (e * R + row0 + step * i) * G + g;
      const uint8_t* b = blocks.data + src * 16;
      o->e = scales.data[src];
      const auto nib = [&](int64_t v) { return (b[v / 2] >> (4 * (v % 2))) & 0xF; };
      for (int j = 0; j < 16; j++) o->qs[j] = uint8_t(nib(j) | nib(j + 16) << 4);
    }
  return make_owned_tensor(std::move(name), DType::MXFP4, {rows, G * 32}, std::move(out));
}

}  // namespace

// gpt-oss's experts as Hugging Face stores them, fused per layer: gate_up_proj [E, hidden, 2·F] (x · W, gate and up
// interleaved: columns 2f and 2f + 1), down_proj [E, F, hidden], their biases [E, 2·F] / [E, hidden]; or, as the
// released checkpoints, MXFP4 gate_up_proj_blocks / _scales (rows are outputs) and down_proj_blocks / _scales.
// Split here into per-expert linears (mlp.experts.E.{gate,up,down}_proj.weight; MXFP4 stays MXFP4) and the bias
// stacks hf_to_canonical names.
std::vector<Tensor> split_gpt_oss_experts(std::vector<Tensor> tensors, const ModelConfig& c, const std::string& path) {
  std::map<std::string, const Tensor*> by_name;
  for (const Tensor& t : tensors) by_name[t.name] = &t;
  const int64_t E = c.n_experts, D = c.dim, F = c.expert_ffn;
  // The tensor `name` of that shape, of type `type` (nullopt: f32, f16 or bf16).
  const auto need = [&](const std::string& name, std::optional<DType> type, std::vector<int64_t> shape) -> const Tensor& {
    const auto it = by_name.find(name);
    if (it == by_name.end()) fail("{}: missing tensor {}", path, name);
    const Tensor& t = *it->second;
    const bool typed = type ? t.dtype == *type : is_float_type(t.dtype) && t.dtype != DType::F64;
    if (!typed || t.shape != shape)
      fail("{}: {} is {} {}, expected {} [{}]", path, name, dtype_name(t.dtype), t.shape_str(),
           type ? dtype_name(*type) : "a float tensor", fmt::join(shape, ", "));
    return t;
  };
  std::vector<Tensor> out;
  for (const Tensor& t : tensors) {
    const std::string x = ".mlp.experts.";
    const size_t at = t.name.find(x);
    if (at == std::string::npos) {
      out.push_back(t);
      continue;
    }
    const std::string p = t.name.substr(0, at + x.size()), what = t.name.substr(at + x.size());
    const auto expert = [&](int64_t e, const char* proj) { return p + std::to_string(e) + "." + proj + ".weight"; };
    if (what == "gate_up_proj") {
      const Tensor& w = need(t.name, std::nullopt, {E, D, 2 * F});
      for (int64_t e = 0; e < E; e++)  // gate (f, d) = w[e][d][2f], up's at 2f + 1
        for (int half = 0; half < 2; half++)
          out.push_back(gather_matrix(expert(e, half ? "up_proj" : "gate_proj"), w, F, D, e * D * 2 * F + half, 2, 2 * F));
    } else if (what == "down_proj") {
      const Tensor& w = need(t.name, std::nullopt, {E, F, D});
      for (int64_t e = 0; e < E; e++)  // down (d, f) = w[e][f][d]
        out.push_back(gather_matrix(expert(e, "down_proj"), w, D, F, e * F * D, 1, D));
    } else if (what == "gate_up_proj_bias") {
      const auto b = to_f32(need(t.name, std::nullopt, {E, 2 * F}));
      std::vector<float> gate(size_t(E * F)), up(size_t(E * F));
      for (int64_t i = 0; i < E * F; i++) gate[size_t(i)] = b[size_t(2 * i)], up[size_t(i)] = b[size_t(2 * i + 1)];
      out.push_back(make_f32_tensor(p + "gate_proj_bias", {E, F}, std::move(gate)));
      out.push_back(make_f32_tensor(p + "up_proj_bias", {E, F}, std::move(up)));
    } else if (what == "down_proj_bias") {
      out.push_back(make_f32_tensor(t.name, {E, D}, to_f32(need(t.name, std::nullopt, {E, D}))));
    } else if (what == "gate_up_proj_blocks" || what == "down_proj_blocks") {
      const bool gu = what == "gate_up_proj_blocks";
      const int64_t R = gu ? 2 * F : D, cols = gu ? D : F;
      if (cols % 32) fail("{}: {}: MXFP4 rows of {} values are not whole blocks of 32", path, t.name, cols);
      const std::string base = p + (gu ? "gate_up_proj" : "down_proj");
      const Tensor& blocks = need(base + "_blocks", DType::U8, {E, R, cols / 32, 16});
      const Tensor& scales = need(base + "_scales", DType::U8, {E, R, cols / 32});
      for (int64_t e = 0; e < E; e++) {
        if (gu) {
          out.push_back(mxfp4_rows(expert(e, "gate_proj"), blocks, scales, e, 0, 2, F));
          out.push_back(mxfp4_rows(expert(e, "up_proj"), blocks, scales, e, 1, 2, F));
        } else {
          out.push_back(mxfp4_rows(expert(e, "down_proj"), blocks, scales, e, 0, 1, D));
        }
      }
    } else if (what != "gate_up_proj_scales" && what != "down_proj_scales") {
      fail("{}: {} is not one of gpt-oss's expert tensors", path, t.name);
    }
  }
  return out;
}

std::unique_ptr<Model> load_hf_model(const std::string& dir) {
  auto m = std::make_unique<Model>();
  m->path = dir;
  m->format = "hf";
  const std::string cfg_path = dir + "/config.json";
  const std::string cfg_text = read_text_file(cfg_path);
  m->cfg = hf_config_from_text(cfg_text, cfg_path);
  std::vector<Tensor> tensors = load_safetensors_dir(dir);
  const nlohmann::json cfg = parse_json(cfg_text, cfg_path);
  const bool mxfp4 = cfg.contains("quantization_config") && cfg["quantization_config"].is_object() &&
                     json_string(cfg["quantization_config"], "quant_method", cfg_path, "quantization_config", "") == "mxfp4";
  if (mxfp4 && m->cfg.arch != "gpt-oss")
    fail("{}: quantization_config.quant_method mxfp4 is read for gpt-oss's experts only", cfg_path);
  if (m->cfg.arch == "gpt-oss") tensors = split_gpt_oss_experts(std::move(tensors), m->cfg, dir);
  for (const Tensor& t : tensors)  // bytes only gpt-oss's MXFP4 experts are read from
    if (t.dtype == DType::U8) fail("{}: {} is U8, which lmpress reads only as gpt-oss's MXFP4 expert blocks", dir, t.name);
  if (mxfp4) m->format = "hf-mxfp4";
  if (cfg.contains("quantization_config") && !mxfp4) {
    const IntCheckpointConfig q =
        int_checkpoint_from_config(nlohmann::ordered_json::parse(cfg_text)["quantization_config"], cfg_path);
    tensors = dequantize_int_checkpoint_tensors(std::move(tensors), q, dir);
    const std::string scheme = !q.act_int8 ? "" : q.spec.bits == 4 ? "w4a8 " : "w8a8 ";
    m->format = std::string("hf-") + int_checkpoint_name(q.format) + " " + scheme + q.spec.name() +
                (q.per_module() ? " + per-module formats" : "");
    m->cfg.act_int8 = q.act_int8;
  }
  for (auto& t : tensors) {
    std::string name = hf_to_canonical(t.name, m->cfg);
    if (name.empty()) continue;  // e.g. rotary_emb.inv_freq buffers
    t.name = name;
    m->tensors.push_back(std::move(t));
  }
  if (m->cfg.gemma()) shift_gemma_norms(*m, +1.0f);
  for (Tensor& t : m->tensors)  // Qwen2-MoE's shared expert gate: a linear of one output, llama.cpp's a vector
    if (t.name.ends_with(".ffn_gate_inp_shexp.weight") && t.shape.size() == 2 && t.shape[0] == 1) t.shape = {t.shape[1]};
  split_fused_projections(*m);
  Vocab v;
  if (file_exists(dir + "/tokenizer.model")) {
    v = vocab_from_sentencepiece(dir + "/tokenizer.model");
  } else if (file_exists(dir + "/tokenizer.json")) {
    v = vocab_from_tokenizer_json(dir + "/tokenizer.json");
  } else {
    fail("{}: no tokenizer.model or tokenizer.json", dir);
  }
  apply_hf_tokenizer_config(v, dir);
  if (m->cfg.bos_id >= 0 && v.bos < 0) v.bos = m->cfg.bos_id;
  if (m->cfg.eos_id >= 0 && v.eos < 0) v.eos = m->cfg.eos_id;
  m->tokenizer = Tokenizer::create(std::move(v), dir);
  m->cfg.bos_id = m->tokenizer->vocab().bos;
  m->cfg.eos_id = m->tokenizer->vocab().eos;
  if (!m->find("output.weight")) m->cfg.tied_embeddings = true;
  m->bind();
  return m;
}

}  // namespace lmpress
