// `lmpress convert`: a model written in another format or weight type.
#pragma once
#include <string>

#include "model/model.h"

namespace lmpress {

struct ConvertRequest {
  std::string dtype;   // f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1; empty: keep
  std::string format;  // gguf, hf; empty: gguf when the output ends in .gguf, else hf
  std::string name;    // general.name
  std::string recipe;  // recorded in the output (ExportOptions::recipe)
  int64_t split_experts = 0;       // > 0: split_into_experts(m, split_experts, split_experts_used) first
  int64_t split_experts_used = 0;  // with split_experts: experts used per token (0: all)
  int64_t kv_heads = 0;       // > 0: pool_kv_heads(m, kv_heads) first
};

// Grouped-query attention from a model with more key/value heads (Ainslie et
// al.'s GQA uptraining, step one): the K and V projections' heads (rows and
// biases) averaged in `kv_heads` groups of consecutive heads, each query head
// then reading its group's pooled head. The model changes function (distil it
// back: `finetune --teacher`); its KV cache shrinks by the factor.
void pool_kv_heads(Model& m, int64_t kv_heads);

// Re-expresses a dense Llama-family model as a mixture of `experts` experts
// that computes the same function: each block's feed-forward neurons cut into
// `experts` equal slices (expert e: gate/up rows and down columns of slice e,
// down times `experts`), a zero router, every expert used per token (each
// weight then 1 / experts). A trained model in MoE form, for the MoE code
// paths (loading, kernels, calibration, expert pruning), not a sparse model.
// With 0 < used < experts: each token takes `used` experts (weights
// renormalized, so the chosen slices count experts / used times: the dense
// output in expectation), the router's row e starting as slice e's mean gate
// row — a sparse mixture (LLaMA-MoE's neuron split) that changes the
// function and is then trained (`finetune`).
void split_into_experts(Model& m, int64_t experts, int64_t used = 0);

// Writes m to out_path; returns the format written ("gguf" or "hf").
std::string convert_model(const Model& m, const std::string& out_path, const ConvertRequest& r);

}  // namespace lmpress
