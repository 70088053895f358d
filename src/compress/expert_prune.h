// Expert pruning of a mixture of experts: each layer keeps its highest-scoring
// experts (and their router rows); the rest are removed, giving a smaller
// mixture of the same architecture that llama.cpp loads.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compress/calibration.h"
#include "model/model.h"

namespace lmpress {

// frequency: the calibration tokens routed to an expert. reap: REAP's
// router-weighted expert activation (Lasby et al., 2025), the mean over the
// tokens routed to expert j of g_j(x)·‖f_j(x)‖₂ (its mixture weight times the
// norm of its output).
enum class ExpertScore { Frequency, Reap };

struct ExpertPruneOptions {
  // Experts kept per layer (keep >= 1), or, when keep is 0, the fraction of
  // each layer's experts removed (ratio in (0, 1), rounded to the nearest
  // count, at least one kept).
  int64_t keep = 0;
  double ratio = 0;
  ExpertScore score = ExpertScore::Reap;
  CalibrationOptions calib;
};

struct ExpertPruneReport {
  std::vector<std::vector<double>> scores;   // per layer, per original expert
  std::vector<std::vector<int64_t>> counts;  // tokens routed, per layer and expert
  std::vector<std::vector<int64_t>> kept;    // per layer, the original indices kept (ascending)
  int64_t experts_before = 0, experts_after = 0, used_before = 0, used_after = 0;
  int64_t params_before = 0, params_after = 0;
  uint64_t bytes_before = 0, bytes_after = 0;
  int64_t calib_tokens = 0;
};

// Scores every expert on the calibration text, then keeps each layer's best
// in m (tensors renumbered, router rows cut, config updated and bound).
ExpertPruneReport prune_experts(Model& m, const ExpertPruneOptions& o);
// `--experts N|F`: a count of experts to keep (an integer >= 1) or a fraction
// in (0, 1) to remove; fails on anything else.
double parse_expert_count(const std::string& text);

}  // namespace lmpress
