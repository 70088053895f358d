// lmpress convert IN OUT [--dtype f32|f16|bf16]: HF <-> GGUF, llama2.c -> both.
#include "commands.h"
#include <algorithm>
#include <cctype>

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
  cmd->add_option("--kv-heads", o->kv_heads,
                  "Pool the key/value heads into N groups (GQA / MQA from MHA, Ainslie et al.); then distil it from "
                  "the original with finetune --teacher")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  add_path_option(cmd, "--tokenizer", o->tokenizer, "Tokenizer file for llama2.c checkpoints", PathRole::Input);
  add_finite_check_flag(cmd, o->no_finite_check);
  on_run(cmd, [o] {
    auto m = load_for_compression(o->in, o->tokenizer, o->no_finite_check);
    std::transform(o->dtype.begin(), o->dtype.end(), o->dtype.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if (o->kv_heads > 0) pool_kv_heads(*m, o->kv_heads);
    if (o->split_experts > 0) split_into_experts(*m, o->split_experts);
    const std::string fmt = convert_model(*m, o->out, *o);
    fmt::print("wrote {} ({} format, {} tensors)\n", o->out, fmt, m->tensors.size());
  });
}

}  // namespace lmpress::cli
