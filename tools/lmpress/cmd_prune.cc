// lmpress prune IN OUT.gguf --method magnitude|wanda|sparsegpt (--sparsity S | --nm N:M)
//   [--calib TEXT] [--quantize TYPE]: one-shot pruning of the blocks' linear layers.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "commands.h"
#include "compress/expert_prune.h"
#include "compress/prune_model.h"
#include "compress/report_json.h"
#include "model/export.h"
#include "core/error.h"
#include "kernels/matmul.h"

namespace lmpress::cli {

namespace {

using Json = nlohmann::ordered_json;

void print_report(const Json& r) {
  const std::string method = r["method"].get<std::string>(), pattern = r["pattern"].get<std::string>();
  if (r.contains("layer_sparsity")) {
    fmt::print("OWL block sparsities (outlier ratio):");
    for (size_t l = 0; l < r["layer_sparsity"].size(); l++)
      fmt::print(" {}:{:.3f} ({:.4f})", l, number(r["layer_sparsity"][l]), number(r["owl_outlier_ratio"][l]));
    fmt::print("\n");
  }
  fmt::print("{:<28} {:<12} {:>9} {:>10}{}\n", "tensor", "shape", "sparsity", "out_err", compensated_header(r));
  for (const auto& t : r["tensors"])
    fmt::print("{:<28} {:<12} {:>8.3f}% {:>10}{}\n", t["name"].get<std::string>(), t["shape"].get<std::string>(),
               100 * number(t["sparsity"]),
               t.contains("output_error") ? fmt::format("{:.6f}", number(t["output_error"])) : "-",
               compensated_cell(r, t));
  fmt::print("{} {}: {:.3f}% of the blocks' linear weights are zero ({:.3f}% of all {} parameters)\n", method,
             pattern, 100 * r["sparsity_linear"].get<double>(), 100 * r["sparsity_model"].get<double>(),
             r["n_params"].get<int64_t>());
  fmt::print("size {:.2f} MiB, {:.3f} bits per weight, {:.1f} s", double(r["bytes_out"].get<uint64_t>()) / (1 << 20),
             r["bpw"].get<double>(), r["seconds"].get<double>());
  if (const auto calib = r["calib_tokens"].get<int64_t>()) fmt::print(", {} calibration tokens", calib);
  fmt::print("\n");
  if (r.contains("adapter")) fmt::print("{}\n", adapter_line(r));
  fmt::print("{}\n", memory_from_json(r).line());
  if (r.contains("uncalibrated"))
    fmt::print("{} expert linears saw no calibration token and were pruned by magnitude (first: {})\n",
               r["uncalibrated"].size(), r["uncalibrated"][0].get<std::string>());
}

void print_structured(const Json& r) {
  const auto ints = [&](const char* key) { return r[key].get<std::vector<int64_t>>(); };
  const auto pair = [&](const char* key, size_t i) { return r[key][i].get<int64_t>(); };
  fmt::print("block angular distance (input vs output):");
  const auto& distance = r["block_distance"];
  for (size_t i = 0; i < distance.size(); i++) fmt::print(" {}:{:.4f}", i, number(distance[i]));
  fmt::print("\nremoved blocks: {}\n", ints("removed_blocks"));
  const auto uniform = [](const std::vector<int64_t>& v) {
    return std::all_of(v.begin(), v.end(), [&](int64_t x) { return x == v.front(); });
  };
  const auto heads = ints("layer_heads"), kv_heads = ints("layer_kv_heads"), ffn = ints("layer_ffn");
  if (uniform(heads) && uniform(ffn)) {
    fmt::print("heads {} -> {} (KV {} -> {}), feed-forward {} -> {}, blocks {} -> {}\n", pair("heads", 0),
               pair("heads", 1), pair("kv_heads", 0), pair("kv_heads", 1), pair("ffn", 0), pair("ffn", 1),
               pair("layers", 0), pair("layers", 1));
  } else {
    fmt::print("per layer (was {} heads, KV {}, feed-forward {}):\n", pair("heads", 0), pair("kv_heads", 0),
               pair("ffn", 0));
    for (size_t l = 0; l < heads.size(); l++)
      fmt::print("  blk.{:<3} heads {:>4} (KV {:>3}), feed-forward {:>6}\n", l, heads[l], kv_heads[l], ffn[l]);
    fmt::print("blocks {} -> {}\n", pair("layers", 0), pair("layers", 1));
  }
  const auto before = r["params_before"].get<int64_t>(), after = r["params_after"].get<int64_t>();
  fmt::print("parameters {} -> {} ({:.1f}% removed)\n", before, after, 100.0 * double(before - after) / double(before));
  fmt::print("{}\n", memory_from_json(r).line());
}

void print_experts(const Json& r) {
  const auto& layers = r["layers"];
  for (size_t l = 0; l < layers.size(); l++) {
    if (layers[l]["kept"].empty()) continue;  // a dense block
    fmt::print("blk.{:<3} kept", l);
    for (const auto& e : layers[l]["kept"]) fmt::print(" {}", e.get<int64_t>());
    fmt::print("\n");
  }
  const double mib = 1024.0 * 1024.0;
  fmt::print("experts {} -> {} per layer ({} -> {} per token), parameters {} -> {}, {:.2f} -> {:.2f} MiB, {} "
             "calibration tokens\n",
             r["experts_before"].get<int64_t>(), r["experts_after"].get<int64_t>(), r["used_before"].get<int64_t>(),
             r["used_after"].get<int64_t>(), r["params_before"].get<int64_t>(), r["params_after"].get<int64_t>(),
             double(r["bytes_before"].get<uint64_t>()) / mib, double(r["bytes_after"].get<uint64_t>()) / mib,
             r["calib_tokens"].get<int64_t>());
}

}  // namespace

void add_prune(CLI::App& app) {
  struct Opts : PruneRequest {
    std::string in, out, structured, experts;
    bool json = false, no_finite_check = false;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("prune", "Prune the linear layers (magnitude, Wanda, SparseGPT; unstructured or N:M)");
  add_path_option(cmd, "input", o->in, "Input model (float: GGUF, Hugging Face directory, llama2.c)", PathRole::Model)->required();
  add_path_option(cmd, "output", o->out, "Output .gguf file", PathRole::Output)->required();
  auto* method = cmd->add_option("--method", o->method,
                                 "magnitude, wanda or sparsegpt (the last two need --calib); with --experts: reap or "
                                 "frequency (default reap)")
      ->capture_default_str();
  auto* sp = cmd->add_option("--sparsity", o->sparsity, "Fraction of each linear layer's weights to zero (0..1)");
  auto* nm = cmd->add_option("--nm", o->nm, "Semi-structured N:M: N nonzero weights in every M of a row (2:4, 4:8)");
  auto* st = cmd->add_option("--structured", o->structured,
                             "Remove KV-head groups, MLP channels and whole blocks: heads=F,ffn=F,layers=N; "
                             "add 'global' to rank across layers (per-layer sizes), 'bias' for FLAP bias compensation");
  auto* ex = cmd->add_option("--experts", o->experts,
                             "Mixtures of experts: keep N experts per layer (an integer), or remove this fraction of "
                             "them (in (0, 1)), scored on --calib text by --method reap (default) or frequency");
  sp->excludes(nm);
  st->excludes(sp);
  st->excludes(nm);
  for (auto* other : {sp, nm, st}) ex->excludes(other);
  add_calibration_options(cmd, o->calib, "wanda, sparsegpt");
  cmd->add_option("--quantize", o->quantize, "Also quantize the pruned linears (q4_0, q5_0, q8_0, q3_k, q6_k; "
                                             "SparseGPT does both in one pass)");
  auto* owl = cmd->add_flag("--owl", o->owl,
                            "OWL: per-block sparsities around --sparsity, lower where Wanda scores have more outliers "
                            "(needs --calib)");
  owl->excludes(nm);
  owl->excludes(st);
  auto* gl = cmd->add_flag("--global", o->global,
                           "Magnitude: one |w| threshold across all blocks' linear layers (they get different "
                           "sparsities; the total is --sparsity)");
  gl->excludes(nm);
  gl->excludes(st);
  gl->excludes(owl);
  cmd->add_option("--owl-lambda", o->owl_opts.lambda, "OWL: block sparsities span --sparsity ± this")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--owl-m", o->owl_opts.m, "OWL: an outlier's score exceeds this many times the block's mean")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1000.0));
  cmd->add_option("--damp", o->damp, "SparseGPT dampening (fraction of mean diag H)")->capture_default_str()->check(damp_fraction());
  cmd->add_option("--rotate", o->rotate,
                  "Rotate the residual stream first (QuaRot): hadamard or hadamard:SEED[,r4] (unstructured and N:M)");
  auto* tg = cmd->add_option("--targets", o->targets,
                             "Prune only these modules' linears (Hugging Face names: model.layers.3.mlp, or "
                             "re:REGEX matched at the start; repeat for more)");
  auto* ig = cmd->add_option("--ignore", o->ignore, "Leave these modules' linears dense (names as --targets; repeat for more)");
  tg->excludes(st);
  ig->excludes(st);
  add_compensate_options(cmd, o->compensate, o->compensate_out, o->out, [] { return false; });
  cmd->add_option("--name", o->name, "Model name to record (general.name)");
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  add_threads_option(cmd, o->threads);
  add_finite_check_flag(cmd, o->no_finite_check);
  on_run(cmd, [o, method] {
    set_num_threads(o->threads);
    if (!o->compensate.empty() && (!o->structured.empty() || !o->experts.empty()))
      fail("--compensate applies to --sparsity and --nm pruning (with --method wanda or sparsegpt)");
    if (!o->experts.empty() && (!o->quantize.empty() || o->owl || o->global || !o->rotate.empty()))
      fail("--experts removes whole experts; --quantize, --owl, --global and --rotate do not apply");
    if (!o->structured.empty() && o->calib.file.empty())
      fail("--structured scores heads, channels and blocks on calibration text: --calib FILE");
    lmpress_prune_params p = lmpress_prune_default_params();
    // Structured pruning takes no method; expert pruning's score is --method when given.
    if (o->structured.empty() && (o->experts.empty() || method->count() > 0)) p.method = o->method.c_str();
    p.sparsity = o->sparsity;
    p.nm = c_str_or_null(o->nm);
    p.quantize = c_str_or_null(o->quantize);
    p.calib_path = c_str_or_null(o->calib.file);
    p.calib_samples = o->calib.samples;
    p.calib_ctx = o->calib.ctx;
    p.damp = o->damp;
    p.rotate = c_str_or_null(o->rotate);
    p.compensate = c_str_or_null(o->compensate);
    p.compensate_out = c_str_or_null(o->compensate_out);
    p.structured = c_str_or_null(o->structured);
    const auto targets = c_strings(o->targets), ignore = c_strings(o->ignore);
    p.targets = targets.data();
    p.n_targets = targets.size();
    p.ignore = ignore.data();
    p.n_ignore = ignore.size();
    p.owl = o->owl;
    p.owl_lambda = o->owl_opts.lambda;
    p.owl_m = o->owl_opts.m;
    p.global = o->global;
    p.experts = c_str_or_null(o->experts);
    p.name = c_str_or_null(o->name);
    p.skip_finite_check = o->no_finite_check;
    api_check(lmpress_prune(o->in.c_str(), o->out.c_str(), &p));
    const auto report = api_report();
    if (o->json) fmt::print("{}\n", json_text(report));
    else if (!o->experts.empty()) print_experts(report);
    else if (!o->structured.empty()) print_structured(report);
    else print_report(report);
  });
}

}  // namespace lmpress::cli
