// lmpress lowrank IN OUT.gguf --method svd|asvd|svd-llm --ratio R | --rank r: factorized linears (compress/low_rank_model.h).
#include "commands.h"
#include "compress/low_rank_model.h"
#include "core/error.h"
#include "kernels/matmul.h"

namespace lmpress::cli {

void add_lowrank(CLI::App& app) {
  struct Opts {
    std::string in, out, method = "svd-llm", factor_type = "f16";
    std::vector<std::string> targets, ignore;
    LowRankOptions lr;
    bool no_finite_check = false, json = false;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand(
      "lowrank", "Low-rank compression: each block linear as two factors (SVD, ASVD, SVD-LLM), run natively");
  add_path_option(cmd, "input", o->in, "Input model (float weights)", PathRole::Model)->required();
  add_path_option(cmd, "output", o->out, "Output .gguf file (an lmpress file: llama.cpp has no factorized linears)",
                  PathRole::Output)
      ->required();
  cmd->add_option("--method", o->method, "svd, asvd or svd-llm")->capture_default_str();
  cmd->add_option("--ratio", o->lr.ratio, "Parameter reduction of each linear, in (0, 1)");
  cmd->add_option("--rank", o->lr.rank, "One rank for every linear (instead of --ratio)");
  cmd->add_flag("--global", o->lr.global,
                "With --ratio: the linears together lose that share, each linear's rank by its spectrum");
  cmd->add_option("--alpha", o->lr.alpha, "ASVD's exponent of the activations' mean magnitude")->capture_default_str();
  cmd->add_option("--factor-type", o->factor_type, "Type of both factors (f32, f16, bf16, q8_0, ...)")
      ->capture_default_str();
  cmd->add_option("--name", o->lr.name, "general.name of the output");
  cmd->add_option("--targets", o->targets,
                  "Factorize only these modules' linears (Hugging Face names: model.layers.3.mlp, or re:REGEX matched "
                  "at the start; repeat for more)");
  cmd->add_option("--ignore", o->ignore, "Leave these modules' linears dense (names as --targets)");
  add_calibration_options(cmd, o->lr.calib, "asvd and svd-llm");
  add_threads_option(cmd, o->threads);
  add_finite_check_flag(cmd, o->no_finite_check);
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  on_run(cmd, [o, cmd] {
    set_num_threads(o->threads);
    LowRankOptions lr = o->lr;
    lr.method = parse_low_rank_method(o->method);
    if (cmd->count("--ratio") && cmd->count("--rank")) fail("lowrank: give --ratio R or --rank r, not both");
    if (cmd->count("--ratio") && !(lr.ratio > 0 && lr.ratio < 1)) fail("--ratio {}: a fraction in (0, 1)", lr.ratio);
    if (cmd->count("--rank") && lr.rank < 1) fail("--rank {}: at least 1", lr.rank);
    if (!cmd->count("--ratio") && !cmd->count("--rank")) fail("lowrank: give --ratio R in (0, 1) or --rank r");
    if (lr.method == LowRankMethod::Svd && !lr.calib.file.empty())
      fail("--method svd uses no calibration text: drop --calib, or use asvd or svd-llm");
    const auto t = dtype_from_name(o->factor_type);
    if (!t) fail("--factor-type: unknown type '{}'", o->factor_type);
    lr.factor_type = *t;
    lr.select = module_selector(o->targets, o->ignore, "lowrank --targets", "lowrank --ignore");
    auto m = load_for_compression(o->in, "", o->no_finite_check);
    const LowRankReport r = low_rank_model(*m, o->out, lr);
    const double kept = double(r.params_total_after) / double(r.params_total_before);
    if (o->json) {
      nlohmann::ordered_json j;
      j["method"] = low_rank_method_name(lr.method);
      j["factor_type"] = dtype_name(lr.factor_type);
      j["params_before"] = r.params_total_before;
      j["params_after"] = r.params_total_after;
      j["bytes_out"] = r.bytes_out;
      j["calib_tokens"] = r.calib_tokens;
      j["seconds"] = r.seconds;
      for (const auto& x : r.tensors)
        j["tensors"].push_back({{"name", x.name}, {"shape", x.shape}, {"rank", x.rank},
                                {"params_before", x.params_before}, {"params_after", x.params_after},
                                {"error", x.error}});
      fmt::print("{}\n", j.dump(2));
      return;
    }
    fmt::print("{:<28} {:<14} {:>6} {:>10} {:>10} {:>10}\n", "tensor", "shape", "rank", "params", "factors",
               lr.method == LowRankMethod::Svd ? "rel_err" : "out_err");
    for (const auto& x : r.tensors)
      fmt::print("{:<28} {:<14} {:>6} {:>10} {:>10} {:>10.5f}\n", x.name, x.shape, x.rank, x.params_before,
                 x.params_after, x.error);
    fmt::print("{} ({}), factors {}: {} of {} parameters ({:.1f}%), {:.2f} MiB, {:.1f} s{}\n", o->out,
               low_rank_method_name(lr.method), dtype_name(lr.factor_type), r.params_total_after,
               r.params_total_before, 100 * kept, double(r.bytes_out) / (1 << 20), r.seconds,
               r.calib_tokens ? fmt::format(", {} calibration tokens", r.calib_tokens) : "");
  });
}

}  // namespace lmpress::cli
