// A recipe's DistillationModifier (compress/recipe.h) run by the train layer:
// what `lmpress finetune STUDENT OUT.gguf --teacher T --loss L --data TEXT`
// does with the step's settings.
#pragma once
#include <string>

#include "compress/recipe.h"

namespace lmpress::train {

// Trains the student at in_path against `teacher` on data.file and writes it
// to out_path as f32 GGUF (recording `recipe` when not empty). Fits DistillRunner.
void run_distill_step(const DistillStep& d, const std::string& teacher, const std::string& in_path,
                      const std::string& out_path, const CalibrationOptions& data, const std::string& recipe);

}  // namespace lmpress::train
