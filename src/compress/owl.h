// OWL (Yin et al. 2024, "Outlier Weighed Layerwise Sparsity"): layers whose
// Wanda scores |W_ij|·‖X_j‖ hold more outliers are pruned less. One pass of
// the calibration text through the dense model measures each block's outlier
// ratio D_l (the share of its linear weights whose score exceeds M times the
// block's mean score); the ratios, rescaled to [0, 2λ], shift the target
// sparsity up or down per block so that the mean stays the target:
//   S_l = S − (λ' · (D_l − min D) / (max D − min D) − mean of that over l),  λ' = 2λ
// (the OWL code's "Lamda" with its defaults λ = 0.08, M = 5).
#pragma once
#include <cstdint>
#include <vector>

#include "compress/calibration.h"
#include "model/model.h"

namespace lmpress {

struct OwlOptions {
  double lambda = 0.08;  // sparsities span target ± lambda
  double m = 5;          // outlier threshold, in multiples of the block's mean score
};

// Per block: the fraction of its q/k/v/o/gate/up/down weights whose Wanda
// score exceeds o.m × the block's mean score, on the dense model.
std::vector<double> owl_outlier_ratios(const Model& m, const CalibrationOptions& calib, const OwlOptions& o);

// Per-block sparsities from the outlier ratios: mean `target`, spread 2λ,
// more outliers → lower sparsity; clamped to [0, 0.99].
std::vector<double> owl_sparsities(const std::vector<double>& ratios, double target, double lambda);

}  // namespace lmpress
