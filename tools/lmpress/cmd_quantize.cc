// lmpress quantize IN OUT.gguf --type q4_k_m [--method rtn|gptq|awq] [--imatrix F] [--calib F ...]
#include <nlohmann/json.hpp>

#include "commands.h"
#include "compress/quantize_model.h"
#include "compress/report_json.h"
#include "core/error.h"
#include "kernels/matmul.h"

namespace lmpress::cli {

namespace {

void print_report(const nlohmann::ordered_json& r) {
  fmt::print("{:<28} {:<12} {:<13} {:>10} {:>10}{}\n", "tensor", "shape", "type", "w_err", "out_err",
             compensated_header(r));
  for (const auto& t : r["tensors"])
    fmt::print("{:<28} {:<12} {:<13} {:>10.5f} {:>10}{}\n", t["name"].get<std::string>(),
               t["shape"].get<std::string>(), t["type"].get<std::string>(), number(t["weight_error"]),
               t.contains("output_error") ? fmt::format("{:.6f}", number(t["output_error"])) : "-",
               compensated_cell(r, t));
  const double mib = 1024.0 * 1024.0;
  fmt::print("size {:.2f} MiB (from {:.2f} MiB), {:.3f} bits per weight, {:.1f} s",
             double(r["bytes_out"].get<uint64_t>()) / mib, double(r["bytes_in"].get<uint64_t>()) / mib,
             r["bpw"].get<double>(), r["seconds"].get<double>());
  if (const auto calib = r["calib_tokens"].get<int64_t>()) fmt::print(", {} calibration tokens", calib);
  fmt::print("\n");
  if (r.contains("adapter")) fmt::print("{}\n", adapter_line(r));
  fmt::print("{}\n", memory_from_json(r).line());
  if (r.contains("imatrix_expert_coverage")) {
    const auto n = r["imatrix_expert_coverage"]["tensors"].get<int64_t>();
    const auto with = r["imatrix_expert_coverage"]["with_data"].get<int64_t>();
    fmt::print("imatrix data for {} of {} expert tensors ({:.1f}%){}\n", with, n, 100.0 * double(with) / double(n),
               with < n ? "; the others take importance 1, as in llama-quantize" : "");
  }
  if (r.contains("uncalibrated"))
    fmt::print("{} expert linears saw no calibration token and were quantized by RTN (first: {})\n",
               r["uncalibrated"].size(), r["uncalibrated"][0].get<std::string>());
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
  cmd->add_option("--expert-type", o->expert_types,
                  "Mixtures of experts: hot:F=TYPE (or cold:F=TYPE) gives the share F of each layer's experts that "
                  "saw the most (fewest) routed tokens in --imatrix that type; repeatable, first match wins. A layer's "
                  "experts in different types are written as separate tensors, which llama.cpp cannot load");
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
                  "w8a8: int8 weights per channel, w4a8: symmetric int4 weights (int4-ch, or --type int4-gN), both "
                  "with int8 activations per token (dynamic), written as a compressed-tensors int-quantized "
                  "checkpoint (vLLM's W8A8 int8 / W4A8 int)");
  cmd->add_option("--smooth", o->smooth, "SmoothQuant's α in [0, 1] before --scheme w8a8 or w4a8 (needs --calib)");
  cmd->add_option("--rotate", o->rotate,
                  "Rotate the residual stream first (QuaRot): hadamard or hadamard:SEED; same function, fewer outliers; "
                  "with ,r4 also ffn_down's input online (an lmpress file)");
  add_compensate_options(cmd, o->compensate, o->compensate_out, o->out,
                         [o] { return writes_checkpoint_dir(*o); });
  cmd->add_option("--name", o->name, "Model name to record (general.name)");
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  add_threads_option(cmd, o->threads);
  add_finite_check_flag(cmd, o->no_finite_check);
  on_run(cmd, [o] {
    set_num_threads(o->threads);
    lmpress_quantize_params p = lmpress_quantize_default_params();
    p.type = o->type.c_str();  // "" (not NULL): the library names --type and --target-bpw when neither is given
    p.method = o->method.c_str();
    p.format = o->format.c_str();
    p.calib_path = c_str_or_null(o->calib.file);
    p.calib_samples = o->calib.samples;
    p.calib_ctx = o->calib.ctx;
    p.imatrix_path = c_str_or_null(o->imatrix);
    p.damp = o->damp;
    p.act_order = o->act_order;
    p.rotate = c_str_or_null(o->rotate);
    p.scheme = c_str_or_null(o->scheme);
    p.smooth = o->smooth;
    p.compensate = c_str_or_null(o->compensate);
    p.compensate_out = c_str_or_null(o->compensate_out);
    const auto tensor_types = c_strings(o->tensor_types), targets = c_strings(o->targets),
               ignore = c_strings(o->ignore);
    p.tensor_types = tensor_types.data();
    p.n_tensor_types = tensor_types.size();
    const auto expert_types = c_strings(o->expert_types);
    p.expert_types = expert_types.data();
    p.n_expert_types = expert_types.size();
    p.targets = targets.data();
    p.n_targets = targets.size();
    p.ignore = ignore.data();
    p.n_ignore = ignore.size();
    p.target_bpw = o->target_bpw;
    p.output_tensor_type = c_str_or_null(o->output_type);
    p.token_embedding_type = c_str_or_null(o->embd_type);
    p.keep_output = o->keep_output;
    p.pure = o->pure;
    p.allow_requantize = o->allow_requantize;
    p.clip_search = o->clip_search;
    p.name = c_str_or_null(o->name);
    p.skip_finite_check = o->no_finite_check;
    api_check(lmpress_quantize(o->in.c_str(), o->out.c_str(), &p));
    const auto report = api_report();
    if (o->json) fmt::print("{}\n", json_text(report));
    else print_report(report);
  });
}

}  // namespace lmpress::cli
