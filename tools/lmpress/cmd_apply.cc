// lmpress apply RECIPE.yaml MODEL OUT [--calib TEXT]: the steps of a recipe, in order (distillation steps by the
// train layer).
#include "commands.h"
#include "compress/recipe.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "kernels/matmul.h"
#include "train/recipe_distill.h"

namespace lmpress::cli {

void add_apply(CLI::App& app) {
  struct Opts {
    std::string recipe, in, out;
    CalibrationOptions calib;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("apply", "Run a compression recipe (llm-compressor's layout) on a model");
  add_path_option(cmd, "recipe", o->recipe, "Recipe (YAML)", PathRole::Input)->required();
  add_path_option(cmd, "input", o->in, "Input model", PathRole::Model)->required();
  add_path_option(cmd, "output", o->out,
                  "Output: a directory when the recipe quantizes (compressed-tensors), else a .gguf file (the recipe's "
                  "stages may name their own calibration files and a distillation teacher)",
                  PathRole::Output, OutputKind::Either)
      ->required();
  add_calibration_options(cmd, o->calib, "every calibrated step");
  add_threads_option(cmd, o->threads);
  on_run(cmd, [o] {
    set_num_threads(o->threads);
    const Recipe r = parse_recipe(read_text_file(o->recipe), o->recipe);
    run_recipe(
        r, o->in, o->out, o->calib,
        [&](size_t i, const RecipeStep& st) {
          fmt::print("step {}/{}: {}.{}\n", i + 1, r.steps.size(), st.stage, st.modifier);
          std::fflush(stdout);
        },
        train::run_distill_step);
    fmt::print("wrote {}\n", o->out);
  });
}

}  // namespace lmpress::cli
