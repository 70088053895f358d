// lmpress prune IN OUT.gguf --method magnitude|wanda|sparsegpt (--sparsity S | --nm N:M)
//   [--calib TEXT] [--quantize TYPE]: one-shot pruning of the blocks' linear layers.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "commands.h"
#include "compress/expert_prune.h"
#include "compress/prune_model.h"
#include "model/export.h"
#include "core/error.h"
#include "kernels/matmul.h"

namespace lmpress::cli {

namespace {

void print_report(const PruneReport& r, const PruneOptions& o, bool json) {
  const double overall = r.n_linear ? double(r.n_zero) / double(r.n_linear) : 0.0;
  const double bpw = r.n_params ? double(r.bytes_out) * 8.0 / double(r.n_params) : 0.0;
  if (json) {
    nlohmann::ordered_json tensors = nlohmann::json::array();
    for (const auto& t : r.tensors) {
      nlohmann::ordered_json j{{"name", t.name}, {"shape", t.shape}, {"sparsity", t.sparsity}};
      if (t.output_error >= 0) j["output_error"] = t.output_error;
      if (t.compensated_error >= 0) j["compensated_error"] = t.compensated_error;
      tensors.push_back(j);
    }
    nlohmann::ordered_json j{{"method", prune_method_name(o.method)}, {"pattern", o.pattern.name()},
                             {"tensors", tensors},     {"sparsity_linear", overall},
                             {"sparsity_model", r.n_params ? double(r.n_zero) / double(r.n_params) : 0.0},
                             {"n_params", r.n_params}, {"bytes_out", r.bytes_out}, {"bpw", bpw},
                             {"calib_tokens", r.calib_tokens}, {"seconds", r.seconds}};
    if (!r.uncalibrated.empty()) j["uncalibrated"] = r.uncalibrated;
    if (!r.layer_sparsity.empty()) {
      j["owl_outlier_ratio"] = r.owl_ratios;
      j["layer_sparsity"] = r.layer_sparsity;
    }
    if (r.adapter.rank) j["adapter"] = adapter_json(r.adapter, r.bytes_out, r.n_params);
    add_memory_fields(j, r.memory);
    fmt::print("{}\n", json_text(j));
    return;
  }
  if (!r.layer_sparsity.empty()) {
    fmt::print("OWL block sparsities (outlier ratio):");
    for (size_t l = 0; l < r.layer_sparsity.size(); l++)
      fmt::print(" {}:{:.3f} ({:.4f})", l, r.layer_sparsity[l], r.owl_ratios[l]);
    fmt::print("\n");
  }
  fmt::print("{:<28} {:<12} {:>9} {:>10}{}\n", "tensor", "shape", "sparsity", "out_err",
             compensated_header(r.adapter));
  for (const auto& t : r.tensors)
    fmt::print("{:<28} {:<12} {:>8.3f}% {:>10}{}\n", t.name, t.shape, 100 * t.sparsity,
               t.output_error >= 0 ? fmt::format("{:.6f}", t.output_error) : "-",
               compensated_cell(r.adapter, t.compensated_error));
  fmt::print("{} {}: {:.3f}% of the blocks' linear weights are zero ({:.3f}% of all {} parameters)\n",
             prune_method_name(o.method), o.pattern.name(), 100 * overall,
             r.n_params ? 100.0 * double(r.n_zero) / double(r.n_params) : 0.0, r.n_params);
  fmt::print("size {:.2f} MiB, {:.3f} bits per weight, {:.1f} s", double(r.bytes_out) / (1 << 20), bpw, r.seconds);
  if (r.calib_tokens) fmt::print(", {} calibration tokens", r.calib_tokens);
  fmt::print("\n");
  if (r.adapter.rank) fmt::print("{}\n", adapter_line(r.adapter, r.bytes_out, r.n_params));
  fmt::print("{}\n", r.memory.line());
  if (!r.uncalibrated.empty())
    fmt::print("{} expert linears saw no calibration token and were pruned by magnitude (first: {})\n",
               r.uncalibrated.size(), r.uncalibrated.front());
}

void print_structured(const StructuredReport& r, bool json) {
  if (json) {
    nlohmann::ordered_json j{{"params_before", r.params_before}, {"params_after", r.params_after},
                             {"heads", {r.heads_before, r.heads_after}},
                             {"kv_heads", {r.kv_heads_before, r.kv_heads_after}},
                             {"ffn", {r.ffn_before, r.ffn_after}},
                             {"layers", {r.layers_before, r.layers_after}},
                             {"layer_heads", r.layer_heads},
                             {"layer_kv_heads", r.layer_kv_heads},
                             {"layer_ffn", r.layer_ffn},
                             {"block_distance", r.block_distance},
                             {"removed_blocks", r.removed_blocks},
                             {"calib_tokens", r.calib_tokens}};
    add_memory_fields(j, r.memory);
    fmt::print("{}\n", json_text(j));
    return;
  }
  fmt::print("block angular distance (input vs output):");
  for (size_t i = 0; i < r.block_distance.size(); i++) fmt::print(" {}:{:.4f}", i, r.block_distance[i]);
  fmt::print("\nremoved blocks: {}\n", r.removed_blocks);
  const auto uniform = [](const std::vector<int64_t>& v) {
    return std::all_of(v.begin(), v.end(), [&](int64_t x) { return x == v.front(); });
  };
  if (uniform(r.layer_heads) && uniform(r.layer_ffn)) {
    fmt::print("heads {} -> {} (KV {} -> {}), feed-forward {} -> {}, blocks {} -> {}\n", r.heads_before, r.heads_after,
               r.kv_heads_before, r.kv_heads_after, r.ffn_before, r.ffn_after, r.layers_before, r.layers_after);
  } else {
    fmt::print("per layer (was {} heads, KV {}, feed-forward {}):\n", r.heads_before, r.kv_heads_before, r.ffn_before);
    for (size_t l = 0; l < r.layer_heads.size(); l++)
      fmt::print("  blk.{:<3} heads {:>4} (KV {:>3}), feed-forward {:>6}\n", l, r.layer_heads[l], r.layer_kv_heads[l],
                 r.layer_ffn[l]);
    fmt::print("blocks {} -> {}\n", r.layers_before, r.layers_after);
  }
  fmt::print("parameters {} -> {} ({:.1f}% removed)\n", r.params_before, r.params_after,
             100.0 * double(r.params_before - r.params_after) / double(r.params_before));
  fmt::print("{}\n", r.memory.line());
}

}  // namespace

double parse_number(const std::string& text, const char* option) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !std::isfinite(v) || v <= 0)
    fail("{} '{}': expected a count of experts to keep or a fraction in (0, 1) to remove", option, text);
  return v;
}

void print_experts(const ExpertPruneReport& r, bool json) {
  if (json) {
    nlohmann::ordered_json layers = nlohmann::json::array();
    for (size_t l = 0; l < r.kept.size(); l++)
      layers.push_back({{"kept", r.kept[l]}, {"scores", r.scores[l]}, {"tokens", r.counts[l]}});
    nlohmann::ordered_json j{{"experts_before", r.experts_before}, {"experts_after", r.experts_after},
                             {"used_before", r.used_before},       {"used_after", r.used_after},
                             {"params_before", r.params_before},   {"params_after", r.params_after},
                             {"bytes_before", r.bytes_before},     {"bytes_after", r.bytes_after},
                             {"calib_tokens", r.calib_tokens},     {"layers", layers}};
    fmt::print("{}\n", json_text(j));
    return;
  }
  for (size_t l = 0; l < r.kept.size(); l++) {
    if (r.kept[l].empty()) continue;  // a dense block
    fmt::print("blk.{:<3} kept", l);
    for (int64_t e : r.kept[l]) fmt::print(" {}", e);
    fmt::print("\n");
  }
  const double mib = 1024.0 * 1024.0;
  fmt::print("experts {} -> {} per layer ({} -> {} per token), parameters {} -> {}, {:.2f} -> {:.2f} MiB, {} "
             "calibration tokens\n",
             r.experts_before, r.experts_after, r.used_before, r.used_after, r.params_before, r.params_after,
             double(r.bytes_before) / mib, double(r.bytes_after) / mib, r.calib_tokens);
}

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
                  "Rotate the residual stream first (QuaRot): hadamard or hadamard:SEED (unstructured and N:M)");
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
    if (!o->experts.empty()) {
      ExpertPruneOptions eo;
      eo.calib = o->calib;
      const auto n = parse_number(o->experts, "--experts");
      if (n >= 1 && n == std::floor(n)) eo.keep = int64_t(n);
      else eo.ratio = n;
      if (o->method == "reap" || method->count() == 0) eo.score = ExpertScore::Reap;
      else if (o->method == "frequency") eo.score = ExpertScore::Frequency;
      else fail("--method {}: with --experts, reap or frequency", o->method);
      if (o->calib.file.empty()) fail("--experts scores the experts on calibration text: --calib FILE");
      if (!o->quantize.empty() || o->owl || o->global || !o->rotate.empty())
        fail("--experts removes whole experts; --quantize, --owl, --global and --rotate do not apply");
      auto m = load_for_compression(o->in, "", o->no_finite_check);
      const auto r = prune_experts(*m, eo);
      ExportOptions out;
      out.name = o->name;
      write_gguf_model(*m, o->out, out);
      print_experts(r, o->json);
      return;
    }
    if (!o->structured.empty()) {
      const PruneOptions po = prune_output_options(*o);
      const StructuredOptions so = parse_structured(o->structured);
      if (o->calib.file.empty()) fail("--structured scores heads, channels and blocks on calibration text: --calib FILE");
      auto m = load_for_compression(o->in, "", o->no_finite_check);
      const auto r = prune_model_structured(*m, o->out, so, po);
      print_structured(r, o->json);
      return;
    }
    const PruneOptions po = prune_options(*o, o->out);
    auto m = load_for_compression(o->in, "", o->no_finite_check);
    const auto r = prune_model(*m, o->out, po);
    print_report(r, po, o->json);
  });
}

}  // namespace lmpress::cli
