// SmoothQuant's migration of activation outliers into the weights: for the
// linears that read a norm's output (q/k/v after attn_norm, gate/up after
// ffn_norm), per input channel j
//   s_j = max|X_j|^α / max|W_:,j|^(1−α)
// (max|X| over calibration tokens, max|W| over the rows of every such
// linear); the norm's weight is divided by s and the linears' columns
// multiplied by it, so the model computes the same function (the v → o pair is
// not smoothed). The smoothed weights are f32.
#pragma once
#include "compress/calibration.h"
#include "model/model.h"

namespace lmpress {

struct SmoothReport {
  double max_scale = 0, min_scale = 0;  // over all channels smoothed
  int64_t calib_tokens = 0;
};

// Smooths m in place (its float weights become owned f32 tensors). Fails for
// α outside [0, 1] or quantized weights.
SmoothReport smooth_model(Model& m, const CalibrationOptions& calib, double alpha);

}  // namespace lmpress
