// File-type presets and per-tensor type selection, as llama.cpp's
// llama_tensor_get_type does it (Q4_K_M keeps attn_v and some ffn_down in
// Q6_K, the output matrix in Q6_K, ...), plus user overrides.
#pragma once
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "model/model.h"

namespace lmpress {

enum class Preset {
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q2_K_S, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL,
  IQ4_XS, TQ1_0, TQ2_0, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M, IQ3_XXS, IQ3_XS, IQ3_S, IQ3_M, MXFP4_MOE, LMP2, F16, BF16,
  F32
};

struct PresetInfo {
  Preset preset;
  const char* name;     // lower case, as on the command line
  DType base;           // the type most tensors get
  uint32_t llama_ftype;  // general.file_type (llama_ftype)
};

// Accepts llama-quantize's names in any case ("Q4_K_M", "q4_k_m"); nullopt if unknown.
std::optional<PresetInfo> find_preset(const std::string& name);
std::string preset_names();
// The preset named for a base type (the _M mix for k-quants), to record as a
// file type when tensors were typed one by one; nullopt for unknown types.
std::optional<PresetInfo> preset_for_base(DType base);

// --tensor-type PATTERN=TYPE: a regex searched in the tensor name.
struct TensorTypeOverride {
  std::string spec;  // as given, for errors
  std::regex pattern;
  DType type;
};

// Expert-aware mixed precision (--expert-type hot:F=TYPE, cold:F=TYPE): in
// each block with experts, the share F of its experts that saw the most (hot)
// or the fewest (cold) routed tokens take TYPE for gate, up and down.
struct ExpertTypeRule {
  bool hot = true;
  double fraction = 0;
  DType type = DType::F32;
  std::string spec;  // as written, for errors
};
// Parses "hot:F=TYPE" / "cold:F=TYPE" (F in (0, 1]); fails naming spec.
ExpertTypeRule parse_expert_type_rule(const std::string& spec);

struct MixOptions {
  PresetInfo preset;
  bool pure = false;         // every quantizable tensor gets the base type
  bool has_imatrix = false;  // some presets change with an imatrix, as in llama.cpp
  std::vector<TensorTypeOverride> overrides;  // first match wins (--tensor-type)
  std::optional<DType> output_type, token_embd_type;
  // First matching rule wins, over the type the stack would take otherwise (--tensor-type's included); a layer's
  // experts may then differ in type (an lmpress-only file: llama.cpp stacks them). expert_tokens: each expert
  // weight's routed tokens (the imatrix's counts).
  std::vector<ExpertTypeRule> expert_types;
  std::map<std::string, int64_t> expert_tokens;
};

// Whether llama-quantize refuses to write tensor `name` as type t without an
// imatrix (tensor_requires_imatrix): the IQ1/IQ2 types and IQ3_XXS (except for
// the token embedding and the output matrix), and Q2_K in a Q2_K_S file.
bool requires_imatrix(const std::string& name, DType t, const MixOptions& o);

// --tensor-type's "PATTERN=TYPE" split at the last '=': the pattern compiled (a
// regex searched in the tensor name) and TYPE as written; fails naming spec.
struct PatternAndType {
  std::regex pattern;
  std::string type;
};
PatternAndType parse_pattern_and_type(const std::string& spec);

// Parses "PATTERN=TYPE" (a regex searched in the tensor name; TYPE like q6_k).
TensorTypeOverride parse_tensor_type_override(const std::string& spec);

// True for the tensors llama.cpp quantizes: 2-D weights except norms.
bool is_quantizable(const Tensor& t);

// The storage type of every tensor of m (canonical names). Fails naming an
// override whose pattern matches no quantizable tensor (a typo would
// otherwise quantize everything with the preset, silently).
std::map<std::string, DType> plan_tensor_types(const Model& m, const MixOptions& o);

}  // namespace lmpress
