// lmpress rotate IN OUT.gguf [--rotate hadamard:SEED]: QuaRot's residual rotation (compress/rotate.h).
#include "commands.h"
#include "compress/rotate.h"
#include "core/error.h"
#include "kernels/matmul.h"
#include "model/export.h"

namespace lmpress::cli {

void add_rotate(CLI::App& app) {
  struct Opts {
    std::string in, out, rotate = "hadamard";
    bool no_finite_check = false;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand(
      "rotate", "QuaRot: fold the norms and rotate the residual stream by a random Hadamard matrix (same function)");
  add_path_option(cmd, "input", o->in, "Input model (float weights)", PathRole::Model)->required();
  add_path_option(cmd, "output", o->out, "Output .gguf file", PathRole::Output)->required();
  cmd->add_option("--rotate", o->rotate,
                  "hadamard or hadamard:SEED (the seed of the random signs); with ,r4 also ffn_down's input online "
                  "(an lmpress file)")
      ->capture_default_str();
  add_threads_option(cmd, o->threads);
  add_finite_check_flag(cmd, o->no_finite_check);
  on_run(cmd, [o] {
    set_num_threads(o->threads);
    const RotateSpec spec = parse_rotate_spec(o->rotate, "--rotate");
    auto m = load_for_compression(o->in, "", o->no_finite_check);
    const RotateReport r = rotate_model(*m, spec);
    write_gguf_model(*m, o->out, {});
    const std::string down =
        r.down_size ? fmt::format(", ffn_down's input ({} = {}·{}) online", r.down_size, r.down_order,
                                  r.down_size / r.down_order)
                    : "";
    fmt::print("rotated the residual stream (width {} = {}·{}){}{}{} with {}; wrote {}\n", r.size, r.order,
               r.size / r.order, r.heads ? " and each head's values" : "", down,
               r.untied ? ", output head untied" : "", r.recorded, o->out);
  });
}

}  // namespace lmpress::cli
