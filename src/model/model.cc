#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <unordered_map>

#include "core/error.h"
#include "core/low_rank_tensor.h"
#include "core/mapped_file.h"
#include "io/hub.h"
#include "kernels/to_f32.h"

namespace lmpress {

const Tensor* Model::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const Tensor& Model::tensor(const std::string& name) const {
  if (const Tensor* t = find(name)) return *t;
  fail("{}: no tensor {}", path, name);
}

Tensor& Model::tensor_slot(const std::string& name) { return const_cast<Tensor&>(tensor(name)); }

void Model::set_f32(const std::string& name, std::vector<float> values) {
  for (Tensor& t : tensors)
    if (t.name == name) {
      t = make_f32_tensor(name, t.shape, std::move(values));
      return;
    }
  fail("{}: no tensor {}", path, name);
}

int64_t Model::n_params() const {
  int64_t n = 0;
  for (const auto& t : tensors)
    if (t.name != "rope_freqs.weight") n += stored_params(t);
  return n;
}

uint64_t Model::n_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors) n += t.nbytes;
  return n;
}

namespace {

const Tensor& require(const Model& m, const std::string& name, std::vector<int64_t> shape) {
  const Tensor* t = m.find(name);
  if (!t) fail("{}: missing tensor {}", m.path, name);
  if (t->shape != shape) {
    Tensor want;
    want.shape = shape;
    fail("{}: tensor {} has shape {}, the config needs {}", m.path, name, t->shape_str(), want.shape_str());
  }
  return *t;
}

std::vector<float> small_f32(const Model& m, const std::string& name, int64_t n) {
  return to_f32(require(m, name, {n}));
}

}  // namespace

void Model::bind_experts(int64_t l, LayerWeights& L, const std::unordered_map<std::string, const Tensor*>& by_name) const {
  const auto& c = cfg;
  const std::string b = fmt::format("blk.{}.", l);
  const auto get = [&](const std::string& name, std::vector<int64_t> shape) -> const Tensor* {
    const auto it = by_name.find(name);
    if (it == by_name.end())
      fail("{}: missing tensor {} ({} {}, {} {})", path, name, c.field(c.expert_field("count")), c.n_experts,
           c.field(c.expert_field("size")), c.expert_ffn);
    return &require(*this, name, std::move(shape));
  };
  L.router = get(b + "ffn_gate_inp.weight", {c.n_experts, c.dim});
  L.experts.resize(size_t(c.n_experts));
  for (int64_t e = 0; e < c.n_experts; e++) {
    auto& x = L.experts[size_t(e)];
    x.gate = get(expert_tensor_name(b + "ffn_gate_exps.weight", e), {c.expert_ffn, c.dim});
    x.up = get(expert_tensor_name(b + "ffn_up_exps.weight", e), {c.expert_ffn, c.dim});
    x.down = get(expert_tensor_name(b + "ffn_down_exps.weight", e), {c.dim, c.expert_ffn});
  }
  if (c.expert_softmax_chosen) {  // gpt-oss: the router's and every expert projection's biases
    L.router_bias = small_f32(*this, b + "ffn_gate_inp.bias", c.n_experts);
    const auto stack = [&](const char* name, int64_t rows, std::vector<float> LayerWeights::Expert::* field) {
      const auto all = to_f32(require(*this, b + name, {c.n_experts, rows}));
      for (int64_t e = 0; e < c.n_experts; e++)
        L.experts[size_t(e)].*field = std::vector<float>(all.begin() + e * rows, all.begin() + (e + 1) * rows);
    };
    stack("ffn_gate_exps.bias", c.expert_ffn, &LayerWeights::Expert::b_gate);
    stack("ffn_up_exps.bias", c.expert_ffn, &LayerWeights::Expert::b_up);
    stack("ffn_down_exps.bias", c.dim, &LayerWeights::Expert::b_down);
  }
  // More experts in the file than the config names would be silently unused.
  const std::string past = expert_tensor_name(b + "ffn_gate_exps.weight", c.n_experts);
  if (by_name.count(past))
    fail("{}: tensor {} is past the {} experts of {}", path, past, c.n_experts, c.field(c.expert_field("count")));
  if (c.shared_ffn > 0) {
    L.shared.gate = get(b + "ffn_gate_shexp.weight", {c.shared_ffn, c.dim});
    L.shared.up = get(b + "ffn_up_shexp.weight", {c.shared_ffn, c.dim});
    L.shared.down = get(b + "ffn_down_shexp.weight", {c.dim, c.shared_ffn});
    if (c.shared_gate()) L.shexp_gate = small_f32(*this, b + "ffn_gate_inp_shexp.weight", c.dim);
  }
}

void Model::bind() {
  cfg.validate(path);
  const auto& c = cfg;
  // Blocks past the configured count would be silently skipped.
  int64_t present = 0;
  for (const auto& t : tensors) present = std::max(present, layer_of(t.name) + 1);
  if (present != c.n_layers)
    fail("{}: {} is {} but the weights hold {} layers", path, cfg.field("num_hidden_layers"), c.n_layers, present);
  tok_embd = &require(*this, "token_embd.weight", {c.n_vocab, c.dim});
  const Tensor* out = find("output.weight");
  if (cfg.tied_embeddings || !out) {
    cfg.tied_embeddings = true;
    output = tok_embd;
  } else {
    output = &require(*this, "output.weight", {c.n_vocab, c.dim});
  }
  output_norm = small_f32(*this, "output_norm.weight", c.dim);
  layers.assign(size_t(c.n_layers), {});
  std::unordered_map<std::string, const Tensor*> by_name;  // a mixture of experts has thousands of tensors
  if (c.moe())
    for (const Tensor& t : tensors) by_name[t.name] = &t;
  for (int64_t l = 0; l < c.n_layers; l++) {
    auto n = [&](const char* what) { return fmt::format("blk.{}.{}", l, what); };
    auto& L = layers[size_t(l)];
    if (c.pre_norms) {
      L.attn_norm = small_f32(*this, n("attn_norm.weight"), c.dim);
      L.ffn_norm = small_f32(*this, n("ffn_norm.weight"), c.dim);
    }
    const int64_t qd = c.q_dim(l), kvd = c.kv_dim(l), F = c.ffn(l);
    L.wq = &require(*this, n("attn_q.weight"), {qd, c.dim});
    L.wk = &require(*this, n("attn_k.weight"), {kvd, c.dim});
    L.wv = &require(*this, n("attn_v.weight"), {kvd, c.dim});
    L.wo = &require(*this, n("attn_output.weight"), {c.dim, qd});
    if (c.layer_moe(l)) {
      bind_experts(l, L, by_name);
    } else {
      L.w_gate = &require(*this, n("ffn_gate.weight"), {F, c.dim});
      L.w_up = &require(*this, n("ffn_up.weight"), {F, c.dim});
      L.w_down = &require(*this, n("ffn_down.weight"), {c.dim, F});
    }
    if (c.qkv_bias) {
      L.bq = small_f32(*this, n("attn_q.bias"), qd);
      L.bk = small_f32(*this, n("attn_k.bias"), kvd);
      L.bv = small_f32(*this, n("attn_v.bias"), kvd);
    }
    if (c.qk_norm) {
      L.q_norm = small_f32(*this, n("attn_q_norm.weight"), c.qk_norm_full ? qd : c.head_dim);
      L.k_norm = small_f32(*this, n("attn_k_norm.weight"), c.qk_norm_full ? kvd : c.head_dim);
    }
    if (c.post_norms) {
      L.attn_post_norm = small_f32(*this, n("post_attention_norm.weight"), c.dim);
      L.ffn_post_norm = small_f32(*this, n("post_ffw_norm.weight"), c.dim);
    }
    if (c.attn_sinks) L.sinks = small_f32(*this, n("attn_sinks.weight"), c.heads(l));
    // Output biases: llama.cpp's optional attn_output.bias / ffn_down.bias,
    // written by structured pruning's bias compensation.
    if (find(n("attn_output.bias"))) L.bo = small_f32(*this, n("attn_output.bias"), c.dim);
    if (find(n("ffn_down.bias"))) L.b_down = small_f32(*this, n("ffn_down.bias"), c.dim);
  }
  rope_inv_freqs = cfg.rope_inv_freqs();
  if (const Tensor* ff = find("rope_freqs.weight")) {
    // llama.cpp stores Llama 3 scaling as per-pair divisors of the base frequencies.
    if (ff->numel() != c.rope_dim / 2) fail("{}: rope_freqs.weight has {} values, needs {}", path, ff->numel(), c.rope_dim / 2);
    if (c.rope_scaling == "yarn") fail("{}: rope_freqs.weight with YaRN scaling is not supported", path);
    auto f = to_f32(*ff);
    for (size_t i = 0; i < f.size(); i++)
      if (!(std::isfinite(f[i]) && f[i] != 0)) fail("{}: rope_freqs.weight[{}] = {} is not a finite nonzero divisor", path, i, f[i]);
    rope_inv_freqs = c.rope_inv_freqs_divided(f);
  }
  rope_inv_freqs_long.clear();
  // Also for a llama file's rope_freqs (the short factors) + lmpress's long factors.
  if (!c.rope_long_factors.empty() && c.rope_long_factors != c.rope_short_factors)
    rope_inv_freqs_long = c.rope_inv_freqs_divided(c.rope_long_factors);
  rope_inv_freqs_swa.clear();
  if (c.rope_theta_swa > 0) rope_inv_freqs_swa = c.rope_inv_freqs_swa();
  if (tokenizer && int64_t(tokenizer->vocab().size()) > c.n_vocab)
    fail("{}: tokenizer has {} tokens but the model's vocabulary is {}", path, tokenizer->vocab().size(), c.n_vocab);
}

namespace {

// Rows row0..row0+rows-1 of t, sharing its bytes.
Tensor row_view(const Model& m, const Tensor& t, std::string name, int64_t row0, int64_t rows) {
  if (is_row_indexed(t.dtype))
    fail("{}: {} is {}, whose rows cannot be split", m.path, t.name, dtype_name(t.dtype));
  Tensor v = t;
  v.name = std::move(name);
  v.shape = {rows, t.cols()};
  const uint64_t rb = row_bytes(t.dtype, uint64_t(t.cols()));
  v.data = t.data ? t.data + uint64_t(row0) * rb : nullptr;
  v.nbytes = uint64_t(rows) * rb;
  return v;
}

}  // namespace

void split_fused_projections(Model& m) {
  const ModelConfig& c = m.cfg;
  std::vector<Tensor> out;
  for (const Tensor& t : m.tensors) {
    const int64_t l = layer_of(t.name);
    const std::string b = "blk." + std::to_string(l) + ".";
    const bool qkv = t.name == b + "attn_qkv.weight";
    const bool gate_up = t.name == b + "ffn_gate_up.weight" || (c.arch == "phi3" && t.name == b + "ffn_up.weight");
    if (!qkv && !gate_up) {
      out.push_back(t);
      continue;
    }
    if (l < 0 || l >= c.n_layers) fail("{}: {} is past the model's {} layers", m.path, t.name, c.n_layers);
    for (const char* part : {"attn_q.weight", "attn_k.weight", "attn_v.weight", "ffn_gate.weight"})
      if (m.find(b + part) && (qkv || std::string(part) == "ffn_gate.weight"))
        fail("{}: {} and the separate {} are both present", m.path, t.name, b + part);
    const int64_t q = c.q_dim(l), kv = c.kv_dim(l), F = c.ffn(l);
    const int64_t want = qkv ? q + 2 * kv : 2 * F;
    if (t.shape.size() != 2 || t.shape[0] != want || t.shape[1] != c.dim)
      fail("{}: fused tensor {} has shape {}, the config needs [{}, {}]", m.path, t.name, t.shape_str(), want, c.dim);
    if (qkv) {
      out.push_back(row_view(m, t, b + "attn_q.weight", 0, q));
      out.push_back(row_view(m, t, b + "attn_k.weight", q, kv));
      out.push_back(row_view(m, t, b + "attn_v.weight", q + kv, kv));
    } else {
      out.push_back(row_view(m, t, b + "ffn_gate.weight", 0, F));
      out.push_back(row_view(m, t, b + "ffn_up.weight", F, F));
    }
  }
  m.tensors = std::move(out);
}



void split_expert_tensors(Model& m) {
  std::vector<Tensor> out;
  std::set<std::string> names;
  for (const Tensor& t : m.tensors) names.insert(t.name);
  for (const Tensor& t : m.tensors) {
    const int64_t l = layer_of(t.name);
    const std::string b = "blk." + std::to_string(l) + ".";
    if (l < 0 || (t.name != b + "ffn_gate_exps.weight" && t.name != b + "ffn_up_exps.weight" &&
                  t.name != b + "ffn_down_exps.weight")) {
      out.push_back(t);
      continue;
    }
    if (t.shape.size() != 3 || t.shape[0] < 1)
      fail("{}: {} has shape {}, a stack of experts needs [experts, rows, columns]", m.path, t.name, t.shape_str());
    if (t.shape[0] != m.cfg.n_experts)
      fail("{}: {} holds {} experts, {} says {}", m.path, t.name, t.shape[0], m.cfg.field(m.cfg.expert_field("count")),
           m.cfg.n_experts);
    const ModelConfig& c = m.cfg;
    const bool down = t.name == b + "ffn_down_exps.weight";
    const int64_t want_rows = down ? c.dim : c.expert_ffn, want_cols = down ? c.expert_ffn : c.dim;
    if (t.shape[1] != want_rows || t.shape[2] != want_cols)
      fail("{}: {} has shape {}, the config ({} {}, {} {}) needs [{}, {}, {}]", m.path, t.name, t.shape_str(),
           c.field("hidden_size"), c.dim, c.field(c.expert_field("size")), c.expert_ffn, c.n_experts, want_rows,
           want_cols);
    const int64_t rows = t.shape[1];
    Tensor flat = t;
    flat.shape = {t.shape[0] * rows, t.shape[2]};
    for (int64_t e = 0; e < t.shape[0]; e++) {
      // A file holding an expert both in a stack and alone (lmpress writes one or the other) is ambiguous.
      if (names.count(expert_tensor_name(t.name, e)))
        fail("{}: {} holds expert {}, and so does tensor {}", m.path, t.name, e, expert_tensor_name(t.name, e));
      out.push_back(row_view(m, flat, expert_tensor_name(t.name, e), e * rows, rows));
    }
  }
  m.tensors = std::move(out);
}

void shift_gemma_norms(Model& m, float delta) {
  for (const Tensor& t : std::vector<Tensor>(m.tensors))
    if (t.name.ends_with("norm.weight")) {
      std::vector<float> v = to_f32(t);
      for (float& x : v) x += delta;
      m.set_f32(t.name, std::move(v));
    }
}


namespace {

// A mixture of experts' tensors after "model.layers.N." (`b`: "blk.N.").
std::string expert_to_canonical(const std::string& rest, const std::string& b, bool mixtral) {
  const std::string moe = mixtral ? "block_sparse_moe." : "mlp.";
  if (rest == moe + "gate.weight") return b + "ffn_gate_inp.weight";
  if (mixtral) {
    if (!rest.starts_with("block_sparse_moe.experts.")) return "";
  } else {
    static const std::pair<const char*, const char*> kShared[] = {
        {"mlp.shared_expert.gate_proj.weight", "ffn_gate_shexp.weight"},  // Qwen2-MoE
        {"mlp.shared_expert.up_proj.weight", "ffn_up_shexp.weight"},
        {"mlp.shared_expert.down_proj.weight", "ffn_down_shexp.weight"},
        {"mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight"},
        {"mlp.shared_experts.gate_proj.weight", "ffn_gate_shexp.weight"},  // DeepSeek
        {"mlp.shared_experts.up_proj.weight", "ffn_up_shexp.weight"},
        {"mlp.shared_experts.down_proj.weight", "ffn_down_shexp.weight"}};
    for (auto& [hf, c] : kShared)
      if (rest == hf) return b + c;
    if (!rest.starts_with("mlp.experts.")) return "";
  }
  const std::string tail = rest.substr(moe.size() + 8);  // "E.w1.weight" / "E.gate_proj.weight"
  const size_t dot = tail.find('.');
  const std::string num = tail.substr(0, dot);
  if (dot == std::string::npos || num.empty() || num.size() > 5 || num.find_first_not_of("0123456789") != std::string::npos)
    return "";
  const std::string proj = tail.substr(dot + 1);
  static const std::pair<const char*, const char*> kMixtral[] = {
      {"w1.weight", "ffn_gate"}, {"w3.weight", "ffn_up"}, {"w2.weight", "ffn_down"}};
  static const std::pair<const char*, const char*> kOthers[] = {
      {"gate_proj.weight", "ffn_gate"}, {"up_proj.weight", "ffn_up"}, {"down_proj.weight", "ffn_down"}};
  for (auto& [hf, c] : mixtral ? kMixtral : kOthers)
    if (proj == hf) return b + c + "." + num + ".weight";
  return "";
}

}  // namespace

std::string hf_to_canonical(const std::string& h, const ModelConfig& cfg) {
  const bool post_norms = cfg.post_norms;
  if (h == "model.embed_tokens.weight") return "token_embd.weight";
  if (h == "model.norm.weight") return "output_norm.weight";
  if (h == "lm_head.weight") return "output.weight";
  static const std::pair<const char*, const char*> kLayer[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"self_attn.qkv_proj.weight", "attn_qkv.weight"},  // Phi-3's fused projections (split_fused_projections)
      {"mlp.gate_up_proj.weight", "ffn_gate_up.weight"},
      {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},  // Gemma 2/3
      {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
      {"self_attn.o_proj.bias", "attn_output.bias"},
  };
  // gpt-oss's own (its fused experts split by load_hf.cc's split_gpt_oss_experts into per-expert linears and these).
  static const std::pair<const char*, const char*> kGptOss[] = {
      {"self_attn.sinks", "attn_sinks.weight"},
      {"mlp.router.weight", "ffn_gate_inp.weight"},
      {"mlp.router.bias", "ffn_gate_inp.bias"},
      {"mlp.experts.gate_proj_bias", "ffn_gate_exps.bias"},
      {"mlp.experts.up_proj_bias", "ffn_up_exps.bias"},
      {"mlp.experts.down_proj_bias", "ffn_down_exps.bias"},
  };
  const std::string prefix = "model.layers.";
  if (h.compare(0, prefix.size(), prefix) != 0) return "";
  size_t dot = h.find('.', prefix.size());
  if (dot == std::string::npos) return "";
  std::string num = h.substr(prefix.size(), dot - prefix.size());
  if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos || num.size() > 5) return "";
  std::string rest = h.substr(dot + 1);
  if (cfg.moe())
    if (std::string e = expert_to_canonical(rest, "blk." + num + ".", cfg.arch == "llama"); !e.empty()) return e;
  // Gemma's post_attention_layernorm normalizes the attention's output; its
  // pre_feedforward_layernorm is the feed-forward input's norm.
  if (post_norms && rest == "post_attention_layernorm.weight") return "blk." + num + ".post_attention_norm.weight";
  if (!post_norms && (rest == "pre_feedforward_layernorm.weight" || rest == "post_feedforward_layernorm.weight")) return "";
  for (auto& [hf, c] : kLayer)
    if (rest == hf) return "blk." + num + "." + c;
  if (cfg.arch == "gpt-oss")
    for (auto& [hf, c] : kGptOss)
      if (rest == hf) return "blk." + num + "." + c;
  return "";
}

std::string canonical_to_hf(const std::string& c, const ModelConfig& cfg) {
  if (c == "token_embd.weight") return "model.embed_tokens.weight";
  if (c == "output_norm.weight") return "model.norm.weight";
  if (c == "output.weight") return "lm_head.weight";
  if (c.compare(0, 4, "blk.") != 0) return "";
  size_t dot = c.find('.', 4);
  if (dot == std::string::npos) return "";
  std::string num = c.substr(4, dot - 4);
  std::string probe = "model.layers." + num + ".";
  std::vector<std::string> names = {
      "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
      "self_attn.o_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias",
      "self_attn.o_proj.bias",
      "self_attn.q_norm.weight", "self_attn.k_norm.weight", "post_attention_layernorm.weight",
      "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight", "mlp.gate_proj.weight",
      "mlp.up_proj.weight", "mlp.down_proj.weight"};
  if (cfg.moe()) {
    const bool mixtral = cfg.arch == "llama";
    names.push_back(mixtral ? "block_sparse_moe.gate.weight" : "mlp.gate.weight");
    const std::string sx = cfg.arch == "deepseek" ? "mlp.shared_experts." : "mlp.shared_expert.";
    for (const char* p : {"gate_proj.weight", "up_proj.weight", "down_proj.weight"}) names.push_back(sx + p);
    names.push_back("mlp.shared_expert_gate.weight");
    if (const auto e = stacked_expert_name(c)) {
      const std::string x = (mixtral ? "block_sparse_moe.experts." : "mlp.experts.") + std::to_string(e->second) + ".";
      for (const char* p : mixtral ? std::vector<const char*>{"w1.weight", "w3.weight", "w2.weight"}
                                   : std::vector<const char*>{"gate_proj.weight", "up_proj.weight", "down_proj.weight"})
        names.push_back(x + p);
    }
  }
  for (const std::string& hf : names)
    if (hf_to_canonical(probe + hf, cfg) == c) return probe + hf;
  return "";
}

std::vector<std::string> model_input_paths(const std::string& arg) {
  const std::string path = resolve_model_path(arg);
  const std::filesystem::path p(path);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  if (!is_directory(path) && path.ends_with("config.json")) return {dir};
  std::vector<std::string> out{path};
  if (path.ends_with(".bin")) {  // llama2.c: the tokenizer load_llama2c_model finds beside it
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name == "tokenizer.bin" || (name.starts_with("tok") && name.ends_with(".bin"))) out.push_back(e.path().string());
    }
  }
  return out;
}

void check_finite_weights(const Model& m) {
  for (const Tensor& whole : m.tensors) {
    if (!whole.data) continue;
    // A factorized linear: its two factors (each far smaller than their product).
    std::vector<Tensor> parts{whole};
    if (whole.dtype == DType::LOW_RANK) parts = {low_rank_parts(whole).a, low_rank_parts(whole).b};
    for (const Tensor& t : parts) {
    if (!t.data) continue;
    const int64_t rows = t.rows(), cols = t.cols();
    int64_t first = -1;
#pragma omp parallel for schedule(dynamic, 16) reduction(max : first)
    for (int64_t r = 0; r < rows; r++) {
      thread_local std::vector<float> v;
      v.resize(size_t(cols));
      to_f32(t, r * cols, cols, v.data());
      const auto bad = std::find_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
      if (bad != v.end()) first = std::max(first, rows * cols - (r * cols + (bad - v.begin())));
    }
    // Checked: the pages it read need not stay resident until the tensor is used.
    release_mapped_pages(t);
    if (first < 0) continue;
    const int64_t i = rows * cols - first;
    std::vector<float> row(static_cast<size_t>(cols));
    to_f32(t, i - i % cols, cols, row.data());
    fail("{}: tensor {} has a non-finite value ({}) at row {}, column {}; lmpress refuses to compress or convert it "
         "(--no-finite-check skips this check)",
         m.path, t.name, row[size_t(i % cols)], i / cols, i % cols);
    }
  }
}

std::unique_ptr<Model> load_for_compression(const std::string& path, const std::string& tokenizer_path,
                                            bool skip_finite_check) {
  auto m = load_model(path, tokenizer_path);
  if (!skip_finite_check) check_finite_weights(*m);
  return m;
}

std::unique_ptr<Model> load_model(const std::string& arg, const std::string& tokenizer_path) {
  std::string path = resolve_model_path(arg);
  if (is_directory(path)) return load_hf_model(path);
  if (path.size() >= 11 && path.compare(path.size() - 11, 11, "config.json") == 0) {
    auto slash = path.find_last_of('/');
    return load_hf_model(slash == std::string::npos ? "." : path.substr(0, slash));
  }
  auto f = MappedFile::open(path);
  if (f->size() >= 4 && std::memcmp(f->data(), "GGUF", 4) == 0) return load_gguf_model(path);
  if (f->size() >= 4 && std::memcmp(f->data(), "ak42", 4) == 0)
    fail("{}: llama2.c version-1/2 checkpoints are not supported (only the legacy format)", path);
  if (path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0) fail("{}: not a GGUF file (bad magic)", path);
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".bin") == 0) return load_llama2c_model(path, tokenizer_path);
  fail("{}: unknown model format (expected a .gguf file, a Hugging Face directory or a llama2.c .bin)", path);
}

}  // namespace lmpress
