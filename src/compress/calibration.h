// The layer-by-layer calibration loop shared by the calibrated compressors
// (GPTQ, AWQ, imatrix, pruning): calibration text becomes N windows of L
// tokens; their hidden states are carried through the model one transformer
// block at a time, so only one block's activations exist at once, and a
// compressed block's output (not the original's) feeds the next block.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/forward.h"
#include "model/model.h"

namespace lmpress {

struct CalibrationOptions {
  std::string file;       // calibration text
  int64_t samples = 128;  // windows; -1: as many as the text holds
  int64_t ctx = 2048;     // tokens per window (capped by the model's context)
  // Consecutive windows from the start of the text (llama-imatrix's chunks)
  // instead of windows spread over the whole text.
  bool consecutive = false;
};

// Tokenizes the text and cuts `samples` windows of `ctx` tokens, spread evenly
// over it or consecutive (each starting with BOS when the model uses one). Fails with a clear
// message when the text is shorter than the windows need.
std::vector<std::vector<int32_t>> calibration_windows(const Model& m, const CalibrationOptions& o);

// The sites of a block in execution order, and the weights (canonical names)
// of block `layer` that read each site's input.
constexpr LinearSite kLinearSites[] = {LinearSite::AttnIn, LinearSite::AttnOut, LinearSite::FfnIn, LinearSite::FfnDown};
// The linears of block `layer` that read the inputs at `site` (expert: see
// LinearObserver; a mixture of experts' -1 at FfnIn includes its router).
std::vector<std::string> linear_names(const ModelConfig& c, int64_t layer, LinearSite site, int64_t expert = -1);
// The experts an observer reports per site: -1 alone for a dense model, then
// each routed expert for a mixture.
std::vector<int64_t> site_experts(const ModelConfig& c);
// Fails naming `what` for a mixture of experts (the methods whose statistics
// or edits do not reach experts yet).
void refuse_experts(const Model& m, const char* what);
// Fails naming the first factorized linear (lmpress lowrank) for the methods
// that would multiply its factors back into one matrix.
void refuse_factorized(const Model& m, const char* what);

// Per input channel: Σx_j and Σx_j² over the calibration tokens.
struct ChannelStats {
  std::vector<double> sum, sq;
  int64_t n = 0;
  void add(const float* x, int64_t rows, int64_t cols) {
    if (sq.empty()) sum.assign(size_t(cols), 0.0), sq.assign(size_t(cols), 0.0);
    for (int64_t t = 0; t < rows; t++)
      for (int64_t j = 0; j < cols; j++) {
        const double v = x[t * cols + j];
        sum[size_t(j)] += v, sq[size_t(j)] += v * v;
      }
    n += rows;
  }
  double mean(int64_t j) const { return sum[size_t(j)] / double(std::max<int64_t>(1, n)); }
  // E[x²], or Var[x] = E[x²] − E[x]² when the mean is compensated.
  double moment(int64_t j, bool centered) const {
    const double m2 = sq[size_t(j)] / double(std::max<int64_t>(1, n));
    return centered ? std::max(0.0, m2 - mean(j) * mean(j)) : m2;
  }
};

// The largest transformer block's tensors as f32: what one block being
// compressed costs in memory, against which the peak memory is reported.
uint64_t largest_block_f32_bytes(const Model& m);
// The process's peak resident set (getrusage ru_maxrss), in bytes.
uint64_t peak_rss_bytes();
// What a layer-by-layer compression held, against the bound it keeps the
// peak under (besides the program's own code and libraries): 1.5 × the
// largest block's f32 size + the calibration state.
struct MemoryReport {
  uint64_t peak_rss = 0;          // bytes, whole process (getrusage), once the file is written
  uint64_t block_f32_bytes = 0;   // the largest transformer block's weights as f32
  uint64_t activation_bytes = 0;  // the windows' hidden states, one window's block buffers
  // One block's Hessians or channel statistics, and the GPTQ/SparseGPT
  // solver's copy of the largest Hessian (gptq_solver_bytes).
  uint64_t statistics_bytes = 0;
  uint64_t bound() const { return block_f32_bytes * 3 / 2 + activation_bytes + statistics_bytes; }
  // "peak RSS ... MiB; one-block bound ... MiB = 1.5 x ... + ..."
  std::string line() const;
};
// Block `layer`'s tensors (views into the input), to be put back with
// restore_block once the compressed block has been written.
std::vector<Tensor> block_tensors(const Model& m, int64_t layer);
// Puts a block's tensors back into m, dropping the compressed or f32 copies
// that replaced them, gives back their mapped pages (the block is not read
// again) and rebinds m.
void restore_block(Model& m, const std::vector<Tensor>& originals);
// Makes buffers of 1 MiB and more separate mappings, given back to the
// system when freed: called by the compression pipelines, so that a finished
// block's memory leaves the RSS instead of staying in malloc's heap.
void map_large_buffers();
// Gives back the mapped pages of block `layer`'s tensors (read by a pass that
// is done with the block).
void release_block_pages(const Model& m, int64_t layer);

class LayerwiseCalibrator {
 public:
  LayerwiseCalibrator(const Model& m, std::vector<std::vector<int32_t>> windows);

  // Runs block `layer` with weights `w` over every window. The observer sees
  // each linear layer's input. With advance, the block's outputs replace the
  // hidden states (call it once per layer, after compressing the block).
  void run(int64_t layer, const LayerWeights& w, const LinearObserver* obs, bool advance);
  int64_t n_tokens() const { return int64_t(windows_.size()) * ctx_; }
  int64_t n_windows() const { return int64_t(windows_.size()); }
  // The windows' hidden states, one window's copy and the block's buffers for one window.
  uint64_t activation_bytes() const {
    return (hidden_.size() + scratch_.size()) * sizeof(float) + state_.layer_buffer_bytes();
  }
  // The hidden states [windows, ctx, dim] after the blocks run with advance.
  const std::vector<float>& hidden() const { return hidden_; }

 private:
  const Model& m_;
  std::vector<std::vector<int32_t>> windows_;
  int64_t ctx_;
  InferenceState state_;
  std::vector<float> hidden_;   // [windows, ctx, dim]
  std::vector<float> scratch_;  // one window when not advancing
};

}  // namespace lmpress
