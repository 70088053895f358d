// GGUF model loading: llama.cpp's metadata keys ({arch}.embedding_length, ...).
#include <cmath>
#include <set>

#include "core/error.h"
#include "core/low_rank_tensor.h"
#include "io/gguf.h"
#include "io/tokenizer_files.h"
#include "kernels/to_f32.h"
#include "model/model.h"

namespace lmpress {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const std::string& tokenizer_path) {
  if (path.ends_with(".gguf") && tokenizer_path.empty()) {
    const GGUFFile g = GGUFFile::open(path);
    if (!g.find("tokenizer.ggml.model")) fail("{}: no tokenizer (metadata tokenizer.ggml.model)", path);
    return Tokenizer::create(vocab_from_gguf(g), path);
  }
  auto m = load_model(path, tokenizer_path);
  if (!m->tokenizer) fail("{}: the model has no tokenizer", m->path);
  return std::move(m->tokenizer);
}

namespace {

// Which layers slide: an array of flags per layer, or llama.cpp's pattern n
// (layer l slides when l % n < n − 1; 0: all), `n` when the key is absent.
void read_swa_pattern(const GGUFFile& g, const std::string& path, ModelConfig& c, int64_t n) {
  const std::string key = c.gguf_arch + ".attention.sliding_window_pattern";
  c.layer_swa.assign(size_t(c.n_layers), 0);
  const GGUFValue* v = g.find(key);
  if (v && v->type == GGUFType::ARRAY) {
    const auto& a = v->as_array();
    if (a.size() != size_t(c.n_layers)) fail("{}: {} has {} values for {} layers", path, key, a.size(), c.n_layers);
    for (size_t l = 0; l < a.size(); l++) {
      if (!a[l].is_int() && a[l].type != GGUFType::BOOL) fail("{}: {} holds a value that is not a flag", path, key);
      c.layer_swa[l] = a[l].as_int() != 0;
    }
    return;
  }
  if (v) {
    if (!v->is_int()) fail("{}: {} should be an integer or an array of flags", path, key);
    n = v->as_int();
  }
  if (n < 0 || n > 1024) fail("{}: {} = {} is out of range [0, 1024]", path, key, n);
  for (int64_t l = 0; l < c.n_layers; l++) c.layer_swa[size_t(l)] = n == 0 || l % n < n - 1;
}

// Optional tensors llama.cpp applies where a file has them and lmpress does not: refused by name rather than
// computed without (llama.cpp loads its input_scale tensors without applying them, and a classifier head is not
// used for text, so those pass).
void refuse_unapplied_tensors(const Model& m, const std::string& arch) {
  for (const Tensor& t : m.tensors) {
    const std::string& n = t.name;
    const bool block = layer_of(n) >= 0;
    const bool scale = block && n.ends_with(".scale");
    const bool bias = n == "output.bias" ||
                      (block && (n.ends_with(".ffn_gate.bias") || n.ends_with(".ffn_up.bias") || n.ends_with("_shexp.bias") ||
                                 (n.ends_with("_exps.bias") && arch != "gpt-oss")));
    if (scale)
      fail("{}: tensor {}: a per-tensor output scale (as NVFP4 and FP8 checkpoints carry) is not supported", m.path, n);
    if (bias) fail("{}: tensor {}: lmpress does not apply this bias (llama.cpp does)", m.path, n);
  }
}

// Sliding windows and Gemma's scalings and soft-caps, with llama.cpp's
// defaults for keys its converter leaves out.
void read_gguf_attention_variants(const GGUFFile& g, const std::string& path, ModelConfig& c, int64_t heads0) {
  const std::string k = c.gguf_arch + ".";
  const auto get_float = [&](const std::string& key, double def) {
    return config_float(g.get_float(key).value_or(def), path, key);
  };
  const bool gemma2 = c.arch == "gemma2";
  if (c.arch == "gpt-oss" && !g.find(k + "attention.sliding_window"))
    fail("{}: missing metadata {}attention.sliding_window (gpt-oss's local layers)", path, k);
  c.sliding_window = g.get_int(k + "attention.sliding_window").value_or(gemma2 ? 4096 : 0);
  // OLMo 3: windows on all but every 4th layer (llama.cpp's default), the sliding layers' RoPE unscaled; lmpress
  // runs it without RoPE scaling only.
  if (c.arch == "olmo2" && c.sliding_window > 0 && !c.rope_scaling.empty())
    fail("{}: {}attention.sliding_window with {}rope.scaling.type {}: OLMo 3's scaling on the global layers only is "
         "not supported",
         path, k, k, c.rope_scaling);
  if (!c.gemma() && c.sliding_window > 0 &&
      (c.arch == "gpt-oss" || c.arch == "olmo2" || g.find(k + "attention.sliding_window_pattern")))
    read_swa_pattern(g, path, c, c.arch == "gpt-oss" ? 2 : c.arch == "olmo2" ? 4 : 0);
  if (c.arch == "olmo2" && c.sliding_window > 0 && g.find(k + "rope.freq_base_swa"))
    c.rope_theta_swa = get_float(k + "rope.freq_base_swa", 10000.0);
  if (c.arch == "granite") {
    // llama.cpp skips a scale of 0 (unset).
    const auto scale = [&](const std::string& key) { const float v = get_float(key, 1.0); return v == 0.0f ? 1.0f : v; };
    c.embed_scale = scale(k + "embedding_scale");
    c.residual_scale = scale(k + "residual_scale");
    c.attn_scale = get_float(k + "attention.scale", 0.0);
    if (!g.find(k + "logit_scale")) fail("{}: missing metadata {}logit_scale", path, k);
    c.logit_scale = get_float(k + "logit_scale", 1.0);
  }
  if (c.arch == "smollm3") {
    // llama.cpp's rule: every 4th layer has no RoPE; lmpress records another pattern.
    c.layer_rope.assign(size_t(c.n_layers), 1);
    const GGUFValue* v = g.find("lmpress.rope_layers");
    if (v && (v->type != GGUFType::ARRAY || v->as_array().size() != size_t(c.n_layers)))
      fail("{}: lmpress.rope_layers should hold a flag per layer ({})", path, c.n_layers);
    for (int64_t l = 0; l < c.n_layers; l++)
      c.layer_rope[size_t(l)] = v ? v->as_array()[size_t(l)].as_int() != 0 : (l + 1) % 4 != 0;
  }
  if (!c.gemma()) return;
  c.embed_scale = std::sqrt(float(c.dim));
  // llama.cpp's rule (after gemma_pytorch): queries scaled by 1/√(width / heads) on the 27B models, else 1/√head_dim.
  const bool is_27b = c.n_layers == (gemma2 ? 46 : 62);
  if (heads0 < 1 || c.dim < 1 || c.head_dim < 1)
    fail("{}: {}attention.head_count {} / embedding_length {} / key_length {} must be positive", path, k, heads0, c.dim,
         c.head_dim);
  c.attn_scale = 1.0f / std::sqrt(float(is_27b ? c.dim / heads0 : c.head_dim));
  if (g.find("lmpress.attention.scale")) c.attn_scale = get_float("lmpress.attention.scale", 0.0);
  c.attn_softcap = gemma2 ? get_float(k + "attn_logit_softcapping", 50.0) : 0.0f;
  c.final_softcap = get_float(k + "final_logit_softcapping", gemma2 ? 30.0 : 0.0);
  if (c.sliding_window <= 0) return;
  if (c.arch == "gemma3") c.rope_theta_swa = get_float(k + "rope.freq_base_swa", 10000.0);
  else if (g.find(k + "rope.freq_base_swa")) c.rope_theta_swa = get_float(k + "rope.freq_base_swa", 10000.0);
  read_swa_pattern(g, path, c, gemma2 ? 2 : 6);
}

// A mixture of experts' sizes, with llama.cpp's defaults per architecture:
// an expert's feed-forward is feed_forward_length (llama, olmoe) or
// expert_feed_forward_length, else feed_forward_length / experts used
// (qwen2moe, qwen3moe); qwen2moe's shared expert has
// expert_shared_feed_forward_length, else feed_forward_length.
void read_gguf_experts(const GGUFFile& g, const std::string& path, ModelConfig& c) {
  const std::string k = c.gguf_arch + ".";
  const auto count = [&](const std::string& key, int64_t lo, int64_t hi, std::optional<int64_t> def) {
    const auto v = g.get_int(k + key);
    if (!v && !def) fail("{}: missing metadata {}{}", path, k, key);
    const int64_t x = v.value_or(def.value_or(0));
    if (x < lo || x > hi) fail("{}: {}{} = {} is out of range [{}, {}]", path, k, key, x, lo, hi);
    return x;
  };
  const bool by_arch = moe_arch(c.arch);
  c.n_experts = count("expert_count", by_arch ? 1 : 0, 1024, by_arch ? std::nullopt : std::optional<int64_t>(0));
  if (c.n_experts == 0) return;
  if (c.gguf_arch == "deci") fail("{}: deci with experts is not a llama.cpp architecture", path);
  if (!by_arch && c.arch != "llama")
    fail("{}: {}expert_count {}: {} with experts is not supported (Mixtral-style llama, qwen2moe, qwen3moe, olmoe, "
         "deepseek and gpt-oss are)",
         path, k, c.n_experts, c.arch);
  c.n_experts_used = count("expert_used_count", 1, c.n_experts, std::nullopt);
  const bool qwen = c.arch == "qwen2moe" || c.arch == "qwen3moe", deepseek = c.arch == "deepseek";
  // llama.cpp's llama and olmoe size their experts by feed_forward_length alone; the others read
  // expert_feed_forward_length, 0 standing for unset.
  const int64_t given = c.arch == "llama" || c.arch == "olmoe" ? 0 : count("expert_feed_forward_length", 0, 1 << 20, 0);
  if (given == 0 && deepseek) fail("{}: missing metadata {}expert_feed_forward_length", path, k);
  c.expert_ffn = given > 0 ? given : qwen ? c.ffn_dim / c.n_experts_used : c.ffn_dim;
  c.shared_ffn = c.arch == "qwen2moe" ? count("expert_shared_feed_forward_length", 1, 1 << 20, c.ffn_dim) : 0;
  if (deepseek) {  // its shared experts counted in experts of expert_ffn; routed weights scaled unless 0 or 1
    c.shared_ffn = count("expert_shared_count", 0, 64, std::nullopt) * c.expert_ffn;
    c.n_dense_lead = count("leading_dense_block_count", 0, c.n_layers - 1, 0);
    const double scale = g.get_float(k + "expert_weights_scale").value_or(0.0);
    if (scale != 0) c.expert_scale = config_float(scale, path, k + "expert_weights_scale");
  }
  if (const GGUFValue* v = g.find("lmpress.dense_layers")) {  // written by lmpress: dense blocks among the sparse ones
    if (v->type != GGUFType::ARRAY || v->elem_type != GGUFType::BOOL || v->as_array().size() != size_t(c.n_layers))
      fail("{}: lmpress.dense_layers should hold a bool per layer ({})", path, c.n_layers);
    c.layer_dense.assign(size_t(c.n_layers), 0);
    for (int64_t l = 0; l < c.n_layers; l++) c.layer_dense[size_t(l)] = v->as_array()[size_t(l)].as_int() != 0;
  }
  if (const GGUFValue* v = g.find(k + "expert_weights_norm")) {
    if (v->type != GGUFType::BOOL) fail("{}: {}expert_weights_norm should be a bool", path, k);
    c.expert_norm = v->as_int() != 0;
  }
}

// LongRoPE: llama.cpp's phi3 tensors rope_factors_short / rope_factors_long
// (taken out of the model's tensors into its config), or, in a llama file
// lmpress wrote, the long factors beside the rope_freqs tensor.
void read_longrope_factors(const GGUFFile& g, const std::string& path, Model& m) {
  ModelConfig& c = m.cfg;
  const std::string k = c.gguf_arch + ".";
  const auto ctx = [&] {
    c.rope_orig_ctx = g.get_int(k + "rope.scaling.original_context_length").value_or(c.ctx_len);
    if (c.rope_orig_ctx < 1 || c.rope_orig_ctx > (1 << 24))
      fail("{}: {}rope.scaling.original_context_length = {} is out of range", path, k, c.rope_orig_ctx);
  };
  if (const GGUFValue* v = g.find("lmpress.rope_scaling.long_factors")) {
    if (v->type != GGUFType::ARRAY) fail("{}: lmpress.rope_scaling.long_factors should be an array", path);
    for (const auto& x : v->as_array()) {
      if (!x.is_number()) fail("{}: lmpress.rope_scaling.long_factors holds a non-number", path);
      c.rope_long_factors.push_back(config_float(x.as_double(), path, "lmpress.rope_scaling.long_factors"));
    }
    ctx();
    return;
  }
  const Tensor* s = m.find("rope_factors_short.weight");
  const Tensor* l = m.find("rope_factors_long.weight");
  if (!s && !l) return;
  if (!s || !l) fail("{}: rope_factors_short.weight and rope_factors_long.weight come together", path);
  c.rope_scaling = "longrope";
  c.rope_short_factors = to_f32(*s);
  c.rope_long_factors = to_f32(*l);
  ctx();
  std::erase_if(m.tensors, [](const Tensor& t) { return t.name.starts_with("rope_factors_"); });
}

}  // namespace

std::unique_ptr<Model> load_gguf_model(const std::string& path) {
  GGUFFile g = GGUFFile::open(path);
  auto m = std::make_unique<Model>();
  m->path = path;
  m->format = "gguf";
  std::string arch = g.req_string("general.architecture");
  auto& c = m->cfg;
  static const std::set<std::string> kArchs = {"llama",    "qwen2",    "qwen3", "gemma2",   "gemma3", "granite",
                                               "smollm3",  "olmo2",    "phi3",  "qwen2moe", "qwen3moe", "olmoe",
                                               "deepseek", "gpt-oss", "deci"};
  if (!kArchs.count(arch))
    fail("{}: unknown architecture '{}' (supported: llama, qwen2, qwen3, gemma2, gemma3, granite, smollm3, olmo2, phi3, "
         "qwen2moe, qwen3moe, olmoe, deepseek, gpt-oss, deci)",
         path, arch);
  // deci: llama.cpp's Llama with per-layer head counts and feed-forward sizes
  // (what non-uniform structured pruning writes).
  c.set_arch(arch == "deci" ? "llama" : arch);
  c.rope_layout = gguf_rope_layout(arch);
  c.gguf_arch = arch;
  m->rotation = g.get_string("lmpress.rotation").value_or("");
  if (auto a = g.get_string("lmpress.activations")) {
    if (*a != "int8-token") fail("{}: lmpress.activations '{}' is unknown (int8-token)", path, *a);
    c.act_int8 = true;
  }
  const std::string k = arch + ".";
  const auto get_float = [&](const std::string& key, double def) {
    return config_float(g.get_float(key).value_or(def), path, key);
  };
  c.dim = g.req_int(k + "embedding_length");
  c.n_layers = g.req_int(k + "block_count");
  // Each of these is one integer, or an array with one per layer.
  const auto per_layer = [&](const std::string& key, const std::vector<int64_t>* fallback) {
    const GGUFValue* v = g.find(key);
    if (!v) {
      if (!fallback) fail("{}: missing metadata {}", path, key);
      return *fallback;
    }
    if (v->is_int()) return std::vector<int64_t>(size_t(c.n_layers), v->as_int());
    if (v->type != GGUFType::ARRAY) fail("{}: metadata {} should be an integer or an array", path, key);
    const auto& a = v->as_array();
    if (a.size() != size_t(c.n_layers)) fail("{}: {} has {} values for {} layers", path, key, a.size(), c.n_layers);
    std::vector<int64_t> out;
    for (const auto& x : a) {
      if (!x.is_int()) fail("{}: {} holds a non-integer", path, key);
      out.push_back(x.as_int());
    }
    return out;
  };
  if (c.n_layers < 1 || c.n_layers > 1024) fail("{}: {}block_count = {} is out of range [1, 1024]", path, k, c.n_layers);
  const auto ffn = per_layer(k + "feed_forward_length", nullptr);
  const auto heads = per_layer(k + "attention.head_count", nullptr);
  const auto kv_heads = per_layer(k + "attention.head_count_kv", &heads);
  c.set_layer_dims(heads, kv_heads, ffn);
  c.ctx_len = g.req_int(k + "context_length");
  c.rms_eps = get_float(k + "attention.layer_norm_rms_epsilon", 1e-5);
  c.rope_theta = get_float(k + "rope.freq_base", 10000.0);
  c.head_dim = g.get_int(k + "attention.key_length").value_or(heads[0] > 0 ? c.dim / heads[0] : 0);
  if (auto vl = g.get_int(k + "attention.value_length"); vl && *vl != c.head_dim)
    fail("{}: key_length {} != value_length {} is not supported", path, c.head_dim, *vl);
  c.rope_dim = g.get_int(k + "rope.dimension_count").value_or(c.head_dim);
  if (auto st = g.get_string(k + "rope.scaling.type"); st && *st != "none") {
    if (*st != "linear" && *st != "yarn") fail("{}: {}rope.scaling.type '{}' is not supported (linear, yarn)", path, k, *st);
    c.rope_scaling = *st;
    c.rope_factor = get_float(k + "rope.scaling.factor", 1.0);
    if (c.rope_factor == 0.0f) c.rope_scaling.clear(), c.rope_factor = 1.0f;  // llama.cpp: a factor of 0 is unset
  }
  if (c.rope_scaling == "yarn") {
    c.rope_orig_ctx = g.get_int(k + "rope.scaling.original_context_length").value_or(c.ctx_len);
    // llama.cpp reads no betas (32 and 1 always); a file that records others gets them here.
    c.rope_yarn_beta_fast = get_float(k + "rope.scaling.yarn_beta_fast", 32.0);
    c.rope_yarn_beta_slow = get_float(k + "rope.scaling.yarn_beta_slow", 1.0);
    if (const GGUFValue* t = g.find("lmpress.rope_scaling.yarn_truncate")) c.rope_yarn_truncate = t->as_int() != 0;
    if (get_float(k + "rope.scaling.yarn_log_multiplier", 0.0) != 0.0f)
      fail("{}: {}rope.scaling.yarn_log_multiplier: DeepSeek-V2's YaRN attention factor is not supported", path, k);
  }
  if (g.find("lmpress.rope_scaling.llama3.factor")) {
    // Llama 3 scaling parameters, recorded by lmpress beside llama.cpp's rope_freqs tensor.
    c.rope_scaling = "llama3";
    c.rope_factor = get_float("lmpress.rope_scaling.llama3.factor", 1.0);
    c.rope_low_freq_factor = get_float("lmpress.rope_scaling.llama3.low_freq_factor", 1.0);
    c.rope_high_freq_factor = get_float("lmpress.rope_scaling.llama3.high_freq_factor", 4.0);
    c.rope_orig_ctx = g.get_int("lmpress.rope_scaling.llama3.original_context_length").value_or(8192);
  }
  read_gguf_attention_variants(g, path, c, heads[0]);
  read_gguf_experts(g, path, c);
  if (const GGUFValue* v = g.find("lmpress.rotation.ffn_down_seed")) {
    const char* key = "lmpress.rotation.ffn_down_seed";
    if (v->type != GGUFType::UINT64) fail("{}: metadata {} should be uint64, is {}", path, key, gguf_type_name(v->type));
    // One feed-forward size and no experts: ModelConfig::validate, at bind().
    if (c.ffn_dim < 1 || c.ffn_dim > (1 << 20) || !HadamardRotation::supported(c.ffn_dim))
      fail("{}: metadata {}: {}.feed_forward_length {} has no Hadamard matrix", path, key, arch, c.ffn_dim);
    c.down_rotation = std::make_shared<const HadamardRotation>(c.ffn_dim, std::get<uint64_t>(v->v));
  }
  // llama.cpp's YaRN scales q and k by rope.scaling.attn_factor times 0.1·ln factor + 1.
  c.rope_mscale = get_float(k + "rope.scaling.attn_factor", 1.0) * (c.rope_scaling == "yarn" ? c.yarn_mscale() : 1.0f);
  m->tensors = g.tensors();
  if (arch == "gpt-oss")  // its norm before the feed-forward, under llama.cpp's name
    for (Tensor& t : m->tensors) t.name = replace_suffix(t.name, kGptOssFfnNormGguf, kFfnNorm);
  join_low_rank_parts(m->tensors, path);  // lmpress lowrank's factors
  refuse_unapplied_tensors(*m, arch);
  read_longrope_factors(g, path, *m);
  const Tensor* emb = m->find("token_embd.weight");
  if (!emb) fail("{}: missing tensor token_embd.weight", path);
  c.n_vocab = g.get_int(k + "vocab_size").value_or(emb->shape[0]);
  c.tied_embeddings = m->find("output.weight") == nullptr;
  c.qkv_bias = m->find("blk.0.attn_q.bias") != nullptr;
  if (g.find("tokenizer.ggml.model")) {
    m->tokenizer = Tokenizer::create(vocab_from_gguf(g), path);
    c.bos_id = m->tokenizer->vocab().bos;
    c.eos_id = m->tokenizer->vocab().eos;
  }
  split_fused_projections(*m);
  if (c.moe()) split_expert_tensors(*m);
  m->bind();
  return m;
}

}  // namespace lmpress
