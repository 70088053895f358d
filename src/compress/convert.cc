#include "compress/convert.h"

#include <algorithm>

#include "compress/mix.h"
#include "core/error.h"
#include "kernels/to_f32.h"
#include "model/export.h"

namespace lmpress {

void split_into_experts(Model& m, int64_t experts) {
  ModelConfig& c = m.cfg;
  if (c.moe()) fail("{}: --split-experts: the model is a mixture of experts already", m.path);
  if (c.arch != "llama" && c.arch != "qwen3")
    fail("{}: --split-experts makes Mixtral-style (llama) or Qwen3-MoE models, from llama or qwen3; not {}", m.path,
         c.arch);
  if (!c.uniform()) fail("{}: --split-experts: its layers differ in feed-forward size", m.path);
  if (experts < 2 || experts > 64 || c.ffn_dim % experts)
    fail("--split-experts {}: a count in [2, 64] dividing the feed-forward size {}", experts, c.ffn_dim);
  const int64_t D = c.dim, F = c.ffn_dim, S = F / experts;
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
    if (down) out.push_back(make_f32_tensor(b + "ffn_gate_inp.weight", {experts, D}, std::vector<float>(size_t(experts * D), 0.0f)));
  }
  m.tensors = std::move(out);
  if (c.arch == "qwen3") {
    c.set_arch("qwen3moe");  // keeps q/k norms; renormalizes, as llama does
  }
  c.n_experts = c.n_experts_used = experts;
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
