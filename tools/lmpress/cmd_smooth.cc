// lmpress smooth IN OUT.gguf --alpha A --calib TEXT: SmoothQuant's outlier migration (compress/smooth.h).
#include "commands.h"
#include "compress/smooth.h"
#include "core/error.h"
#include "kernels/matmul.h"
#include "model/export.h"

namespace lmpress::cli {

void add_smooth(CLI::App& app) {
  struct Opts {
    std::string in, out;
    double alpha = 0.5;
    CalibrationOptions calib;
    bool no_finite_check = false;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand(
      "smooth", "SmoothQuant: move activation outliers into the weights (same function; before quantizing)");
  add_path_option(cmd, "input", o->in, "Input model (float weights)", PathRole::Model)->required();
  add_path_option(cmd, "output", o->out, "Output .gguf file", PathRole::Output)->required();
  cmd->add_option("--alpha", o->alpha, "Migration strength α in [0, 1]")->capture_default_str();
  add_calibration_options(cmd, o->calib, "required");
  add_threads_option(cmd, o->threads);
  add_finite_check_flag(cmd, o->no_finite_check);
  on_run(cmd, [o] {
    set_num_threads(o->threads);
    if (o->calib.file.empty()) fail("smooth measures activations on calibration text: --calib FILE");
    auto m = load_for_compression(o->in, "", o->no_finite_check);
    const SmoothReport r = smooth_model(*m, o->calib, o->alpha);
    write_gguf_model(*m, o->out, {});
    fmt::print("smoothed {} norms' linears with alpha {} on {} calibration tokens: scales {:.4g} .. {:.4g}; wrote {}\n",
               2 * m->cfg.n_layers, o->alpha, r.calib_tokens, r.min_scale, r.max_scale, o->out);
  });
}

}  // namespace lmpress::cli
