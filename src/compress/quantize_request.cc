// quantize_options: `lmpress quantize`'s words checked and made into QuantizeOptions.
#include <filesystem>

#include "compress/quantize_model.h"
#include "core/error.h"
#include "core/path_guard.h"

namespace lmpress {

namespace {

DType parse_type(const std::string& flag, const std::string& name) {
  const auto t = dtype_from_name(name);
  if (!t) fail("{}: unknown type '{}'", flag, name);
  return *t;
}

// --tensor-type PATTERN=TYPE for an int-N checkpoint: the linears whose
// canonical name the regex is found in take an int-N type, or stay f16.
IntRule int_tensor_rule(const std::string& spec, bool act_order, IntCheckpoint format) {
  const PatternAndType pt = parse_pattern_and_type(spec);
  IntRule rule;
  rule.what = "--tensor-type " + spec;
  if (pt.type != "f16") {
    rule.spec = parse_int_group_type(pt.type);
    if (!rule.spec)
      fail("--tensor-type '{}': with an int-N --type, TYPE is an int-N type (int8-ch, int4-g64-asym, ...) or f16 "
           "(left unquantized)",
           spec);
    rule.spec->act_order = act_order && rule.spec->group > 0;  // act-order orders groups; a channel has one
    if (format == IntCheckpoint::Awq)
      fail("--tensor-type '{}': AWQ checkpoints hold one format for every linear; per-module formats are written in "
           "GPTQ or compressed-tensors layout (with AWQ, TYPE f16 leaves linears unquantized)",
           spec);
    check_int_checkpoint(format, *rule.spec);
  }
  rule.matches = [re = pt.pattern](const std::string& weight, const std::string&) { return std::regex_search(weight, re); };
  return rule;
}

}  // namespace

QuantizeOptions quantize_options(const QuantizeRequest& r, const std::string& out_path) {
  QuantizeOptions q;
  std::string type = r.type, format = r.format;
  if (!r.scheme.empty()) {
    // int8 activations per token with int8 per-channel weights (W8A8) or symmetric int4 weights per channel or
    // group (W4A8: vLLM's CompressedTensorsW4A8Int reads both strategies).
    const std::string& sch = r.scheme;
    if (sch != "w8a8" && sch != "w4a8")
      fail("--scheme {}: w8a8 (int8 weights per channel) or w4a8 (int4 weights per channel or group), both with int8 "
           "activations per token",
           sch);
    if (sch == "w8a8" && !type.empty() && type != "int8-ch")
      fail("--scheme w8a8 quantizes the weights to int8-ch (per channel); --type {} disagrees", type);
    if (sch == "w4a8" && !type.empty()) {
      const auto t = parse_int_group_type(type);
      if (!t || t->bits != 4 || !t->sym)
        fail("--scheme w4a8 quantizes the weights to symmetric int4, int4-ch (the default) or int4-gN; --type {} "
             "disagrees",
             type);
    }
    if (format != "gptq" && format != "compressed-tensors")
      fail("--scheme {} is written as a compressed-tensors int-quantized checkpoint; --format {} cannot hold it", sch,
           format);
    if (r.target_bpw != 0) fail("--scheme {} and --target-bpw: give one", sch);
    if (r.act_order) fail("--scheme {} with --act-order: int-quantized checkpoints have no weight_g_idx", sch);
    if (type.empty()) type = sch == "w8a8" ? "int8-ch" : "int4-ch";
    format = "compressed-tensors";
    q.act_int8 = true;
  }
  if (r.smooth >= 0) {
    if (r.scheme.empty())
      fail("--smooth {}: SmoothQuant before --scheme w8a8 or w4a8 (for weight-only files: lmpress smooth)", r.smooth);
    if (!(r.smooth <= 1)) fail("--smooth {}: SmoothQuant's migration strength is in [0, 1]", r.smooth);
    if (r.calib.file.empty()) fail("--smooth measures activations on calibration text: --calib FILE");
    q.smooth_alpha = r.smooth;
  }
  if (type.empty() == (r.target_bpw == 0)) fail("give either --type or --target-bpw");
  if (r.target_bpw != 0) {
    if (r.calib.file.empty()) fail("--target-bpw measures sensitivity on calibration text: --calib FILE");
    q.target_bpw = r.target_bpw;
    type = "f16";  // base plan; every quantizable tensor is then chosen by size
  }
  q.int_group = parse_int_group_type(type);
  const auto preset = q.int_group ? find_preset("f16") : find_preset(type);
  if (!preset)
    fail("--type '{}': unknown type (known: {}; or int-N group formats such as int4-g128, int3-g64-asym, int8-ch)",
         type, preset_names());
  q.mix.preset = *preset;
  if (q.int_group) {
    if (out_path.ends_with(".gguf"))
      fail("{}: int-N group formats are written as a Hugging Face directory in GPTQ layout, not GGUF", out_path);
    // Refused now rather than after the calibration.
    if (std::filesystem::exists(out_path) && !std::filesystem::is_directory(out_path))
      fail("{}: exists and is not a directory (int-N group formats are written as a directory)", out_path);
    check_replaceable_dir("output", out_path);
    if (!r.output_type.empty() || !r.embd_type.empty() || r.pure || r.keep_output)
      fail("--type {}: mix options (--output-tensor-type, --token-embedding-type, --pure, --keep-output) apply to GGUF "
           "file types only",
           type);
    q.int_group->act_order = r.act_order;
    q.checkpoint = parse_int_checkpoint(format, "--format");
    check_int_checkpoint(q.checkpoint, *q.int_group);
    q.select = module_selector(r.targets, r.ignore, "quantize --targets", "quantize --ignore");
    for (const auto& spec : r.tensor_types) q.int_rules.push_back(int_tensor_rule(spec, r.act_order, q.checkpoint));
    if (q.act_int8 && !q.int_rules.empty())
      fail("--scheme {} quantizes every linear's activations; per-module formats (--tensor-type) are for weight-only "
           "types",
           r.scheme);
  } else if (format != "gptq") {
    fail("--format {}: checkpoint formats are for int-N group types (--type int4-g128 ...); GGUF types are written as GGUF",
         r.format);
  }
  if (r.method != "rtn" && r.method != "gptq" && r.method != "awq")
    fail("--method '{}': unknown method (rtn, gptq, awq)", r.method);
  if (!q.int_group && (!r.targets.empty() || !r.ignore.empty()))
    fail("--targets/--ignore choose the linears of an int-N checkpoint; GGUF file types keep a tensor unquantized with "
         "--tensor-type PATTERN=f16");
  if (r.clip_search && r.method != "rtn") fail("--clip-search is for --method rtn (GPTQ and AWQ choose their own grids)");
  q.clip_search = r.clip_search;
  q.mix.pure = r.pure;
  if (!q.int_group)
    for (const auto& spec : r.tensor_types) q.mix.overrides.push_back(parse_tensor_type_override(spec));
  if (!r.output_type.empty()) q.mix.output_type = parse_type("--output-tensor-type", r.output_type);
  if (!r.embd_type.empty()) q.mix.token_embd_type = parse_type("--token-embedding-type", r.embd_type);
  q.method = r.method == "gptq" ? QuantMethod::GPTQ : r.method == "awq" ? QuantMethod::AWQ : QuantMethod::RTN;
  if (q.method != QuantMethod::RTN && r.calib.file.empty())
    fail("--method {} needs calibration text: --calib FILE", r.method);
  if (!(r.damp > 0 && r.damp <= 1)) fail("--damp {}: a fraction in (0, 1]", r.damp);
  q.calib = r.calib;
  q.gptq.damp = r.damp;
  q.gptq.act_order = r.act_order;
  q.allow_requantize = r.allow_requantize;
  q.name = r.name;
  if (!r.rotate.empty()) {
    q.rotate = parse_rotate_spec(r.rotate, "--rotate");
    if (q.rotate->down && q.int_group)
      fail("--rotate {}: R4 is applied at run time, which the engines reading {} checkpoints do not do; write a GGUF "
           "type",
           r.rotate, type);
    if (!r.imatrix.empty())
      fail("--imatrix with --rotate: the importance matrix was measured on the unrotated model (its channels are not the "
           "rotated model's); calibrate GPTQ or AWQ with --calib instead");
  }
  if (!r.compensate_out.empty() && r.compensate.empty()) fail("--compensate-out without --compensate rank=R");
  if (!r.compensate.empty()) {
    if (q.act_int8)
      fail("--compensate with --scheme {}: a LoRA adapter would run on unquantized activations", r.scheme);
    if (r.calib.file.empty()) fail("--compensate measures each linear's inputs on calibration text: --calib FILE");
    q.compensate = parse_compensate_spec(r.compensate, out_path, r.compensate_out, q.int_group.has_value());
    if (q.int_group) check_replaceable_dir("--compensate-out", q.compensate->adapter_path, "adapter_config.json");
  }
  if (!r.imatrix.empty()) {
    q.imatrix = read_imatrix(r.imatrix);
    q.mix.has_imatrix = true;
  }
  if (!r.expert_types.empty()) {
    if (q.int_group)
      fail("--expert-type is for GGUF file types: vLLM runs a layer's experts as one fused layer of one format");
    if (r.target_bpw > 0) fail("--expert-type with --target-bpw: the type search gives a layer's experts one type");
    if (!q.imatrix) fail("--expert-type ranks experts by the tokens routed to them: pass --imatrix FILE");
    for (const auto& spec : r.expert_types) q.mix.expert_types.push_back(parse_expert_type_rule(spec));
    for (const auto& [name, e] : q.imatrix->entries) q.mix.expert_tokens[name] = e.count;
  }
  return q;
}

bool writes_checkpoint_dir(const QuantizeRequest& r) {
  return parse_int_group_type(r.type).has_value() || !r.scheme.empty();
}

void keep_output_type(QuantizeOptions& q, const QuantizeRequest& r, const Model& m) {
  if (!r.keep_output) return;
  const Tensor* out = m.find("output.weight");
  q.mix.output_type = out ? out->dtype : m.tok_embd->dtype;
}

}  // namespace lmpress
