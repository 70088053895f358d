#include "synthetic_model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>

#include "io/safetensors.h"
#include "core/mapped_file.h"
#include "kernels/to_f32.h"
#include "model/export.h"
#include "model/random_model.h"

namespace lmpress::test {
namespace {

std::string byte_char(int b) {
  // GPT-2 bytes_to_unicode, written out independently of the tokenizer code.
  std::vector<int> bs;
  for (int i = 33; i <= 126; i++) bs.push_back(i);
  for (int i = 161; i <= 172; i++) bs.push_back(i);
  for (int i = 174; i <= 255; i++) bs.push_back(i);
  int n = 0, cp = -1;
  for (int x = 0; x < 256; x++) {
    bool in = std::find(bs.begin(), bs.end(), x) != bs.end();
    int c = in ? x : 256 + n++;
    if (x == b) cp = c;
  }
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else {
    s += char(0xc0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3f));
  }
  return s;
}

}  // namespace

void write_synthetic_hf(const std::string& dir, const SyntheticSpec& s) {
  const int64_t hd = s.head_dim ? s.head_dim : s.dim / s.n_heads, qd = s.n_heads * hd, kvd = s.n_kv_heads * hd;
  const int64_t vocab = 256 + 4 + 2;
  const bool gemma = s.arch == "Gemma2ForCausalLM" || s.arch == "Gemma3ForCausalLM";
  const bool olmo2 = s.arch == "Olmo2ForCausalLM", phi3 = s.arch == "Phi3ForCausalLM";
  const bool bias = s.arch == "Qwen2ForCausalLM" || s.arch == "Qwen2MoeForCausalLM",
             qk_norm = s.arch == "Qwen3ForCausalLM" || s.arch == "Gemma3ForCausalLM" || olmo2 ||
                       s.arch == "Qwen3MoeForCausalLM" || s.arch == "OlmoeForCausalLM";
  const float norm_base = gemma ? 0.0f : 1.0f;  // Gemma computes x·(1 + w)
  const bool mixtral = s.arch == "MixtralForCausalLM", olmoe = s.arch == "OlmoeForCausalLM";
  const bool qwen_moe = s.arch == "Qwen2MoeForCausalLM" || s.arch == "Qwen3MoeForCausalLM";
  const bool deepseek = s.arch == "DeepseekForCausalLM";
  const bool oss = s.arch == "GptOssForCausalLM";
  const bool moe = mixtral || olmoe || qwen_moe || deepseek, shared = s.arch == "Qwen2MoeForCausalLM";
  std::mt19937 rng(s.seed);
  std::normal_distribution<float> nd(0.0f, 0.3f);
  std::vector<TensorToWrite> ts;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float base = 0.0f) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = base + nd(rng);
    ts.push_back({make_f32_tensor(name, shape, v), {}});
  };
  add("model.embed_tokens.weight", {vocab, s.dim});
  for (int64_t l = 0; l < s.n_layers; l++) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    if (!olmo2) add(p + "input_layernorm.weight", {s.dim}, norm_base);
    if (phi3) {
      add(p + "self_attn.qkv_proj.weight", {qd + 2 * kvd, s.dim});
    } else {
      add(p + "self_attn.q_proj.weight", {qd, s.dim});
      add(p + "self_attn.k_proj.weight", {kvd, s.dim});
      add(p + "self_attn.v_proj.weight", {kvd, s.dim});
    }
    if (bias || oss) {
      add(p + "self_attn.q_proj.bias", {qd});
      add(p + "self_attn.k_proj.bias", {kvd});
      add(p + "self_attn.v_proj.bias", {kvd});
    }
    if (qk_norm) {
      add(p + "self_attn.q_norm.weight", {olmo2 || olmoe ? qd : hd}, norm_base);  // OLMo 2, OLMoE: over all of q and k
      add(p + "self_attn.k_norm.weight", {olmo2 || olmoe ? kvd : hd}, norm_base);
    }
    add(p + "self_attn.o_proj.weight", {s.dim, qd});
    add(p + "post_attention_layernorm.weight", {s.dim}, norm_base);
    if (oss) {  // GptOssAttention's sinks and o_proj bias; GptOssMLP's router and fused experts
      add(p + "self_attn.o_proj.bias", {s.dim});
      add(p + "self_attn.sinks", {s.n_heads}, 1.0f);
      add(p + "mlp.router.weight", {s.experts, s.dim});
      add(p + "mlp.router.bias", {s.experts});
      const std::string x = p + "mlp.experts.";
      if (s.mxfp4) {  // random nibbles and exponents around 2^-3 (rows are outputs, as the released files)
        std::uniform_int_distribution<int> byte(0, 255), expo(122, 126);
        const auto mx = [&](const std::string& name, int64_t rows, int64_t cols) {
          std::vector<uint8_t> b(size_t(s.experts * rows * cols / 2)), e(size_t(s.experts * rows * cols / 32));
          for (auto& v : b) v = uint8_t(byte(rng));
          for (auto& v : e) v = uint8_t(expo(rng));
          ts.push_back({make_owned_tensor(name + "_blocks", DType::U8, {s.experts, rows, cols / 32, 16}, b), {}});
          ts.push_back({make_owned_tensor(name + "_scales", DType::U8, {s.experts, rows, cols / 32}, e), {}});
        };
        mx(x + "gate_up_proj", 2 * s.expert_ffn, s.dim);
        mx(x + "down_proj", s.dim, s.expert_ffn);
      } else {
        add(x + "gate_up_proj", {s.experts, s.dim, 2 * s.expert_ffn});
        add(x + "down_proj", {s.experts, s.expert_ffn, s.dim});
      }
      add(x + "gate_up_proj_bias", {s.experts, 2 * s.expert_ffn});
      add(x + "down_proj_bias", {s.experts, s.dim});
      continue;
    }
    if (gemma) add(p + "pre_feedforward_layernorm.weight", {s.dim}, norm_base);
    if (gemma || olmo2) add(p + "post_feedforward_layernorm.weight", {s.dim}, norm_base);
    const bool sparse = deepseek ? l >= 1 && l % s.sparse_step == 0
                                 : (l + 1) % s.sparse_step == 0 && std::find(s.mlp_only_layers.begin(), s.mlp_only_layers.end(), l) == s.mlp_only_layers.end();
    if (moe && sparse) {
      const std::string r = mixtral ? p + "block_sparse_moe." : p + "mlp.";
      add(r + "gate.weight", {s.experts, s.dim});
      const int64_t F = mixtral || olmoe ? s.ffn : s.expert_ffn;
      for (int64_t e = 0; e < s.experts; e++) {
        const std::string x = r + "experts." + std::to_string(e) + ".";
        add(x + (mixtral ? "w1.weight" : "gate_proj.weight"), {F, s.dim});
        add(x + (mixtral ? "w3.weight" : "up_proj.weight"), {F, s.dim});
        add(x + (mixtral ? "w2.weight" : "down_proj.weight"), {s.dim, F});
      }
      if (shared) {
        add(p + "mlp.shared_expert.gate_proj.weight", {s.shared_ffn, s.dim});
        add(p + "mlp.shared_expert.up_proj.weight", {s.shared_ffn, s.dim});
        add(p + "mlp.shared_expert.down_proj.weight", {s.dim, s.shared_ffn});
        add(p + "mlp.shared_expert_gate.weight", {1, s.dim});
      }
      if (deepseek) {
        add(p + "mlp.shared_experts.gate_proj.weight", {2 * s.expert_ffn, s.dim});
        add(p + "mlp.shared_experts.up_proj.weight", {2 * s.expert_ffn, s.dim});
        add(p + "mlp.shared_experts.down_proj.weight", {s.dim, 2 * s.expert_ffn});
      }
      continue;
    }
    if (phi3) {
      add(p + "mlp.gate_up_proj.weight", {2 * s.ffn, s.dim});
    } else {
      add(p + "mlp.gate_proj.weight", {s.ffn, s.dim});
      add(p + "mlp.up_proj.weight", {s.ffn, s.dim});
    }
    add(p + "mlp.down_proj.weight", {s.dim, s.ffn});
  }
  add("model.norm.weight", {s.dim}, norm_base);
  if (!s.tied) add("lm_head.weight", {vocab, s.dim});
  write_safetensors(dir + "/model.safetensors", ts);

  nlohmann::json c = {{"architectures", {s.arch}}, {"hidden_size", s.dim}, {"intermediate_size", s.ffn},
                      {"num_hidden_layers", s.n_layers}, {"num_attention_heads", s.n_heads},
                      {"num_key_value_heads", s.n_kv_heads}, {"vocab_size", vocab},
                      {"max_position_embeddings", s.ctx}, {"rms_norm_eps", 1e-6}, {"rope_theta", 500.0},
                      {"tie_word_embeddings", s.tied}, {"hidden_act", "silu"}};
  if (s.head_dim || gemma || oss) c["head_dim"] = hd;  // Gemma's default is 256
  if (oss) {
    c["num_local_experts"] = s.experts, c["num_experts_per_tok"] = s.experts_used, c["intermediate_size"] = s.expert_ffn;
    c["attention_bias"] = true, c["swiglu_limit"] = 7.0, c["sliding_window"] = s.sliding_window;
    if (s.mxfp4) c["quantization_config"] = {{"quant_method", "mxfp4"}};
  }
  if (deepseek) {
    c["n_routed_experts"] = s.experts, c["num_experts_per_tok"] = s.experts_used, c["norm_topk_prob"] = s.norm_topk;
    c["moe_intermediate_size"] = s.expert_ffn, c["n_shared_experts"] = 2, c["first_k_dense_replace"] = 1;
    c["moe_layer_freq"] = s.sparse_step, c["scoring_func"] = "softmax";
  } else if (moe) {
    c[mixtral ? "num_local_experts" : "num_experts"] = s.experts;
    c["num_experts_per_tok"] = s.experts_used;
    if (!mixtral) c["norm_topk_prob"] = s.norm_topk;
    if (qwen_moe) {
      c["moe_intermediate_size"] = s.expert_ffn, c["decoder_sparse_step"] = s.sparse_step;
      if (!s.mlp_only_layers.empty()) c["mlp_only_layers"] = s.mlp_only_layers;
    }
    if (shared) c["shared_expert_intermediate_size"] = s.shared_ffn;
  }
  if (s.sliding_window) c["sliding_window"] = s.sliding_window;
  if (phi3) {  // LongRoPE: 40-token tests run past the original context, so on the long factors
    const int64_t pairs = int64_t(double(hd) * s.partial_rotary) / 2;
    std::vector<double> shortf, longf;
    for (int64_t i = 0; i < pairs; i++) shortf.push_back(1.0 + 0.1 * double(i)), longf.push_back(1.5 + 0.7 * double(i));
    c["original_max_position_embeddings"] = 16;
    c["rope_scaling"] = {{"type", "longrope"}, {"short_factor", shortf}, {"long_factor", longf}};
    if (s.partial_rotary != 1.0) c["partial_rotary_factor"] = s.partial_rotary;
  }
  if (s.arch == "GraniteForCausalLM")
    c["embedding_multiplier"] = 3.0, c["residual_multiplier"] = 0.5, c["attention_multiplier"] = 0.25,
    c["logits_scaling"] = 2.5;
  if (s.arch == "SmolLM3ForCausalLM") {  // every other layer without RoPE
    std::vector<int> nr;
    for (int64_t l = 0; l < s.n_layers; l++) nr.push_back(l % 2 == 0);
    c["no_rope_layers"] = nr;
  }
  if (gemma) {
    c.erase("hidden_act");
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["query_pre_attn_scalar"] = 24;
    const bool g2 = s.arch == "Gemma2ForCausalLM";
    c["attn_logit_softcapping"] = g2 ? nlohmann::json(2.0) : nlohmann::json();
    c["final_logit_softcapping"] = g2 ? nlohmann::json(3.0) : nlohmann::json();
    if (!g2) c["rope_local_base_freq"] = 50.0, c["sliding_window_pattern"] = 2;
  }
  if (s.yarn_rope || oss)  // gpt-oss's configs have YaRN
    c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 16},
                         {"beta_fast", 1.0}, {"beta_slow", 0.05}, {"truncate", false}};
  if (s.llama3_rope)
    c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}};
  std::ofstream(dir + "/config.json") << c.dump(1);

  nlohmann::ordered_json v = nlohmann::ordered_json::object();
  for (int b = 0; b < 256; b++) v[byte_char(b)] = b;
  const std::string G = byte_char(' ');
  std::vector<std::string> merges = {G + " t", "h e", G + "t he", "i n"};
  int id = 256;
  for (const auto& m : merges) {
    std::string joined = m;
    joined.erase(joined.find(' '), 1);
    v[joined] = id++;
  }
  nlohmann::ordered_json tj;
  tj["added_tokens"] = {{{"id", 260}, {"content", "<|bos|>"}, {"special", true}},
                        {{"id", 261}, {"content", "<|eos|>"}, {"special", true}}};
  tj["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  tj["model"] = {{"type", "BPE"}, {"vocab", v}, {"merges", merges}};
  std::ofstream(dir + "/tokenizer.json") << tj.dump(1);
  std::ofstream(dir + "/tokenizer_config.json")
      << R"({"add_bos_token": true, "bos_token": "<|bos|>", "eos_token": "<|eos|>"})";
}

std::vector<std::vector<double>> reference_logits(const std::string& dir, const std::vector<int32_t>& tokens) {
  auto c = nlohmann::json::parse(read_text_file(dir + "/config.json"));
  auto st = SafetensorsFile::open(dir + "/model.safetensors");
  std::map<std::string, std::vector<double>> W;
  for (const auto& t : st.tensors) {
    if (t.dtype == DType::U8) {  // MXFP4 blocks and scales: their bytes
      W[t.name] = std::vector<double>(t.data, t.data + t.nbytes);
      continue;
    }
    auto f = to_f32(t);
    W[t.name] = std::vector<double>(f.begin(), f.end());
  }
  const int64_t D = c["hidden_size"], L = c["num_hidden_layers"], H = c["num_attention_heads"],
                KVH = c["num_key_value_heads"], F = c["intermediate_size"], V = c["vocab_size"];
  const int64_t hd = c.contains("head_dim") ? int64_t(c["head_dim"]) : D / H;
  const double eps = c["rms_norm_eps"], theta = c["rope_theta"];
  const std::string arch = c["architectures"][0];
  const bool gemma = arch == "Gemma2ForCausalLM" || arch == "Gemma3ForCausalLM";
  const auto opt = [&](const char* key) { return c.contains(key) && !c[key].is_null() ? double(c[key]) : 0.0; };
  const int64_t window = int64_t(opt("sliding_window"));
  const double attn_cap = opt("attn_logit_softcapping"), final_cap = opt("final_logit_softcapping");
  const bool granite = arch == "GraniteForCausalLM", olmo2 = arch == "Olmo2ForCausalLM";
  const bool olmoe = arch == "OlmoeForCausalLM", mixtral = arch == "MixtralForCausalLM";
  const int64_t experts = c.contains("num_local_experts") ? int64_t(c["num_local_experts"])
                          : c.contains("num_experts")     ? int64_t(c["num_experts"])
                          : c.contains("n_routed_experts") ? int64_t(c["n_routed_experts"])
                                                          : 0;
  // Whether block l has experts: modeling_qwen2_moe / _qwen3_moe (mlp_only_layers, decoder_sparse_step),
  // modeling_deepseek (first_k_dense_replace, moe_layer_freq); the others: every block.
  const auto sparse_block = [&](int64_t l) {
    if (c.contains("first_k_dense_replace"))
      return l >= int64_t(c["first_k_dense_replace"]) && l % int64_t(c["moe_layer_freq"]) == 0;
    if (c.contains("mlp_only_layers"))
      for (const auto& x : c["mlp_only_layers"])
        if (int64_t(x) == l) return false;
    return !c.contains("decoder_sparse_step") || (l + 1) % int64_t(c["decoder_sparse_step"]) == 0;
  };
  const double scaling = gemma     ? 1.0 / std::sqrt(opt("query_pre_attn_scalar"))
                         : granite ? opt("attention_multiplier")
                                   : 1.0 / std::sqrt(double(hd));
  const double residual = granite ? opt("residual_multiplier") : 1.0;
  // Gemma 2: even layers slide; Gemma 3: all but every sliding_window_pattern-th (local RoPE base there).
  const bool oss = arch == "GptOssForCausalLM";
  const auto sliding = [&](int64_t l) {
    if (c.contains("layer_types")) return c["layer_types"][size_t(l)] == "sliding_attention";
    if (arch == "Gemma2ForCausalLM" || oss) return l % 2 == 0;
    if (arch == "Gemma3ForCausalLM") return (l + 1) % int64_t(opt("sliding_window_pattern")) != 0;
    return window > 0;
  };
  // Phi-3: RoPE on the first rot dimensions (partial_rotary_factor), LongRoPE's
  // factors (long beyond the original context) and attention factor.
  const int64_t rot = int64_t(double(hd) * (c.contains("partial_rotary_factor") ? double(c["partial_rotary_factor"]) : 1.0));
  const bool longrope = c.contains("rope_scaling") && c["rope_scaling"].contains("long_factor");
  double mscale = 1.0;
  const bool yarn = c.contains("rope_scaling") && c["rope_scaling"].value("rope_type", "") == "yarn";
  if (yarn) mscale = 0.1 * std::log(double(c["rope_scaling"]["factor"])) + 1;
  if (longrope) {
    const double orig = c["original_max_position_embeddings"], scale = double(c["max_position_embeddings"]) / orig;
    mscale = scale <= 1 ? 1.0 : std::sqrt(1 + std::log(scale) / std::log(orig));
  }
  // inv_freq with HF's llama3 rule (modeling_rope_utils._compute_llama3_parameters).
  std::vector<double> inv(static_cast<size_t>(rot / 2)), inv_local(inv.size());
  for (int64_t i = 0; i < rot / 2; i++) {
    if (c.contains("rope_local_base_freq")) inv_local[size_t(i)] = 1.0 / std::pow(double(c["rope_local_base_freq"]), double(2 * i) / double(hd));
    double f = 1.0 / std::pow(theta, double(2 * i) / double(rot));
    if (longrope) {
      const bool is_long = int64_t(tokens.size()) > int64_t(c["original_max_position_embeddings"]);
      f /= double(c["rope_scaling"][is_long ? "long_factor" : "short_factor"][size_t(i)]);
    } else if (yarn) {  // modeling_rope_utils._compute_yarn_parameters, truncate false
      const auto& rs = c["rope_scaling"];
      const auto corr = [&](double beta) {
        return double(rot) * std::log(double(rs["original_max_position_embeddings"]) / (beta * 2 * M_PI)) /
               (2 * std::log(theta));
      };
      const double lo = std::max(0.0, corr(double(rs["beta_fast"]))), hi = std::min(double(rot - 1), corr(double(rs["beta_slow"])));
      const double extrapolate = 1 - std::clamp((double(i) - lo) / (hi - lo), 0.0, 1.0);
      f = f / double(rs["factor"]) * (1 - extrapolate) + f * extrapolate;
    } else if (c.contains("rope_scaling")) {
      auto rs = c["rope_scaling"];
      double factor = rs["factor"], lo = rs["low_freq_factor"], hi = rs["high_freq_factor"];
      double old = rs["original_max_position_embeddings"];
      double wl = 2 * M_PI / f;
      if (wl > old / lo) f = f / factor;
      else if (wl >= old / hi) {
        double sm = (old / wl - lo) / (hi - lo);
        f = (1 - sm) * f / factor + sm * f;
      }
    }
    inv[size_t(i)] = f;
  }
  auto linear = [&](const std::string& name, const std::vector<double>& x, int64_t out) {
    const auto& w = W.at(name);
    std::vector<double> y(static_cast<size_t>(out));
    for (int64_t o = 0; o < out; o++)
      for (size_t i = 0; i < x.size(); i++) y[size_t(o)] += w[size_t(o) * x.size() + i] * x[i];
    auto b = W.find(name.substr(0, name.size() - 6) + "bias");
    if (b != W.end())
      for (int64_t o = 0; o < out; o++) y[size_t(o)] += b->second[size_t(o)];
    return y;
  };
  auto norm = [&](const std::vector<double>& x, const std::string& w) {
    double ss = 0;
    for (double v : x) ss += v * v;
    double r = 1.0 / std::sqrt(ss / double(x.size()) + eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); i++) y[i] = x[i] * r * (gemma ? 1.0 + W.at(w)[i] : W.at(w)[i]);
    return y;
  };
  auto rope = [&](std::vector<double>& v, int64_t heads, int64_t pos, const std::vector<double>& inv) {  // rotate_half
    for (int64_t h = 0; h < heads; h++)
      for (int64_t i = 0; i < rot / 2; i++) {
        double a = v[size_t(h * hd + i)], b = v[size_t(h * hd + i + rot / 2)];
        double cs = std::cos(pos * inv[size_t(i)]) * mscale, sn = std::sin(pos * inv[size_t(i)]) * mscale;
        v[size_t(h * hd + i)] = a * cs - b * sn;
        v[size_t(h * hd + i + rot / 2)] = b * cs + a * sn;
      }
  };
  std::vector<std::vector<std::vector<double>>> Kc(static_cast<size_t>(L)), Vc(static_cast<size_t>(L));
  std::vector<std::vector<double>> out;
  const std::string head = W.count("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight";
  for (size_t p = 0; p < tokens.size(); p++) {
    std::vector<double> x(W["model.embed_tokens.weight"].begin() + tokens[p] * D,
                          W["model.embed_tokens.weight"].begin() + (tokens[p] + 1) * D);
    if (gemma || granite)
      for (double& e : x) e *= gemma ? std::sqrt(double(D)) : opt("embedding_multiplier");
    for (int64_t l = 0; l < L; l++) {
      std::string pre = "model.layers." + std::to_string(l) + ".";
      auto h = olmo2 ? x : norm(x, pre + "input_layernorm.weight");  // OLMo 2 normalizes outputs only
      std::vector<double> q, k, v;
      if (W.count(pre + "self_attn.qkv_proj.weight")) {  // Phi-3: q, k, v rows of one projection
        const auto qkv = linear(pre + "self_attn.qkv_proj.weight", h, (H + 2 * KVH) * hd);
        q.assign(qkv.begin(), qkv.begin() + H * hd);
        k.assign(qkv.begin() + H * hd, qkv.begin() + (H + KVH) * hd);
        v.assign(qkv.begin() + (H + KVH) * hd, qkv.end());
      } else {
        q = linear(pre + "self_attn.q_proj.weight", h, H * hd);
        k = linear(pre + "self_attn.k_proj.weight", h, KVH * hd);
        v = linear(pre + "self_attn.v_proj.weight", h, KVH * hd);
      }
      if (olmo2 || olmoe) {  // RMSNorm over all of q and of k
        q = norm(q, pre + "self_attn.q_norm.weight");
        k = norm(k, pre + "self_attn.k_norm.weight");
      } else if (W.count(pre + "self_attn.q_norm.weight")) {  // Qwen3, Gemma 3: RMSNorm over each head, before RoPE
        auto per_head = [&](std::vector<double>& t, int64_t heads, const std::string& w) {
          for (int64_t hh = 0; hh < heads; hh++) {
            const auto y = norm(std::vector<double>(t.begin() + hh * hd, t.begin() + (hh + 1) * hd), w);
            std::copy(y.begin(), y.end(), t.begin() + hh * hd);
          }
        };
        per_head(q, H, pre + "self_attn.q_norm.weight");
        per_head(k, KVH, pre + "self_attn.k_norm.weight");
      }
      const bool local = sliding(l) && window > 0;
      const auto& freqs = local && arch == "Gemma3ForCausalLM" ? inv_local : inv;
      if (!c.contains("no_rope_layers") || c["no_rope_layers"][size_t(l)] == 1) {  // SmolLM3's use_rope
        rope(q, H, int64_t(p), freqs);
        rope(k, KVH, int64_t(p), freqs);
      }
      const size_t first = local && int64_t(p) >= window ? p - size_t(window) + 1 : 0;
      Kc[size_t(l)].push_back(k);
      Vc[size_t(l)].push_back(v);
      std::vector<double> att(static_cast<size_t>(H * hd));
      for (int64_t hh = 0; hh < H; hh++) {
        int64_t g = hh / (H / KVH);
        std::vector<double> s(p + 1);
        double mx = -1e300;
        for (size_t j = first; j <= p; j++) {
          double d = 0;
          for (int64_t i = 0; i < hd; i++) d += q[size_t(hh * hd + i)] * Kc[size_t(l)][j][size_t(g * hd + i)];
          s[j] = d * scaling;
          if (attn_cap > 0) s[j] = attn_cap * std::tanh(s[j] / attn_cap);
          mx = std::max(mx, s[j]);
        }
        // gpt-oss: the head's sink joins the softmax as one more logit whose probability is dropped.
        const std::string sinks = pre + "self_attn.sinks";
        if (W.count(sinks)) mx = std::max(mx, W[sinks][size_t(hh)]);
        double sum = W.count(sinks) ? std::exp(W[sinks][size_t(hh)] - mx) : 0.0;
        for (size_t j = first; j <= p; j++) sum += s[j] = std::exp(s[j] - mx);
        for (size_t j = first; j <= p; j++)
          for (int64_t i = 0; i < hd; i++) att[size_t(hh * hd + i)] += s[j] / sum * Vc[size_t(l)][j][size_t(g * hd + i)];
      }
      auto o = linear(pre + "self_attn.o_proj.weight", att, D);
      if (gemma || olmo2) o = norm(o, pre + "post_attention_layernorm.weight");
      for (int64_t i = 0; i < D; i++) x[size_t(i)] += residual * o[size_t(i)];
      h = olmo2 ? x : norm(x, pre + (gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"));
      if (oss) {  // modeling_gpt_oss: top-k router logits softmaxed among themselves, clamped SwiGLU on fused experts
        const std::string r = pre + "mlp.";
        const auto z = linear(r + "router.weight", h, experts);
        std::vector<int64_t> order(static_cast<size_t>(experts));
        for (int64_t e = 0; e < experts; e++) order[size_t(e)] = e;
        std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return z[size_t(a)] > z[size_t(b)]; });
        const int64_t K = c["num_experts_per_tok"];
        double total = 0;
        for (int64_t k = 0; k < K; k++) total += std::exp(z[size_t(order[size_t(k)])] - z[size_t(order[0])]);
        // W[e][o][i] of an expert's projection with `outs` outputs of `ins` inputs: f32 stored as x · W
        // ([E, ins, outs]), or MXFP4 (rows are outputs: FP4 value · 2^(scale − 127), two values a byte, low first).
        const auto weight = [&](const std::string& name, int64_t e, int64_t o, int64_t i, int64_t ins, int64_t outs) {
          if (!W.count(name + "_blocks")) return W.at(name)[size_t((e * ins + i) * outs + o)];
          static const double kFp4[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6};
          const int64_t blk = (e * outs + o) * (ins / 32) + i / 32;
          const int byte = int(W.at(name + "_blocks")[size_t(blk * 16 + (i % 32) / 2)]);
          return kFp4[(byte >> (4 * (i % 2))) & 15] * std::ldexp(1.0, int(W.at(name + "_scales")[size_t(blk)]) - 127);
        };
        const int64_t FE = F;
        std::vector<double> y(static_cast<size_t>(D));
        for (int64_t k = 0; k < K; k++) {
          const int64_t e = order[size_t(k)];
          const double w = std::exp(z[size_t(e)] - z[size_t(order[0])]) / total;
          std::vector<double> act(static_cast<size_t>(FE));
          for (int64_t f = 0; f < FE; f++) {
            double g = W.at(r + "experts.gate_up_proj_bias")[size_t(e * 2 * FE + 2 * f)];
            double u = W.at(r + "experts.gate_up_proj_bias")[size_t(e * 2 * FE + 2 * f + 1)];
            for (int64_t i = 0; i < D; i++) {
              g += h[size_t(i)] * weight(r + "experts.gate_up_proj", e, 2 * f, i, D, 2 * FE);
              u += h[size_t(i)] * weight(r + "experts.gate_up_proj", e, 2 * f + 1, i, D, 2 * FE);
            }
            g = std::min(g, 7.0), u = std::clamp(u, -7.0, 7.0);
            act[size_t(f)] = (u + 1) * g / (1 + std::exp(-1.702 * g));
          }
          for (int64_t o = 0; o < D; o++) {
            double d = W.at(r + "experts.down_proj_bias")[size_t(e * D + o)];
            for (int64_t f = 0; f < FE; f++) d += act[size_t(f)] * weight(r + "experts.down_proj", e, o, f, FE, D);
            y[size_t(o)] += w * d;
          }
        }
        for (int64_t i = 0; i < D; i++) x[size_t(i)] += y[size_t(i)];
        continue;
      }
      if (experts > 0 && sparse_block(l)) {  // modeling_{mixtral,qwen2_moe,qwen3_moe,olmoe,deepseek}: softmax, top-k, (renormalized,) weighted sum
        const std::string r = pre + (mixtral ? "block_sparse_moe." : "mlp.");
        auto z = linear(r + "gate.weight", h, experts);
        const double mx = *std::max_element(z.begin(), z.end());
        double sum = 0;
        for (double& e : z) sum += e = std::exp(e - mx);
        for (double& e : z) e /= sum;
        std::vector<int64_t> order(static_cast<size_t>(experts));
        for (int64_t e = 0; e < experts; e++) order[size_t(e)] = e;
        std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return z[size_t(a)] > z[size_t(b)]; });
        const int64_t K = c["num_experts_per_tok"];
        double top = 0;
        for (int64_t k = 0; k < K; k++) top += z[size_t(order[size_t(k)])];
        const bool renorm = mixtral || (c.contains("norm_topk_prob") && c["norm_topk_prob"] == true);
        const auto swiglu = [&](const std::string& g, const std::string& u, const std::string& d, int64_t FF) {
          auto a = linear(g, h, FF);
          const auto b = linear(u, h, FF);
          for (int64_t i = 0; i < FF; i++) a[size_t(i)] = a[size_t(i)] / (1 + std::exp(-a[size_t(i)])) * b[size_t(i)];
          return linear(d, a, D);
        };
        const int64_t FE = c.contains("moe_intermediate_size") ? int64_t(c["moe_intermediate_size"]) : F;
        std::vector<double> y(static_cast<size_t>(D));
        for (int64_t k = 0; k < K; k++) {
          const int64_t e = order[size_t(k)];
          const double w = z[size_t(e)] / (renorm ? top : 1.0);
          const std::string x = r + "experts." + std::to_string(e) + ".";
          const auto o = mixtral ? swiglu(x + "w1.weight", x + "w3.weight", x + "w2.weight", FE)
                                 : swiglu(x + "gate_proj.weight", x + "up_proj.weight", x + "down_proj.weight", FE);
          for (int64_t i = 0; i < D; i++) y[size_t(i)] += w * o[size_t(i)];
        }
        if (W.count(pre + "mlp.shared_experts.gate_proj.weight")) {  // DeepSeek: shared experts, ungated
          const std::string sx = pre + "mlp.shared_experts.";
          const auto o = swiglu(sx + "gate_proj.weight", sx + "up_proj.weight", sx + "down_proj.weight",
                                int64_t(c["n_shared_experts"]) * FE);
          for (int64_t i = 0; i < D; i++) y[size_t(i)] += o[size_t(i)];
        }
        if (W.count(pre + "mlp.shared_expert_gate.weight")) {  // Qwen2-MoE: sigmoid-gated shared expert
          const std::string sx = pre + "mlp.shared_expert.";
          const auto o = swiglu(sx + "gate_proj.weight", sx + "up_proj.weight", sx + "down_proj.weight",
                                c["shared_expert_intermediate_size"]);
          const double g = 1 / (1 + std::exp(-linear(pre + "mlp.shared_expert_gate.weight", h, 1)[0]));
          for (int64_t i = 0; i < D; i++) y[size_t(i)] += g * o[size_t(i)];
        }
        for (int64_t i = 0; i < D; i++) x[size_t(i)] += y[size_t(i)];
        continue;
      }
      std::vector<double> gt, up;
      if (W.count(pre + "mlp.gate_up_proj.weight")) {  // Phi-3: gate rows, then up rows
        const auto gu = linear(pre + "mlp.gate_up_proj.weight", h, 2 * F);
        gt.assign(gu.begin(), gu.begin() + F);
        up.assign(gu.begin() + F, gu.end());
      } else {
        gt = linear(pre + "mlp.gate_proj.weight", h, F);
        up = linear(pre + "mlp.up_proj.weight", h, F);
      }
      for (int64_t i = 0; i < F; i++) {
        const double a = gt[size_t(i)];
        // PyTorch's gelu(approximate="tanh") for Gemma, SiLU otherwise.
        gt[size_t(i)] = (gemma ? 0.5 * a * (1 + std::tanh(std::sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)))
                               : a / (1 + std::exp(-a))) * up[size_t(i)];
      }
      auto dn = linear(pre + "mlp.down_proj.weight", gt, D);
      if (gemma || olmo2) dn = norm(dn, pre + "post_feedforward_layernorm.weight");
      for (int64_t i = 0; i < D; i++) x[size_t(i)] += residual * dn[size_t(i)];
    }
    auto logits = linear(head, norm(x, "model.norm.weight"), V);
    if (granite)
      for (double& z : logits) z /= opt("logits_scaling");
    if (final_cap > 0)
      for (double& z : logits) z = final_cap * std::tanh(z / final_cap);
    out.push_back(logits);
  }
  return out;
}

std::string small_moe(const std::string& dir, const std::string& shape) {
  ModelConfig c = find_model_shape(shape);
  c.n_vocab = 512, c.dim = 256, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = c.rope_dim = 64, c.n_layers = 2;
  c.n_experts = 16, c.n_experts_used = 4, c.expert_ffn = 128;
  if (c.shared_ffn > 0) c.shared_ffn = 256;
  return write_random_gguf(c, dir + "/" + shape + ".gguf", 5);
}

std::string write_random_gguf(const ModelConfig& c, const std::string& path, uint64_t seed) {
  auto random = make_random_model(c, path);
  ExportOptions eo;
  eo.values = [seed](const Tensor& t) { return random_tensor_values(t, seed); };
  write_gguf_model(*random, path, eo);
  return path;
}

}  // namespace lmpress::test
