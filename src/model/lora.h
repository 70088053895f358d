// LoRA adapters as files: llama.cpp's GGUF adapter (general.type "adapter",
// adapter.type "lora", adapter.lora.alpha; <weight>.lora_a [rank, in] and
// <weight>.lora_b [out, rank], loaded by llama.cpp's --lora) and Hugging Face
// PEFT directories (adapter_config.json + adapter_model.safetensors); read
// back and merged into a model's weights (W + scale · alpha/rank · B·A).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/model.h"

namespace lmpress {

struct LoraAdapter {
  double alpha = 0;
  int64_t rank = 0;
  struct Pair {
    std::string weight;  // the canonical name of the weight it adapts (blk.0.attn_q.weight)
    int64_t in = 0, out = 0;
    std::vector<float> a, b;  // a [rank, in], b [out, rank]; b's rows in the model's RoPE pairing
  };
  std::vector<Pair> pairs;
  DType dtype = DType::F32;  // how write_lora_gguf stores A and B: F32 or F16
};

// Writes the adapter of base model m as llama.cpp's GGUF LoRA file (q/k rows
// of B in the pairing of the GGUF architecture) or as a PEFT directory (HF
// module names and pairing), atomically.
void write_lora_gguf(const Model& m, const LoraAdapter& a, const std::string& path);
void write_lora_peft(const Model& m, const LoraAdapter& a, const std::string& dir);
// Reads a GGUF adapter or a PEFT directory for base model m: fails naming the
// file and tensor when it is not a LoRA adapter, names a weight m lacks or
// has shapes m's weights do not.
LoraAdapter read_lora(const Model& m, const std::string& path);
// W += scale · alpha/rank · B·A for each pair, W replaced by an F32 tensor.
void merge_lora(Model& m, const LoraAdapter& a, double scale);
// --lora FILE[:SCALE] (scale 1 by default): read_lora then merge_lora.
void apply_lora(Model& m, const std::string& spec);

}  // namespace lmpress
