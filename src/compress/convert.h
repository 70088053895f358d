// `lmpress convert`: a model written in another format or weight type.
#pragma once
#include <string>

#include "model/model.h"

namespace lmpress {

struct ConvertRequest {
  std::string dtype;   // f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1; empty: keep
  std::string format;  // gguf, hf; empty: gguf when the output ends in .gguf, else hf
  std::string name;    // general.name
};

// Writes m to out_path; returns the format written ("gguf" or "hf").
std::string convert_model(const Model& m, const std::string& out_path, const ConvertRequest& r);

}  // namespace lmpress
