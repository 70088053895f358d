// lmpress convert IN OUT [--dtype f32|f16|bf16]: HF <-> GGUF, llama2.c -> both.
#include "commands.h"

#include "compress/convert.h"
#include "core/error.h"

namespace lmpress::cli {

void add_convert(CLI::App& app) {
  struct Opts : ConvertRequest {
    std::string in, out, tokenizer;
    bool no_finite_check = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("convert", "Convert a model between GGUF, Hugging Face and llama2.c formats");
  add_path_option(cmd, "input", o->in, "Input model", PathRole::Model)->required();
  add_path_option(cmd, "output", o->out, "Output: a .gguf file, or a directory for Hugging Face layout", PathRole::Output,
                  OutputKind::Either)->required();
  cmd->add_option("--dtype", o->dtype,
                  "Type of the weight matrices: f32, f16, bf16, or (GGUF, round-to-nearest) q8_0, q4_0, q4_1, q5_0, "
                  "q5_1 (default: keep)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}, CLI::ignore_case));
  cmd->add_option("--format", o->format, "Output format (default: gguf if OUT ends in .gguf, else hf)")
      ->check(CLI::IsMember({"gguf", "hf"}));
  cmd->add_option("--name", o->name, "Model name to record (general.name)");
  cmd->add_option("--split-experts", o->split_experts,
                  "Write a dense llama / qwen3 model as an equivalent mixture of N experts (its feed-forward "
                  "neurons in N slices, all used per token): a trained model in MoE form, for testing MoE paths")
      ->check(CLI::Range(int64_t(2), int64_t(64)));
  cmd->add_option("--experts-used", o->split_experts_used,
                  "With --split-experts: route each token to K of the N experts (a sparse mixture to train with "
                  "finetune; the router starts from each slice's mean gate row)")
      ->check(CLI::Range(int64_t(1), int64_t(64)));
  cmd->add_option("--kv-heads", o->kv_heads,
                  "Pool the key/value heads into N groups (GQA / MQA from MHA, Ainslie et al.); then distil it from "
                  "the original with finetune --teacher")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  add_path_option(cmd, "--tokenizer", o->tokenizer, "Tokenizer file for llama2.c checkpoints", PathRole::Input);
  add_finite_check_flag(cmd, o->no_finite_check);
  on_run(cmd, [o] {
    if (o->split_experts_used > 0 && o->split_experts == 0) fail("--experts-used needs --split-experts");
    if (o->split_experts_used > o->split_experts)
      fail("--experts-used {}: at most the {} experts of --split-experts", o->split_experts_used, o->split_experts);
    lmpress_convert_params p = lmpress_convert_default_params();
    p.dtype = c_str_or_null(o->dtype);
    p.format = c_str_or_null(o->format);
    p.name = c_str_or_null(o->name);
    p.tokenizer_path = c_str_or_null(o->tokenizer);
    p.split_experts = o->split_experts;
    p.split_experts_used = o->split_experts_used;
    p.kv_heads = o->kv_heads;
    p.skip_finite_check = o->no_finite_check;
    api_check(lmpress_convert_model(o->in.c_str(), o->out.c_str(), &p));
    const auto r = api_report();
    fmt::print("wrote {} ({} format, {} tensors)\n", o->out, r["format"].get<std::string>(), r["tensors"].get<size_t>());
  });
}

}  // namespace lmpress::cli
