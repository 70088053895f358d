// Structured pruning: the model becomes physically smaller. From one
// calibration pass over the dense model it removes
//  - attention heads as whole GQA groups (a KV head with the query heads that
//    share it): q/k/v rows and attn_output columns;
//  - MLP intermediate channels: gate/up rows and ffn_down columns;
//  - whole transformer blocks.
// Channels are scored by the output energy they carry, ‖W_out[:, j]‖²·E[x_j²]
// (x: the input of attn_output / ffn_down; the structured form of Wanda's
// |W|·‖X‖). With bias compensation (FLAP) the score is ‖W_out[:, j]‖²·Var[x_j]
// and each removed channel's mean output W_out[:, j]·E[x_j] moves into an
// attn_output / ffn_down bias, which llama.cpp loads as an optional tensor.
// Blocks are scored by the angular distance between their input and output
// hidden states, arccos(cos)/π averaged over tokens (Gromov et al. 2024;
// ShortGPT's block influence): the blocks that change the residual stream
// least go.
// Uniform allocation removes the same number of groups and channels from every
// layer (the file keeps one head count and feed-forward size). Global
// allocation ranks them across layers by their score relative to the energy
// of the residual stream they are added to, so layers end up with different
// sizes (GGUF arrays under llama.cpp's "deci" architecture).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compress/calibration.h"
#include "model/model.h"

namespace lmpress {

struct StructuredOptions {
  double heads = 0;    // fraction of KV groups to remove (per layer, or overall when global)
  double ffn = 0;      // fraction of intermediate channels to remove (likewise)
  int64_t layers = 0;  // blocks to remove
  bool global = false;  // rank groups and channels across layers
  bool bias = false;    // FLAP bias compensation
};
// "heads=0.25,ffn=0.3,layers=2[,global][,bias]" (any subset, any order).
StructuredOptions parse_structured(const std::string& spec);

struct StructuredReport {
  int64_t params_before = 0, params_after = 0;
  int64_t kv_heads_before = 0, kv_heads_after = 0, heads_before = 0, heads_after = 0;
  int64_t ffn_before = 0, ffn_after = 0, layers_before = 0, layers_after = 0;
  int64_t expert_ffn_before = 0, expert_ffn_after = 0;  // a mixture's routed experts' size (0: not pruned)  // *_after: the largest layer's
  std::vector<int64_t> layer_heads, layer_kv_heads, layer_ffn;                 // per remaining layer
  std::vector<double> block_distance;   // angular distance per original block
  std::vector<int64_t> removed_blocks;  // original indices
  int64_t calib_tokens = 0;
  MemoryReport memory;
};

// What the pruned weights keep of the input's. Given to structured_prune, it
// leaves each cut weight in m as an F32 tensor of the pruned shape without
// bytes, whose values it cuts out of the input's when asked (the writer's
// ExportOptions::values), so that the pruned model is never held in f32.
class PrunedViews {
 public:
  // Replaces weight t by the cut keeping `rows` / `cols` (indices into t's; empty: all) of it.
  void cut(Tensor& t, const std::vector<int64_t>& rows, const std::vector<int64_t>& cols);
  std::vector<float> values(const Tensor& t) const;

 private:
  struct Cut {
    Tensor source;
    std::vector<int64_t> rows, cols;  // kept, of the source's; empty: all
  };
  std::map<const void*, Cut> cuts_;  // by the cut tensor's owner
};

// Prunes m in place (config updated; tensors replaced by smaller f32 tensors,
// or, with views, by cuts of the input's).
StructuredReport structured_prune(Model& m, const StructuredOptions& o, const CalibrationOptions& calib,
                                  PrunedViews* views = nullptr);

}  // namespace lmpress
