// GPTQ checkpoints (AutoGPTQ / GPTQModel layout, as lmpress and llm-compressor
// write them for vLLM): config.json's quantization_config names the format,
// and each quantized linear is stored as qweight / qzeros / scales / g_idx.
// lmpress reads each linear as ggml Q4_0 or Q8_0 blocks holding exactly its
// values where the groups allow (then it runs on the int8 kernels), else
// dequantized to an F32 weight at load.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tensor.h"
#include "quant/int_group.h"

namespace lmpress {

// The int-N spec of a quantization_config object with quant_method "gptq";
// fails with a clear message for other methods or unsupported settings.
IntGroupSpec gptq_spec_from_config(const nlohmann::json& qc, const std::string& path);

// Replaces every PREFIX.qweight/.qzeros/.scales/.g_idx set in `tensors` (HF
// names) by a tensor PREFIX.weight (Q4_0 / Q8_0 when exact, else F32); other
// tensors pass through.
std::vector<Tensor> dequantize_gptq_tensors(std::vector<Tensor> tensors, const IntGroupSpec& spec,
                                            const std::string& path);

}  // namespace lmpress
