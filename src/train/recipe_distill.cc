#include "train/recipe_distill.h"

#include "compress/convert.h"
#include "core/progress.h"
#include "model/repack.h"
#include "train/finetune.h"

namespace lmpress::train {

void run_distill_step(const DistillStep& d, const std::string& teacher, const std::string& in_path,
                      const std::string& out_path, const CalibrationOptions& data, const std::string& recipe) {
  FinetuneOptions ft;
  ft.data = data.file;
  ft.loss = parse_loss(d.loss);
  ft.steps = d.steps;
  ft.batch = d.batch;
  ft.ctx = d.ctx;
  ft.adam.lr = d.lr;
  ft.seed = d.seed;
  auto student = load_model(in_path);
  check_finite_weights(*student);
  const auto t = load_for_inference(teacher);
  check_finetune_options(ft, *student, t.get());
  Progress progress("distill", uint64_t(ft.steps));
  finetune(
      *student, t.get(), ft, [&](const FinetunePoint& p) { progress.update(uint64_t(p.step)); },
      [&](const TrainModel<float>& tm) {
        tm.store(*student);
        ConvertRequest req;
        req.dtype = "f32";
        req.format = "gguf";
        req.recipe = recipe;
        convert_model(*student, out_path, req);
      });
  progress.finish();
}

}  // namespace lmpress::train
