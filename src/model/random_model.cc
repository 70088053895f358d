#include "model/random_model.h"

#include <cmath>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace lmpress {

namespace {

ModelConfig llama_like(int64_t vocab, int64_t dim, int64_t layers, int64_t heads, int64_t kv_heads, int64_t ffn,
                       int64_t ctx, float theta, float eps, bool tied) {
  ModelConfig c;
  c.arch = "llama";
  c.n_vocab = vocab;
  c.dim = dim;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = dim / heads;
  c.rope_dim = c.head_dim;
  c.ffn_dim = ffn;
  c.ctx_len = ctx;
  c.rope_theta = theta;
  c.rms_eps = eps;
  c.tied_embeddings = tied;
  c.bos_id = 1;
  c.eos_id = 2;
  return c;
}

// Gemma 2 / 3 with heads of 256 (query_pre_attn_scalar 256), as the 2B / 1B models.
ModelConfig gemma_like(const std::string& arch, int64_t vocab, int64_t dim, int64_t layers, int64_t heads,
                       int64_t kv_heads, int64_t ffn, int64_t ctx, int64_t window) {
  const bool g3 = arch == "gemma3";
  ModelConfig c = llama_like(vocab, dim, layers, heads, kv_heads, ffn, ctx, g3 ? 1000000.0f : 10000.0f, 1e-6f, true);
  c.set_arch(arch);
  c.head_dim = c.rope_dim = 256;
  c.rope_layout = gguf_rope_layout(arch);
  c.embed_scale = std::sqrt(float(dim));
  c.attn_scale = 1.0f / 16.0f;
  c.attn_softcap = g3 ? 0.0f : 50.0f;
  c.final_softcap = g3 ? 0.0f : 30.0f;
  c.sliding_window = window;
  c.rope_theta_swa = g3 ? 10000.0f : 0.0f;
  for (int64_t l = 0; l < layers; l++) c.layer_swa.push_back(g3 ? (l + 1) % 6 != 0 : l % 2 == 0);
  return c;
}

// A mixture of experts: `experts` of `expert_ffn`, `used` per token.
ModelConfig with_experts(ModelConfig c, const std::string& arch, int64_t experts, int64_t used, int64_t expert_ffn,
                         int64_t shared_ffn = 0) {
  c.set_arch(arch);
  c.rope_layout = gguf_rope_layout(arch);
  c.n_experts = experts;
  c.n_experts_used = used;
  c.expert_ffn = expert_ffn;
  c.shared_ffn = shared_ffn;
  return c;
}

// splitmix64: a seeded stream per (tensor, row).
uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

Vocab synthetic_vocab(int64_t n) {
  if (n < 259 + 1) fail("make-model: a vocabulary needs at least 260 tokens");
  Vocab v;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  for (int b = 0; b < 256; b++) {
    v.tokens.push_back(fmt::format("<0x{:02X}>", b));
    v.types.push_back(TokenType::Byte);
  }
  // Made-up pieces "▁a", "▁b", ..., "▁ba", ...: distinct base-26 words.
  for (int64_t i = 0; int64_t(v.tokens.size()) < n; i++) {
    std::string w;
    for (int64_t x = i; ; x = x / 26 - 1) {
      w.insert(w.begin(), char('a' + x % 26));
      if (x < 26) break;
    }
    v.tokens.push_back("\xe2\x96\x81" + w);
    v.types.push_back(TokenType::Normal);
  }
  v.scores.resize(v.tokens.size());
  for (size_t i = 0; i < v.scores.size(); i++) v.scores[i] = i < 259 ? 0.0f : -float(i - 259);
  v.unk = 0;
  v.bos = 1;
  v.eos = 2;
  v.add_bos = true;
  return v;
}

}  // namespace

const std::vector<ModelShape>& model_shapes() {
  static const std::vector<ModelShape> shapes = [] {
    std::vector<ModelShape> s;
    s.push_back({"smollm2-135m", llama_like(49152, 576, 30, 9, 3, 1536, 8192, 100000.0f, 1e-5f, true)});
    s.push_back({"smollm2-360m", llama_like(49152, 960, 32, 15, 5, 2560, 8192, 100000.0f, 1e-5f, true)});
    ModelConfig qwen = llama_like(151936, 896, 24, 14, 2, 4864, 32768, 1000000.0f, 1e-6f, true);
    qwen.arch = "qwen2";
    qwen.qkv_bias = true;
    qwen.rope_layout = RopeLayout::Halves;
    s.push_back({"qwen2.5-0.5b", qwen});
    ModelConfig qwen3 = llama_like(151936, 1024, 28, 16, 8, 3072, 40960, 1000000.0f, 1e-6f, true);
    qwen3.arch = "qwen3";
    qwen3.qk_norm = true;
    qwen3.head_dim = qwen3.rope_dim = 128;  // wider than hidden / heads = 64
    qwen3.rope_layout = RopeLayout::Halves;
    s.push_back({"qwen3-0.6b", qwen3});
    s.push_back({"gemma2-2b", gemma_like("gemma2", 256000, 2304, 26, 8, 4, 9216, 8192, 4096)});
    s.push_back({"gemma3-1b", gemma_like("gemma3", 262144, 1152, 26, 4, 1, 6912, 32768, 512)});
    ModelConfig granite = llama_like(49155, 2048, 40, 32, 8, 8192, 131072, 10000000.0f, 1e-5f, true);
    granite.arch = "granite";
    granite.embed_scale = 12.0f, granite.residual_scale = 0.22f, granite.attn_scale = 0.015625f;
    granite.logit_scale = 8.0f;
    s.push_back({"granite-3.3-2b", granite});
    ModelConfig smollm3 = llama_like(128256, 2048, 36, 16, 4, 11008, 65536, 5000000.0f, 1e-6f, true);
    smollm3.arch = "smollm3";
    for (int64_t l = 0; l < smollm3.n_layers; l++) smollm3.layer_rope.push_back((l + 1) % 4 != 0);
    s.push_back({"smollm3-3b", smollm3});
    ModelConfig olmo2 = llama_like(100352, 2048, 16, 16, 16, 8192, 4096, 500000.0f, 1e-6f, false);
    olmo2.set_arch("olmo2");
    olmo2.rope_layout = gguf_rope_layout("olmo2");
    s.push_back({"olmo2-1b", olmo2});
    // Phi-3-mini-128k: LongRoPE (factors made up here: the real ones are data of the checkpoint), a window.
    ModelConfig phi3 = llama_like(32064, 3072, 32, 32, 32, 8192, 131072, 10000.0f, 1e-5f, false);
    phi3.set_arch("phi3");
    phi3.rope_layout = gguf_rope_layout("phi3");
    phi3.rope_scaling = "longrope";
    phi3.rope_orig_ctx = 4096;
    for (int64_t i = 0; i < phi3.rope_dim / 2; i++) {
      phi3.rope_short_factors.push_back(1.0f + 0.02f * float(i));
      phi3.rope_long_factors.push_back(1.0f + 0.5f * float(i));
    }
    phi3.rope_mscale = std::sqrt(1.0f + std::log(32.0f) / std::log(4096.0f));
    phi3.sliding_window = 262144;
    s.push_back({"phi3-mini-128k", phi3});
    s.push_back({"mixtral-8x7b", with_experts(llama_like(32000, 4096, 32, 32, 8, 14336, 32768, 1000000.0f, 1e-5f, false),
                                              "llama", 8, 2, 14336)});
    ModelConfig q3moe = llama_like(151936, 2048, 48, 32, 4, 6144, 40960, 1000000.0f, 1e-6f, false);
    q3moe.head_dim = q3moe.rope_dim = 128;
    s.push_back({"qwen3-30b-a3b", with_experts(q3moe, "qwen3moe", 128, 8, 768)});
    s.push_back({"olmoe-1b-7b", with_experts(llama_like(50304, 2048, 16, 16, 16, 1024, 4096, 10000.0f, 1e-5f, false),
                                             "olmoe", 64, 8, 1024)});
    s.push_back({"qwen1.5-moe-a2.7b", with_experts(llama_like(151936, 2048, 24, 16, 16, 5632, 8192, 1000000.0f, 1e-6f,
                                                              false),
                                                   "qwen2moe", 60, 4, 1408, 5632)});
    // DeepSeekMoE 16B: a dense first block, 64 routed experts (6 per token) and 2 shared ones of 1408.
    ModelConfig ds = with_experts(llama_like(102400, 2048, 28, 16, 16, 10944, 4096, 10000.0f, 1e-6f, false), "deepseek",
                                  64, 6, 1408, 2 * 1408);
    ds.n_dense_lead = 1;
    s.push_back({"deepseek-moe-16b", ds});
    // gpt-oss-20b: 32 experts of 2880 (4 per token) with biases, heads of 64 with sinks, even layers sliding over
    // 128 keys, YaRN ×32 over 4096 (the correction range rounded outward, as llama.cpp always does).
    ModelConfig oss = with_experts(llama_like(201088, 2880, 24, 64, 8, 2880, 131072, 150000.0f, 1e-5f, false),
                                   "gpt-oss", 32, 4, 2880);
    oss.head_dim = oss.rope_dim = 64;
    oss.sliding_window = 128;
    for (int64_t l = 0; l < oss.n_layers; l++) oss.layer_swa.push_back(l % 2 == 0);
    oss.rope_scaling = "yarn";
    oss.rope_factor = 32.0f;
    oss.rope_orig_ctx = 4096;
    oss.rope_mscale = oss.yarn_mscale();
    s.push_back({"gpt-oss-20b", oss});
    s.push_back({"tinyllama-1.1b", llama_like(32000, 2048, 22, 32, 4, 5632, 2048, 10000.0f, 1e-5f, false)});
    ModelConfig l32 = llama_like(128256, 2048, 16, 32, 8, 8192, 131072, 500000.0f, 1e-5f, true);
    l32.rope_scaling = "llama3";
    l32.rope_factor = 32.0f;
    l32.rope_low_freq_factor = 1.0f;
    l32.rope_high_freq_factor = 4.0f;
    l32.rope_orig_ctx = 8192;
    s.push_back({"llama-3.2-1b", l32});
    return s;
  }();
  return shapes;
}

std::string model_shape_names() {
  std::string s;
  for (const auto& m : model_shapes()) s += (s.empty() ? "" : ", ") + m.name;
  return s;
}

ModelConfig find_model_shape(const std::string& name) {
  for (const auto& m : model_shapes())
    if (m.name == name) return m.cfg;
  fail("--shape '{}': unknown shape (known: {})", name, model_shape_names());
}

std::unique_ptr<Model> make_random_model(const ModelConfig& cfg, const std::string& name) {
  cfg.validate(name);
  auto m = std::make_unique<Model>();
  m->path = name;
  m->format = "random";
  m->cfg = cfg;
  auto add = [&](const std::string& n, std::vector<int64_t> shape) {
    Tensor t;
    t.name = n;
    t.dtype = DType::F32;
    t.shape = std::move(shape);
    t.nbytes = uint64_t(t.numel()) * 4;
    m->tensors.push_back(std::move(t));
  };
  const int64_t D = cfg.dim;
  add("token_embd.weight", {cfg.n_vocab, D});
  add("output_norm.weight", {D});
  if (!cfg.tied_embeddings) add("output.weight", {cfg.n_vocab, D});
  for (int64_t l = 0; l < cfg.n_layers; l++) {
    const std::string p = "blk." + std::to_string(l) + ".";
    if (cfg.pre_norms) add(p + "attn_norm.weight", {D});
    add(p + "attn_q.weight", {cfg.q_dim(), D});
    add(p + "attn_k.weight", {cfg.kv_dim(), D});
    add(p + "attn_v.weight", {cfg.kv_dim(), D});
    if (cfg.qkv_bias) {
      add(p + "attn_q.bias", {cfg.q_dim()});
      add(p + "attn_k.bias", {cfg.kv_dim()});
      add(p + "attn_v.bias", {cfg.kv_dim()});
    }
    if (cfg.qk_norm) {
      add(p + "attn_q_norm.weight", {cfg.qk_norm_full ? cfg.q_dim() : cfg.head_dim});
      add(p + "attn_k_norm.weight", {cfg.qk_norm_full ? cfg.kv_dim() : cfg.head_dim});
    }
    add(p + "attn_output.weight", {D, cfg.q_dim()});
    if (cfg.attn_sinks) {  // gpt-oss
      add(p + "attn_output.bias", {D});
      add(p + "attn_sinks.weight", {cfg.n_heads});
    }
    if (cfg.post_norms) add(p + "post_attention_norm.weight", {D});
    if (cfg.pre_norms) add(p + "ffn_norm.weight", {D});
    if (cfg.post_norms) add(p + "post_ffw_norm.weight", {D});
    if (!cfg.layer_moe(l)) {
      add(p + "ffn_gate.weight", {cfg.ffn_dim, D});
      add(p + "ffn_up.weight", {cfg.ffn_dim, D});
      add(p + "ffn_down.weight", {D, cfg.ffn_dim});
      continue;
    }
    add(p + "ffn_gate_inp.weight", {cfg.n_experts, D});
    if (cfg.expert_softmax_chosen) {  // gpt-oss's router and expert biases
      add(p + "ffn_gate_inp.bias", {cfg.n_experts});
      add(p + "ffn_gate_exps.bias", {cfg.n_experts, cfg.expert_ffn});
      add(p + "ffn_up_exps.bias", {cfg.n_experts, cfg.expert_ffn});
      add(p + "ffn_down_exps.bias", {cfg.n_experts, D});
    }
    for (const char* proj : {"ffn_gate", "ffn_up", "ffn_down"})
      for (int64_t e = 0; e < cfg.n_experts; e++)
        add(expert_tensor_name(p + proj + "_exps.weight", e),
            proj == std::string("ffn_down") ? std::vector<int64_t>{D, cfg.expert_ffn} : std::vector<int64_t>{cfg.expert_ffn, D});
    if (cfg.shared_ffn > 0) {
      if (cfg.shared_gate()) add(p + "ffn_gate_inp_shexp.weight", {D});
      add(p + "ffn_gate_shexp.weight", {cfg.shared_ffn, D});
      add(p + "ffn_up_shexp.weight", {cfg.shared_ffn, D});
      add(p + "ffn_down_shexp.weight", {D, cfg.shared_ffn});
    }
  }
  m->tokenizer = Tokenizer::create(synthetic_vocab(cfg.n_vocab), name);
  return m;
}

std::vector<float> random_tensor_values(const Tensor& t, uint64_t seed) {
  std::vector<float> v(size_t(t.numel()));
  const bool is_norm = t.name.find("norm.weight") != std::string::npos;
  if (is_norm) {
    std::fill(v.begin(), v.end(), 1.0f);
    return v;
  }
  const int64_t rows = t.rows(), cols = t.cols();
  const uint64_t base = hash_name(t.name) ^ (seed * 0x2545f4914f6cdd1dull);
  // gpt-oss's sink logits on the scale of attention scores, so that they weigh in the softmax as trained ones do.
  const double sd = t.name.ends_with(".attn_sinks.weight") ? 2.0 : 0.02;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    uint64_t s = base + uint64_t(r) * 0x9e3779b97f4a7c15ull;
    float* out = v.data() + r * cols;
    for (int64_t c = 0; c < cols; c += 2) {
      // Box-Muller: two normals from two uniforms in (0, 1].
      const double u1 = (double(splitmix(s) >> 11) + 1.0) * 0x1.0p-53;
      const double u2 = double(splitmix(s) >> 11) * 0x1.0p-53;
      const double rad = std::sqrt(-2.0 * std::log(u1)) * sd;
      out[c] = float(rad * std::cos(2 * M_PI * u2));
      if (c + 1 < cols) out[c + 1] = float(rad * std::sin(2 * M_PI * u2));
    }
  }
  return v;
}

}  // namespace lmpress
