// lmpress generate MODEL -p TEXT -n N: streams tokens, then prints speed.
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "kernels/matmul.h"
#include "model/model.h"
#include "model/repack.h"
#include "runtime/generate.h"
#include "runtime/speculative.h"

namespace lmpress::cli {

void add_generate(CLI::App& app) {
  struct Opts {
    std::vector<std::string> lora;
    std::string model, tokenizer, prompt, file;
    GenerateOptions g;
    SpecOptions spec;
    EarlyExitOptions early_exit;
    CacheOptions kv;
    int threads = 0;
    bool json = false, ignore_eos = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("generate", "Generate text from a prompt");
  add_path_option(cmd, "model", o->model, "Model", PathRole::Model)->required();
  auto* p = cmd->add_option("-p,--prompt", o->prompt, "Prompt text");
  add_path_option(cmd, "-f,--file", o->file, "Read the prompt from a file", PathRole::Input)->excludes(p);
  cmd->add_option("-n,--n-predict", o->g.n_predict, "Tokens to generate")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-c,--ctx", o->g.n_ctx, "Context size (0: the model's)")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--temp", o->g.sampling.temperature, "Temperature (0: greedy)")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", o->g.sampling.top_k, "Top-k (0: off)")->capture_default_str()->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--top-p", o->g.sampling.top_p, "Top-p (1: off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--min-p", o->g.sampling.min_p, "Min-p (0: off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--repeat-penalty", o->g.sampling.repeat_penalty, "Repetition penalty over the last --repeat-last-n tokens (1: off)")->capture_default_str()->check(CLI::Range(0.01, 100.0));
  cmd->add_option("--repeat-last-n", o->g.sampling.penalty_last_n, "Tokens the penalties look back over (-1: all)")->capture_default_str()->check(CLI::Range(-1, 1 << 20));
  cmd->add_option("--presence-penalty", o->g.sampling.presence_penalty, "Presence penalty (0: off)")->capture_default_str()->check(CLI::Range(-2.0, 2.0));
  cmd->add_option("--frequency-penalty", o->g.sampling.frequency_penalty, "Frequency penalty (0: off)")->capture_default_str()->check(CLI::Range(-2.0, 2.0));
  cmd->add_option("-s,--seed", o->g.sampling.seed, "Random seed")->capture_default_str();
  add_lora_option(cmd, o->lora);
  add_path_option(cmd, "--tokenizer", o->tokenizer, "Tokenizer file for llama2.c checkpoints", PathRole::Input);
  add_spec_options(cmd, o->spec);
  add_early_exit_options(cmd, o->early_exit);
  add_cache_options(cmd, o->kv);
  add_kv_policy_option(cmd, o->kv);
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating after end-of-sequence");
  cmd->add_flag("--json", o->json, "Print JSON instead of streaming");
  add_threads_option(cmd, o->threads);
  on_run(cmd, [o] {
    set_num_threads(o->threads);
    const std::string prompt = o->file.empty() ? o->prompt : read_input_text(o->file);
    const ApiModel m = api_load_model(o->model, o->tokenizer, o->lora);
    lmpress_generate_params p = lmpress_generate_default_params();
    p.n_predict = o->g.n_predict;
    p.n_ctx = o->g.n_ctx;
    p.ignore_eos = o->ignore_eos;
    const SamplerOptions& so = o->g.sampling;
    p.sampling.temperature = so.temperature;
    p.sampling.top_k = so.top_k;
    p.sampling.top_p = so.top_p;
    p.sampling.min_p = so.min_p;
    p.sampling.seed = so.seed;
    p.sampling.repeat_penalty = so.repeat_penalty;
    p.sampling.frequency_penalty = so.frequency_penalty;
    p.sampling.presence_penalty = so.presence_penalty;
    p.sampling.penalty_last_n = so.penalty_last_n;
    p.cache = o->kv.c_params();
    p.spec.type = c_str_or_null(o->spec.type);
    p.spec.draft_max = o->spec.draft_max;
    p.spec.draft_min = o->spec.draft_min;
    p.spec.p_min = o->spec.p_min;
    p.spec.calib_path = c_str_or_null(o->spec.calib);
    p.early_exit = o->early_exit.c_params();
    // The prompt is echoed with the first token (once the options have passed
    // the library's checks), or at the end when none came.
    struct Stream {
      const std::string& prompt;
      bool print;
      bool prompt_shown = false;
      std::string text;
      void echo(const char* piece, size_t n) {
        if (!print) return;
        if (!prompt_shown) fmt::print("{}", prompt);
        prompt_shown = true;
        std::fwrite(piece, 1, n, stdout);
        std::fflush(stdout);
      }
    } stream{prompt, !o->json, false, {}};
    p.user_data = &stream;
    p.on_token = [](int32_t, const char* piece, size_t n, void* user) {
      auto& st = *static_cast<Stream*>(user);
      st.text.append(piece, n);
      st.echo(piece, n);
      return true;
    };
    lmpress_generate_result r;
    api_check(lmpress_generate(m.get(), prompt.c_str(), &p, &r));
    if (!stream.prompt_shown) stream.echo("", 0);
    const nlohmann::ordered_json report = api_report();
    if (report.contains("spec") && report["spec"].contains("skip_ranking"))
      fmt::print(stderr, "{}{}\n", o->json ? "" : "\n", report["spec"]["skip_ranking"].get<std::string>());
    if (o->json) {
      nlohmann::ordered_json j{{"prompt", prompt}, {"text", stream.text}};
      j.update(report);
      // Sampled byte tokens can end the text inside a UTF-8 sequence (or make
      // an invalid one): such bytes are printed as U+FFFD.
      fmt::print("{}\n", json_text(j));
      return;
    }
    if (r.stop_reason == LMPRESS_STOP_CONTEXT) {
      lmpress_model_info info;
      api_check(lmpress_model_get_info(m.get(), &info));
      std::fflush(stdout);
      fmt::print(stderr, "\nnote: generation stopped after {} tokens: the context of {} tokens is full (--ctx)\n",
                 r.n_generated, o->g.n_ctx > 0 ? o->g.n_ctx : info.n_ctx_train);
    }
    const auto& kv = report["kv_cache"];
    const std::string policy = kv["policy"].get<std::string>();
    fmt::print("\n\nprompt: {} tokens, {:.1f} tokens/s; generation: {} tokens, {:.1f} tokens/s\n", r.n_prompt,
               report["prompt_tokens_per_s"].get<double>(), r.n_generated, report["gen_tokens_per_s"].get<double>());
    fmt::print("KV cache: {}, {:.1f} bytes per token, {:.2f} MiB{}\n", kv["name"].get<std::string>(),
               kv["bytes_per_token"].get<double>(), double(kv["bytes"].get<uint64_t>()) / (1 << 20),
               policy != "none" ? ", eviction " + policy : std::string());
    if (report.contains("spec")) fmt::print("{}\n", spec_summary(report["spec"]));
    if (report.contains("early_exit")) fmt::print("{}\n", early_exit_summary(report["early_exit"]));
  });
}

}  // namespace lmpress::cli
