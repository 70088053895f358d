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
    std::string prompt = o->file.empty() ? o->prompt : read_input_text(o->file);
    auto m = load_for_inference(o->model, o->tokenizer, o->lora);
    o->g.stop_at_eos = !o->ignore_eos;
    o->g.kv = o->kv.spec();
    o->g.policy = o->kv.eviction();
    o->g.early_exit = o->early_exit.resolve(m->cfg);
    std::unique_ptr<DraftSource> source;
    std::unique_ptr<Drafter> drafter;
    if (!o->spec.type.empty()) {
      const int64_t n_ctx = o->g.n_ctx > 0 ? o->g.n_ctx : m->cfg.ctx_len;
      if (const std::string chose = resolve_spec(o->spec, *m, n_ctx); !chose.empty()) fmt::print(stderr, "{}\n", chose);
      source = std::make_unique<DraftSource>(o->spec, *m, n_ctx);
      drafter = source->make(o->g.sampling);
      o->g.drafter = drafter.get();
      o->g.draft_max = o->spec.draft_max;
      o->g.draft_min = o->spec.draft_min;
    }
    std::string text;
    if (!o->json) {
      fmt::print("{}", prompt);
      std::fflush(stdout);
    }
    auto s = generate(*m, prompt, o->g, [&](const std::string& piece) {
      text += piece;
      if (!o->json) {
        fmt::print("{}", piece);
        std::fflush(stdout);
      }
    });
    if (o->json) {
      nlohmann::ordered_json j{{"prompt", prompt}, {"text", text}, {"tokens", s.tokens},
                               {"n_prompt", s.n_prompt}, {"n_generated", s.n_generated},
                               {"stopped", stop_reason_name(s.stopped)},
                               {"prompt_tokens_per_s", s.prompt_tps()}, {"gen_tokens_per_s", s.gen_tps()},
                               {"kv_cache", {{"type_k", kv_type_name(o->g.kv.k)}, {"type_v", kv_type_name(o->g.kv.v)},
                                             {"bytes_per_token", s.cache_bytes_per_token},
                                             {"bytes", s.cache_bytes},
                                             {"policy", kv_policy_name(o->g.policy)}}}};
      if (o->g.drafter) j["spec"] = spec_json(o->spec, s.spec);
      if (o->g.early_exit.active()) j["early_exit"] = early_exit_json(o->g.early_exit, s.early_exit);
      // Sampled byte tokens can end the text inside a UTF-8 sequence (or make
      // an invalid one): such bytes are printed as U+FFFD.
      fmt::print("{}\n", json_text(j));
      return;
    }
    if (s.stopped == StopReason::Context) {
      std::fflush(stdout);
      fmt::print(stderr, "\nnote: generation stopped after {} tokens: the context of {} tokens is full (--ctx)\n",
                 s.n_generated, o->g.n_ctx > 0 ? o->g.n_ctx : m->cfg.ctx_len);
    }
    fmt::print("\n\nprompt: {} tokens, {:.1f} tokens/s; generation: {} tokens, {:.1f} tokens/s\n", s.n_prompt,
               s.prompt_tps(), s.n_generated, s.gen_tps());
    fmt::print("KV cache: {}, {:.1f} bytes per token, {:.2f} MiB{}\n", kv_spec_name(o->g.kv), s.cache_bytes_per_token,
               double(s.cache_bytes) / (1 << 20),
               o->g.policy.active() ? ", eviction " + kv_policy_name(o->g.policy) : std::string());
    if (o->g.drafter) fmt::print("{}\n", spec_summary(o->spec, s.spec));
    if (o->g.early_exit.active()) fmt::print("{}\n", early_exit_summary(o->g.early_exit, s.early_exit));
  });
}

}  // namespace lmpress::cli
