// Importance matrices in llama.cpp's imatrix GGUF format: for each weight
// matrix, the sum over calibration tokens of the squared input activation of
// each input column ("<name>.in_sum2", F32 [1, cols]) and the token count
// ("<name>.counts", F32 [1, 1]). The importance of column j is in_sum2/count.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lmpress {

// The tensor of llama.cpp's fused layouts (phi3) that reads the same inputs as
// `name`: blk.N.attn_qkv for attn_q/k/v, blk.N.ffn_up for ffn_gate; "" for
// others. Members of one fused tensor share their input columns, so one
// importance vector serves them all (both directions: imatrix files of
// either program).
std::string fused_input_alias(const std::string& name);

struct ImatrixEntry {
  std::vector<double> sum2;  // per input column
  int64_t count = 0;         // tokens seen
};

struct Imatrix {
  std::map<std::string, ImatrixEntry> entries;  // by weight name
  std::vector<std::string> datasets;
  uint32_t chunk_count = 0, chunk_size = 0;

  // Mean squared activation per column for a weight; empty if absent.
  std::vector<float> importance(const std::string& weight_name) const;
  // Adds x[n, cols]'s squared values to the entry of each name.
  void accumulate(const std::vector<std::string>& names, const float* x, int64_t n, int64_t cols);
};

// The imatrix's importance for a weight when `im` has it, else `fallback`.
std::vector<float> importance_or(const Imatrix* im, const std::string& weight_name, std::vector<float> fallback);

Imatrix read_imatrix(const std::string& path);
void write_imatrix(const Imatrix& im, const std::string& path);

}  // namespace lmpress
