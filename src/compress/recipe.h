// Recipes (lmpress apply): an ordered list of compression steps written down
// once and re-run, in llm-compressor's recipe layout where the concepts match:
//   <name>_stage:                  (any number, in order)
//     run_type: oneshot | train    (train: DistillationModifier only)
//     calibration: {file, samples, ctx, consecutive}   (lmpress: this stage's text; else the command's)
//     <kind>_modifiers:
//       SmoothQuantModifier: {smoothing_strength} (compress/smooth.h; its default mappings)
//       SpinQuantModifier: {rotations: [R1, R2], transform_type} (compress/rotate.h; seed 0)
//       SparseGPTModifier: {sparsity, mask_structure, dampening_frac, targets, ignore}
//       WandaModifier:     {sparsity, mask_structure, targets, ignore}
//       GPTQModifier:      {scheme | config_groups, dampening_frac, actorder, targets, ignore}
//       QuantizationModifier: the same, round to nearest
//       LowRankModifier:   {method, ratio | rank, global, alpha, factor_type, targets, ignore} (lmpress's own;
//                          compress/low_rank_model.h; the last step)
//       DistillationModifier: {teacher, loss, steps, batch, ctx, lr, seed} (lmpress's own: full fine-tuning
//                          on the stage's text against a teacher, the recipe's input model by default)
// targets / ignore are module names as llm-compressor matches them
// (core/module_match.h): Linear, an exact name, or re:REGEX; several
// config_groups give per-module formats. Quantization writes a
// compressed-tensors pack-quantized checkpoint (what llm-compressor writes);
// it must be the last step. Every key lmpress does not act on is an error
// naming it, so a recipe never runs differently than it reads.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "compress/low_rank_model.h"
#include "compress/prune_model.h"
#include "compress/quantize_model.h"
#include "core/module_match.h"

namespace lmpress {

// A stage's own calibration: the fields it sets replace the command's.
struct StageCalibration {
  std::optional<std::string> file;
  std::optional<int64_t> samples, ctx;
  std::optional<bool> consecutive;
  CalibrationOptions over(CalibrationOptions base) const;
};

// DistillationModifier: the student (the model as the steps before left it)
// trained on the stage's text to match the teacher.
struct DistillStep {
  std::string teacher;  // empty: the recipe's input model
  std::string loss = "kl";  // ce, kl, rkl, mix:A (train/finetune.h)
  int64_t steps = 100, batch = 8, ctx = 256;
  double lr = 1e-4;
  uint32_t seed = 0;
};

struct RecipeStep {
  enum class Kind { Smooth, Rotate, Prune, Quantize, LowRank, Distill } kind = Kind::Prune;
  double smooth_alpha = 0.5;    // Kind::Smooth
  RotateSpec rotate;            // Kind::Rotate
  std::string stage, modifier;  // where it was written: "sparsity_stage", "SparseGPTModifier"
  StageCalibration calib;       // the stage's calibration settings
  PruneOptions prune;           // Kind::Prune (calibration left to the caller)
  QuantizeRequest quantize;     // Kind::Quantize (calibration left to the caller)
  ModuleSelector select;        // Kind::Quantize: the linears quantized
  // Kind::Quantize: config groups besides the one targeting Linear (whose
  // format is quantize.type): the linears each selects take its format.
  std::vector<std::pair<ModuleSelector, IntGroupSpec>> groups;
  LowRankOptions lowrank;       // Kind::LowRank
  DistillStep distill;          // Kind::Distill
};

struct Recipe {
  std::vector<RecipeStep> steps;
  std::string text;  // as read: recorded in the output
};

// Parses recipe text (`source` names it in errors).
Recipe parse_recipe(const std::string& text, const std::string& source);

// Runs a distillation step: the student at in_path trained on data.file and
// written as GGUF to out_path (recording `recipe` when not empty). The train
// layer provides it (train/recipe_distill.h); compress does not train.
using DistillRunner = std::function<void(const DistillStep& d, const std::string& teacher, const std::string& in_path,
                                         const std::string& out_path, const CalibrationOptions& data,
                                         const std::string& recipe)>;

// Runs every step on the model at in_path, each calibrated with its stage's
// calibration over `calib`; the steps before the last write temporary GGUF
// files beside out_path (removed after), the last writes out_path with the
// recipe recorded in it. on_step(i, step) is called before step i.
void run_recipe(const Recipe& r, const std::string& in_path, const std::string& out_path,
                const CalibrationOptions& calib, const std::function<void(size_t, const RecipeStep&)>& on_step = {},
                const DistillRunner& distill = {});

}  // namespace lmpress
