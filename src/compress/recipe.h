// Recipes (lmpress apply): an ordered list of compression steps written down
// once and re-run, in llm-compressor's recipe layout where the concepts match:
//   <name>_stage:                  (any number, in order; run_type: oneshot)
//     <kind>_modifiers:
//       SmoothQuantModifier: {smoothing_strength} (compress/smooth.h; its default mappings)
//       SpinQuantModifier: {rotations: [R1, R2], transform_type} (compress/rotate.h; seed 0)
//       SparseGPTModifier: {sparsity, mask_structure, dampening_frac, targets, ignore}
//       WandaModifier:     {sparsity, mask_structure, targets, ignore}
//       GPTQModifier:      {scheme | config_groups, dampening_frac, actorder, targets, ignore}
//       QuantizationModifier: the same, round to nearest
// Quantization writes a compressed-tensors pack-quantized checkpoint (what
// llm-compressor writes); it must be the last step. Every key lmpress does not
// act on is an error naming it, so a recipe never runs differently than it reads.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "compress/prune_model.h"
#include "compress/quantize_model.h"

namespace lmpress {

struct RecipeStep {
  enum class Kind { Smooth, Rotate, Prune, Quantize } kind = Kind::Prune;
  double smooth_alpha = 0.5;    // Kind::Smooth
  RotateSpec rotate;            // Kind::Rotate
  std::string stage, modifier;  // where it was written: "sparsity_stage", "SparseGPTModifier"
  PruneOptions prune;           // Kind::Prune (calibration left to the caller)
  QuantizeRequest quantize;     // Kind::Quantize (calibration left to the caller)
};

struct Recipe {
  std::vector<RecipeStep> steps;
  std::string text;  // as read: recorded in the output
};

// Parses recipe text (`source` names it in errors).
Recipe parse_recipe(const std::string& text, const std::string& source);

// Runs every step on the model at in_path, each calibrated with `calib`; the
// steps before the last write temporary GGUF files beside out_path (removed
// after), the last writes out_path with the recipe recorded in it.
// on_step(i, step) is called before step i.
void run_recipe(const Recipe& r, const std::string& in_path, const std::string& out_path,
                const CalibrationOptions& calib, const std::function<void(size_t, const RecipeStep&)>& on_step = {});

}  // namespace lmpress
