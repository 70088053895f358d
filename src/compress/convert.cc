#include "compress/convert.h"

#include <algorithm>

#include "compress/mix.h"
#include "core/error.h"
#include "kernels/to_f32.h"
#include "model/export.h"

namespace lmpress {

void pool_kv_heads(Model& m, int64_t kv_heads) {
  ModelConfig& c = m.cfg;
  if (!c.uniform()) fail("{}: --kv-heads: its layers differ in head counts", m.path);
  if (kv_heads < 1 || kv_heads > c.n_kv_heads || c.n_kv_heads % kv_heads)
    fail("--kv-heads {}: a count that divides the model's {} key/value heads (it pools them; 1 = MQA)", kv_heads,
         c.n_kv_heads);
  if (c.qk_norm_full) fail("{}: --kv-heads: its k norm spans all key heads (OLMo 2)", m.path);
  const int64_t group = c.n_kv_heads / kv_heads, hd = c.head_dim;
  for (Tensor& t : m.tensors) {
    const int64_t l = layer_of(t.name);
    const std::string b = "blk." + std::to_string(l) + ".";
    const bool weight = t.name == b + "attn_k.weight" || t.name == b + "attn_v.weight";
    const bool bias = t.name == b + "attn_k.bias" || t.name == b + "attn_v.bias";
    if (l < 0 || !(weight || bias)) continue;
    const std::vector<float> w = to_f32(t);
    const int64_t cols = weight ? t.cols() : 1;
    std::vector<float> pooled(size_t(kv_heads * hd * cols), 0.0f);
    for (int64_t g = 0; g < kv_heads; g++)
      for (int64_t h = g * group; h < (g + 1) * group; h++)
        for (int64_t i = 0; i < hd * cols; i++) pooled[size_t(g * hd * cols + i)] += w[size_t(h * hd * cols + i)] / float(group);
    t = make_f32_tensor(t.name, weight ? std::vector<int64_t>{kv_heads * hd, cols} : std::vector<int64_t>{kv_heads * hd},
                        std::move(pooled));
  }
  c.n_kv_heads = kv_heads;
  m.bind();
}

void split_into_experts(Model& m, int64_t experts, int64_t used) {
  ModelConfig& c = m.cfg;
  if (c.moe()) fail("{}: --split-experts: the model is a mixture of experts already", m.path);
  if (c.arch != "llama" && c.arch != "qwen3")
    fail("{}: --split-experts makes Mixtral-style (llama) or Qwen3-MoE models, from llama or qwen3; not {}", m.path,
         c.arch);
  if (!c.uniform()) fail("{}: --split-experts: its layers differ in feed-forward size", m.path);
  if (c.down_rotation)
    fail("{}: --split-experts: ffn_down's input is rotated online (R4), which mixes every expert's channels", m.path);
  if (experts < 2 || experts > 64 || c.ffn_dim % experts)
    fail("--split-experts {}: a count in [2, 64] dividing the feed-forward size {}", experts, c.ffn_dim);
  if (used < 0 || used > experts) fail("--experts-used {}: at most the {} experts", used, experts);
  if (used == 0) used = experts;
  const int64_t D = c.dim, F = c.ffn_dim, S = F / experts;
  // Per block, the router [experts, D]: zero, or each slice's mean gate row.
  std::vector<std::vector<float>> routers(size_t(c.n_layers), std::vector<float>(size_t(experts * D), 0.0f));
  for (int64_t l = 0; used < experts && l < c.n_layers; l++) {
    const std::vector<float> g = to_f32(m.tensor(fmt::format("blk.{}.ffn_gate.weight", l)));
    for (int64_t e = 0; e < experts; e++)
      for (int64_t j = 0; j < S; j++)
        for (int64_t i = 0; i < D; i++) routers[size_t(l)][size_t(e * D + i)] += g[size_t((e * S + j) * D + i)] / float(S);
  }
  std::vector<Tensor> out;
  for (const Tensor& t : m.tensors) {
    const int64_t l = layer_of(t.name);
    const std::string b = "blk." + std::to_string(l) + ".";
    if (l < 0 || (t.name != b + "ffn_gate.weight" && t.name != b + "ffn_up.weight" && t.name != b + "ffn_down.weight")) {
      if (l >= 0 && t.name == b + "ffn_down.bias") fail("{}: --split-experts: {} has no place in a mixture", m.path, t.name);
      out.push_back(t);
      continue;
    }
    const std::vector<float> w = to_f32(t);
    const bool down = t.name == b + "ffn_down.weight";
    const std::string stack = b + (down ? "ffn_down_exps.weight" : t.name == b + "ffn_gate.weight" ? "ffn_gate_exps.weight" : "ffn_up_exps.weight");
    for (int64_t e = 0; e < experts; e++) {
      std::vector<float> part;
      if (down) {  // columns of slice e, times the expert count (each expert's weight is 1 / experts)
        part.resize(size_t(D * S));
        for (int64_t r = 0; r < D; r++)
          for (int64_t j = 0; j < S; j++) part[size_t(r * S + j)] = w[size_t(r * F + e * S + j)] * float(experts);
      } else {
        part.assign(w.begin() + e * S * D, w.begin() + (e + 1) * S * D);
      }
      out.push_back(make_f32_tensor(expert_tensor_name(stack, e), down ? std::vector<int64_t>{D, S} : std::vector<int64_t>{S, D},
                                    std::move(part)));
    }
    if (down) out.push_back(make_f32_tensor(b + "ffn_gate_inp.weight", {experts, D}, std::move(routers[size_t(l)])));
  }
  m.tensors = std::move(out);
  if (c.arch == "qwen3") {
    c.set_arch("qwen3moe");  // keeps q/k norms; renormalizes, as llama does
  }
  c.n_experts = experts;
  c.n_experts_used = used;
  c.expert_ffn = S;
  c.expert_norm = true;
  m.bind();
}

std::string convert_model(const Model& m, const std::string& out_path, const ConvertRequest& r) {
  ExportOptions eo;
  if (!r.dtype.empty()) {
    static const char* kTypes[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"};
    if (std::find(std::begin(kTypes), std::end(kTypes), r.dtype) == std::end(kTypes))
      fail("--dtype '{}': f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1", r.dtype);
    eo.dtype = dtype_from_name(r.dtype);
    if (const auto preset = preset_for_base(*eo.dtype)) eo.file_type = preset->llama_ftype;
  }
  eo.name = r.name;
  eo.recipe = r.recipe;
  std::string fmt = r.format;
  if (fmt.empty()) fmt = out_path.size() > 5 && out_path.compare(out_path.size() - 5, 5, ".gguf") == 0 ? "gguf" : "hf";
  if (fmt == "gguf")
    write_gguf_model(m, out_path, eo);
  else if (fmt == "hf")
    write_hf_model(m, out_path, eo);
  else
    fail("--format '{}': gguf or hf", fmt);
  return fmt;
}

}  // namespace lmpress
