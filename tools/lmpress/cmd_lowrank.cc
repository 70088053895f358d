// lmpress lowrank IN OUT.gguf --method svd|asvd|svd-llm --ratio R | --rank r: factorized linears (compress/low_rank_model.h).
#include "commands.h"
#include "compress/low_rank_model.h"
#include "core/error.h"
#include "kernels/matmul.h"

namespace lmpress::cli {

void add_lowrank(CLI::App& app) {
  struct Opts : LowRankRequest {
    std::string in, out;
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
  // Negative values are the library's "not given": refused here.
  cmd->add_option("--ratio", o->ratio, "Parameter reduction of each linear, in (0, 1)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--rank", o->rank, "One rank for every linear (instead of --ratio)")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--global", o->global,
                "With --ratio: the linears together lose that share, each linear's rank by its spectrum");
  cmd->add_option("--alpha", o->alpha, "ASVD's exponent of the activations' mean magnitude")->capture_default_str();
  cmd->add_option("--factor-type", o->factor_type, "Type of both factors (f32, f16, bf16, q8_0, ...)")
      ->capture_default_str();
  cmd->add_option("--name", o->name, "general.name of the output");
  cmd->add_option("--targets", o->targets,
                  "Factorize only these modules' linears (Hugging Face names: model.layers.3.mlp, or re:REGEX matched "
                  "at the start; repeat for more)");
  cmd->add_option("--ignore", o->ignore, "Leave these modules' linears dense (names as --targets)");
  add_calibration_options(cmd, o->calib, "asvd and svd-llm");
  add_threads_option(cmd, o->threads);
  add_finite_check_flag(cmd, o->no_finite_check);
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  on_run(cmd, [o] {
    set_num_threads(o->threads);
    lmpress_lowrank_params p = lmpress_lowrank_default_params();
    p.method = o->method.c_str();
    p.ratio = o->ratio;
    p.rank = o->rank;
    p.global = o->global;
    p.alpha = o->alpha;
    p.factor_type = o->factor_type.c_str();
    p.calib_path = c_str_or_null(o->calib.file);
    p.calib_samples = o->calib.samples;
    p.calib_ctx = o->calib.ctx;
    const auto targets = c_strings(o->targets), ignore = c_strings(o->ignore);
    p.targets = targets.data();
    p.n_targets = targets.size();
    p.ignore = ignore.data();
    p.n_ignore = ignore.size();
    p.name = c_str_or_null(o->name);
    p.skip_finite_check = o->no_finite_check;
    api_check(lmpress_lowrank(o->in.c_str(), o->out.c_str(), &p));
    const auto r = api_report();
    if (o->json) {
      fmt::print("{}\n", json_text(r));
      return;
    }
    const std::string method = r["method"];
    fmt::print("{:<28} {:<14} {:>6} {:>10} {:>10} {:>10}\n", "tensor", "shape", "rank", "params", "factors",
               method == "svd" ? "rel_err" : "out_err");
    for (const auto& x : r["tensors"])
      fmt::print("{:<28} {:<14} {:>6} {:>10} {:>10} {:>10.5f}\n", x["name"].get<std::string>(),
                 x["shape"].get<std::string>(), x["rank"].get<int64_t>(), x["params_before"].get<int64_t>(),
                 x["params_after"].get<int64_t>(), number(x["error"]));
    const auto before = r["params_before"].get<int64_t>(), after = r["params_after"].get<int64_t>();
    const auto calib = r["calib_tokens"].get<int64_t>();
    fmt::print("{} ({}), factors {}: {} of {} parameters ({:.1f}%), {:.2f} MiB, {:.1f} s{}\n", o->out, method,
               r["factor_type"].get<std::string>(), after, before, 100.0 * double(after) / double(before),
               double(r["bytes_out"].get<uint64_t>()) / (1 << 20), r["seconds"].get<double>(),
               calib ? fmt::format(", {} calibration tokens", calib) : "");
  });
}

}  // namespace lmpress::cli
