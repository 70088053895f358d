// Resumable training: a directory holding the trained values, AdamW's moments
// and the step reached (state.json), written atomically (a crash or Ctrl-C
// while saving leaves the previous checkpoint whole), and read back only into
// the same setup (model layout, adapters, QAT type, data and batch shape).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lmpress::train {

struct Checkpoint {
  int64_t step = 0;
  std::vector<float> w, m, v;  // parameters, AdamW's first and second moments
};

// `setup`: what must match on resume (each field compared by name).
void save_checkpoint(const std::string& dir, const nlohmann::json& setup, const Checkpoint& c);
// Fails naming dir and the first field of `setup` that differs, a parameter
// count other than `parameters`, or a file whose size is not that count's.
Checkpoint load_checkpoint(const std::string& dir, const nlohmann::json& setup, size_t parameters);

}  // namespace lmpress::train
