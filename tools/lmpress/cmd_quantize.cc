// lmpress quantize IN OUT.gguf --type q4_k_m [--method rtn|gptq|awq] [--imatrix F] [--calib F ...]
#include <nlohmann/json.hpp>

#include <filesystem>

#include "commands.h"
#include "compress/quantize_model.h"
#include "core/error.h"
#include "kernels/matmul.h"

namespace lmpress::cli {

namespace {

DType parse_type(const std::string& flag, const std::string& name) {
  const auto t = dtype_from_name(name);
  if (!t) fail("{}: unknown type '{}'", flag, name);
  return *t;
}

void print_report(const QuantizeReport& r, bool json) {
  const double bpw = r.n_params ? double(r.bytes_out) * 8.0 / double(r.n_params) : 0.0;
  if (json) {
    nlohmann::ordered_json tensors = nlohmann::json::array();
    for (const auto& t : r.tensors) {
      nlohmann::ordered_json j{{"name", t.name}, {"shape", t.shape}, {"type", t.type},
                               {"weight_error", t.weight_error}};
      if (t.output_error >= 0) j["output_error"] = t.output_error;
      tensors.push_back(j);
    }
    nlohmann::ordered_json j{{"tensors", tensors},         {"n_params", r.n_params},
                             {"bytes_in", r.bytes_in},     {"bytes_out", r.bytes_out},
                             {"bpw", bpw},                 {"calib_tokens", r.calib_tokens},
                             {"seconds", r.seconds}};
    add_memory_fields(j, r.memory);
    fmt::print("{}\n", json_text(j));
    return;
  }
  fmt::print("{:<28} {:<12} {:<13} {:>10} {:>10}\n", "tensor", "shape", "type", "w_err", "out_err");
  for (const auto& t : r.tensors)
    fmt::print("{:<28} {:<12} {:<13} {:>10.5f} {:>10}\n", t.name, t.shape, t.type, t.weight_error,
               t.output_error >= 0 ? fmt::format("{:.6f}", t.output_error) : "-");
  const double mib = 1024.0 * 1024.0;
  fmt::print("size {:.2f} MiB (from {:.2f} MiB), {:.3f} bits per weight, {:.1f} s", double(r.bytes_out) / mib,
             double(r.bytes_in) / mib, bpw, r.seconds);
  if (r.calib_tokens) fmt::print(", {} calibration tokens", r.calib_tokens);
  fmt::print("\n{}\n", r.memory.line());
}

}  // namespace

void add_quantize(CLI::App& app) {
  struct Opts {
    std::string in, out, type, method = "rtn", imatrix, output_type, embd_type, name;
    std::vector<std::string> tensor_types;
    CalibrationOptions calib;
    double damp = 0.01, target_bpw = 0;
    bool no_finite_check = false, act_order = false, clip_search = false, pure = false, keep_output = false, allow_requantize = false, json = false;
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
  add_path_option(cmd, "--imatrix", o->imatrix, "Importance matrix (llama.cpp imatrix GGUF) for the scale searches",
                  PathRole::Input);
  add_calibration_options(cmd, o->calib, "gptq, awq");
  cmd->add_option("--tensor-type", o->tensor_types, "Override: PATTERN=TYPE (regex on the tensor name), repeatable");
  cmd->add_option("--output-tensor-type", o->output_type, "Type of output.weight");
  cmd->add_option("--token-embedding-type", o->embd_type, "Type of token_embd.weight");
  cmd->add_flag("--keep-output", o->keep_output, "Leave output.weight in its current type");
  cmd->add_flag("--pure", o->pure, "Every quantizable tensor gets the base type (no mix)");
  cmd->add_flag("--allow-requantize", o->allow_requantize, "Allow quantizing already-quantized tensors");
  cmd->add_option("--damp", o->damp, "GPTQ dampening (fraction of mean diag H)")->capture_default_str()->check(damp_fraction());
  cmd->add_flag("--act-order", o->act_order, "GPTQ: columns by decreasing activation energy (desc_act)");
  cmd->add_flag("--clip-search", o->clip_search,
                "RTN: choose each block's clipping ratio by least (importance-weighted) squared error");
  cmd->add_option("--name", o->name, "Model name to record (general.name)");
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  add_threads_option(cmd, o->threads);
  add_finite_check_flag(cmd, o->no_finite_check);
  on_run(cmd, [o] {
    set_num_threads(o->threads);
    QuantizeOptions q;
    if (o->type.empty() == (o->target_bpw == 0)) fail("give either --type or --target-bpw");
    if (o->target_bpw != 0) {
      if (o->calib.file.empty()) fail("--target-bpw measures sensitivity on calibration text: --calib FILE");
      q.target_bpw = o->target_bpw;
      o->type = "f16";  // base plan; every quantizable tensor is then chosen by size
    }
    q.int_group = parse_int_group_type(o->type);
    const auto preset = q.int_group ? find_preset("f16") : find_preset(o->type);
    if (!preset)
      fail("--type '{}': unknown type (known: {}; or int-N group formats such as int4-g128, int3-g64-asym, int8-ch)",
           o->type, preset_names());
    q.mix.preset = *preset;
    if (q.int_group) {
      if (o->out.ends_with(".gguf"))
        fail("{}: int-N group formats are written as a Hugging Face directory in GPTQ layout, not GGUF", o->out);
      // Refused now rather than after the calibration.
      if (std::filesystem::exists(o->out) && !std::filesystem::is_directory(o->out))
        fail("{}: exists and is not a directory (int-N group formats are written as a directory)", o->out);
      check_replaceable_dir("output", o->out);
      if (!o->tensor_types.empty() || !o->output_type.empty() || !o->embd_type.empty() || o->pure || o->keep_output)
        fail("--type {}: mix options (--tensor-type, --output-tensor-type, --token-embedding-type, --pure, "
             "--keep-output) apply to GGUF file types only",
             o->type);
      q.int_group->act_order = o->act_order;
    }
    if (o->clip_search && o->method != "rtn") fail("--clip-search is for --method rtn (GPTQ and AWQ choose their own grids)");
    q.clip_search = o->clip_search;
    q.mix.pure = o->pure;
    for (const auto& spec : o->tensor_types) q.mix.overrides.push_back(parse_tensor_type_override(spec));
    if (!o->output_type.empty()) q.mix.output_type = parse_type("--output-tensor-type", o->output_type);
    if (!o->embd_type.empty()) q.mix.token_embd_type = parse_type("--token-embedding-type", o->embd_type);
    const std::string method = o->method;
    q.method = method == "gptq" ? QuantMethod::GPTQ : method == "awq" ? QuantMethod::AWQ : QuantMethod::RTN;
    if (q.method != QuantMethod::RTN && o->calib.file.empty()) fail("--method {} needs calibration text: --calib FILE", method);
    q.calib = o->calib;
    q.gptq.damp = o->damp;
    q.gptq.act_order = o->act_order;
    q.allow_requantize = o->allow_requantize;
    q.name = o->name;
    if (!o->imatrix.empty()) {
      q.imatrix = read_imatrix(o->imatrix);
      q.mix.has_imatrix = true;
    }
    auto m = load_for_compression(o->in, "", o->no_finite_check);
    if (o->keep_output) {
      const Tensor* out = m->find("output.weight");
      q.mix.output_type = out ? out->dtype : m->tok_embd->dtype;
    }
    const auto report = quantize_model(*m, o->out, q);
    print_report(report, o->json);
  });
}

}  // namespace lmpress::cli
