// GPTQ checkpoints (AutoGPTQ / GPTQModel layout, as lmpress and llm-compressor
// write them for vLLM): config.json's quantization_config names the format,
// and each quantized linear is stored as qweight / qzeros / scales / g_idx.
// lmpress reads each linear as ggml Q4_0 or Q8_0 blocks holding exactly its
// values where the groups allow (then it runs on the int8 kernels), else
// dequantized to an F32 weight at load.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/module_match.h"
#include "core/tensor.h"
#include "quant/int_checkpoint.h"
#include "quant/int_group.h"

namespace lmpress {

// The int-N spec of a quantization_config object with quant_method "gptq";
// fails with a clear message for other methods or unsupported settings.
IntGroupSpec gptq_spec_from_config(const nlohmann::json& qc, const std::string& path);

// The layout and int-N spec of any quantization_config lmpress reads: gptq,
// awq (version gemm) or compressed-tensors (pack-quantized, one config group
// of int weights); fails naming the field for anything else.
// Per-module formats: GPTQ's `dynamic` rules, AWQ's modules_to_not_convert,
// compressed-tensors' ignore list and several config_groups.
struct IntCheckpointConfig {
  IntCheckpoint format = IntCheckpoint::Gptq;
  IntGroupSpec spec;  // the format of the linears no rule names
  // compressed-tensors "int-quantized": each linear is PREFIX.weight (I8) and
  // PREFIX.weight_scale (per channel); with act_int8 its inputs are int8 per
  // token, dynamic (W8A8).
  bool int_quantized = false, act_int8 = false;
  struct Rule {
    enum class Kind { Exact, Regex, Substring } kind = Kind::Exact;
    std::string text;
    std::shared_ptr<PyRegex> regex;
    std::optional<IntGroupSpec> spec;  // nullopt: the module is stored unquantized
    bool matches(const std::string& module) const;
  };
  std::vector<Rule> rules;  // the first that matches a module decides
  bool default_quantized = true;  // false: a compressed-tensors config without a Linear target
  // The format of the linear PREFIX (its HF module name), nullopt when it is stored unquantized.
  std::optional<IntGroupSpec> spec_for(const std::string& module) const;
  bool per_module() const;  // a rule other than leaving lm_head out
};
// order: quantization_config as written (nlohmann::json sorts keys; the rules of `dynamic` and the
// config groups apply in file order).
IntCheckpointConfig int_checkpoint_from_config(const nlohmann::ordered_json& order, const std::string& path);

// Replaces every linear's set of packed tensors in `tensors` (HF names; GPTQ:
// PREFIX.qweight/.qzeros/.scales/.g_idx, AWQ: .qweight/.qzeros/.scales,
// compressed-tensors: .weight_packed/.weight_scale/.weight_zero_point/
// .weight_shape/.weight_g_idx) by a tensor PREFIX.weight (Q4_0 / Q8_0 when
// exact, else F32); other tensors pass through.
std::vector<Tensor> dequantize_int_checkpoint_tensors(std::vector<Tensor> tensors, const IntCheckpointConfig& c,
                                                      const std::string& path);

}  // namespace lmpress
