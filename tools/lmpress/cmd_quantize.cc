// lmpress quantize IN OUT.gguf --type q4_k_m [--method rtn|gptq|awq] [--imatrix F] [--calib F ...]
#include <nlohmann/json.hpp>

#include "commands.h"
#include "compress/quantize_model.h"
#include "core/error.h"
#include "kernels/matmul.h"

namespace lmpress::cli {

namespace {

void print_report(const QuantizeReport& r, bool json) {
  const double bpw = r.n_params ? double(r.bytes_out) * 8.0 / double(r.n_params) : 0.0;
  if (json) {
    nlohmann::ordered_json tensors = nlohmann::json::array();
    for (const auto& t : r.tensors) {
      nlohmann::ordered_json j{{"name", t.name}, {"shape", t.shape}, {"type", t.type},
                               {"weight_error", t.weight_error}};
      if (t.output_error >= 0) j["output_error"] = t.output_error;
      if (t.compensated_error >= 0) j["compensated_error"] = t.compensated_error;
      tensors.push_back(j);
    }
    nlohmann::ordered_json j{{"tensors", tensors},         {"n_params", r.n_params},
                             {"bytes_in", r.bytes_in},     {"bytes_out", r.bytes_out},
                             {"bpw", bpw},                 {"calib_tokens", r.calib_tokens},
                             {"seconds", r.seconds}};
    if (!r.uncalibrated.empty()) j["uncalibrated"] = r.uncalibrated;
    if (r.expert_tensors > 0)
      j["imatrix_expert_coverage"] = {{"tensors", r.expert_tensors}, {"with_data", r.expert_tensors_with_data}};
    if (r.adapter.rank) j["adapter"] = adapter_json(r.adapter, r.bytes_out, r.n_params);
    add_memory_fields(j, r.memory);
    fmt::print("{}\n", json_text(j));
    return;
  }
  fmt::print("{:<28} {:<12} {:<13} {:>10} {:>10}{}\n", "tensor", "shape", "type", "w_err", "out_err",
             compensated_header(r.adapter));
  for (const auto& t : r.tensors)
    fmt::print("{:<28} {:<12} {:<13} {:>10.5f} {:>10}{}\n", t.name, t.shape, t.type, t.weight_error,
               t.output_error >= 0 ? fmt::format("{:.6f}", t.output_error) : "-",
               compensated_cell(r.adapter, t.compensated_error));
  const double mib = 1024.0 * 1024.0;
  fmt::print("size {:.2f} MiB (from {:.2f} MiB), {:.3f} bits per weight, {:.1f} s", double(r.bytes_out) / mib,
             double(r.bytes_in) / mib, bpw, r.seconds);
  if (r.calib_tokens) fmt::print(", {} calibration tokens", r.calib_tokens);
  fmt::print("\n");
  if (r.adapter.rank)
    fmt::print("{}\n", adapter_line(r.adapter, r.bytes_out, r.n_params));
  fmt::print("{}\n", r.memory.line());
  if (r.expert_tensors > 0)
    fmt::print("imatrix data for {} of {} expert tensors ({:.1f}%){}\n", r.expert_tensors_with_data, r.expert_tensors,
               100.0 * double(r.expert_tensors_with_data) / double(r.expert_tensors),
               r.expert_tensors_with_data < r.expert_tensors ? "; the others take importance 1, as in llama-quantize" : "");
  if (!r.uncalibrated.empty())
    fmt::print("{} expert linears saw no calibration token and were quantized by RTN (first: {})\n",
               r.uncalibrated.size(), r.uncalibrated.front());
}

}  // namespace

void add_quantize(CLI::App& app) {
  struct Opts : QuantizeRequest {
    std::string in, out;
    bool no_finite_check = false, json = false;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("quantize", "Quantize a model to GGUF block formats with RTN, GPTQ or AWQ");
  add_path_option(cmd, "input", o->in, "Input model (GGUF, Hugging Face directory, llama2.c)", PathRole::Model)->required();
  add_path_option(cmd, "output", o->out, "Output .gguf file (a directory for int-N group types)", PathRole::Output,
                  OutputKind::Either)->required();
  cmd->add_option("--type", o->type,
                  "File type: " + preset_names() +
                      "; or an int-N group format for GPU engines, int{2,3,4,8}-g{GROUP}|-ch[-asym] (e.g. int4-g128), "
                      "written as a GPTQ safetensors directory");
  cmd->add_option("--target-bpw", o->target_bpw,
                  "Choose each tensor's GGUF type by its measured sensitivity on --calib text so that the file has "
                  "at most this many bits per weight (replaces --type)");
  cmd->add_option("--method", o->method, "rtn (round to nearest), gptq or awq (need --calib)")
      ->capture_default_str()
      ->check(CLI::IsMember({"rtn", "gptq", "awq"}, CLI::ignore_case));
  cmd->add_option("--format", o->format,
                  "Layout of an int-N group checkpoint: gptq (AutoGPTQ), awq (AutoAWQ gemm, 4-bit) or "
                  "compressed-tensors (pack-quantized, 4/8-bit), each with its quantization_config for vLLM")
      ->capture_default_str()
      ->check(CLI::IsMember({"gptq", "awq", "compressed-tensors"}));
  add_path_option(cmd, "--imatrix", o->imatrix, "Importance matrix (llama.cpp imatrix GGUF) for the scale searches",
                  PathRole::Input);
  add_calibration_options(cmd, o->calib, "gptq, awq");
  cmd->add_option("--tensor-type", o->tensor_types,
                  "Override: PATTERN=TYPE (regex on the tensor name), repeatable; with an int-N --type, TYPE is an "
                  "int-N type or f16 (left unquantized)");
  cmd->add_option("--targets", o->targets,
                  "int-N types: quantize only these modules' linears (Hugging Face names: model.layers.3.mlp, or "
                  "re:REGEX matched at the start; repeat for more)");
  cmd->add_option("--ignore", o->ignore, "int-N types: leave these modules' linears unquantized (names as --targets)");
  cmd->add_option("--output-tensor-type", o->output_type, "Type of output.weight");
  cmd->add_option("--token-embedding-type", o->embd_type, "Type of token_embd.weight");
  cmd->add_flag("--keep-output", o->keep_output, "Leave output.weight in its current type");
  cmd->add_flag("--pure", o->pure, "Every quantizable tensor gets the base type (no mix)");
  cmd->add_flag("--allow-requantize", o->allow_requantize, "Allow quantizing already-quantized tensors");
  cmd->add_option("--damp", o->damp, "GPTQ dampening (fraction of mean diag H)")->capture_default_str()->check(damp_fraction());
  cmd->add_flag("--act-order", o->act_order, "GPTQ: columns by decreasing activation energy (desc_act)");
  cmd->add_flag("--clip-search", o->clip_search,
                "RTN: choose each block's clipping ratio by least (importance-weighted) squared error");
  cmd->add_option("--scheme", o->scheme,
                  "w8a8: int8 weights per channel and int8 activations per token (dynamic), written as a "
                  "compressed-tensors int-quantized checkpoint (vLLM's W8A8 int8)");
  cmd->add_option("--smooth", o->smooth, "SmoothQuant's α in [0, 1] before --scheme w8a8 (needs --calib)");
  cmd->add_option("--rotate", o->rotate,
                  "Rotate the residual stream first (QuaRot): hadamard or hadamard:SEED; same function, fewer outliers");
  add_compensate_options(cmd, o->compensate, o->compensate_out, o->out,
                         [o] { return writes_checkpoint_dir(*o); });
  cmd->add_option("--name", o->name, "Model name to record (general.name)");
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  add_threads_option(cmd, o->threads);
  add_finite_check_flag(cmd, o->no_finite_check);
  on_run(cmd, [o] {
    set_num_threads(o->threads);
    QuantizeOptions q = quantize_options(*o, o->out);
    auto m = load_for_compression(o->in, "", o->no_finite_check);
    keep_output_type(q, *o, *m);
    const auto report = quantize_model(*m, o->out, q);
    print_report(report, o->json);
  });
}

}  // namespace lmpress::cli
