// lmpress perplexity MODEL -f TEXT --ctx N [--chunks K] [--protocol llama.cpp|gptq].
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "eval/perplexity.h"
#include "kernels/matmul.h"
#include "model/model.h"
#include "model/repack.h"

namespace lmpress::cli {

void add_perplexity(CLI::App& app) {
  struct Opts {
    std::vector<std::string> lora;
    std::string model, tokenizer, file, protocol = "llama.cpp";
    int64_t ctx = 512, chunks = -1, batch = 2048, recompute = 0;
    int threads = 0;
    bool json = false;
    CacheOptions kv;
    EarlyExitOptions early_exit;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("perplexity", "Perplexity of a text file (llama.cpp's or the GPTQ papers' protocol)");
  add_path_option(cmd, "model", o->model, "Model", PathRole::Model)->required();
  add_path_option(cmd, "-f,--file", o->file, "Text file", PathRole::Input)->required();
  cmd->add_option("-c,--ctx", o->ctx, "Window size in tokens")->capture_default_str()->check(CLI::Range(4, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "Evaluate only the first K windows (-1: all)")->capture_default_str()->check(chunk_count());
  cmd->add_option("-b,--batch", o->batch, "Tokens per forward batch")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--protocol", o->protocol,
                  "llama.cpp: second half of each window scored, BOS per window; gptq: lines joined with \"\\n\\n\", "
                  "every token of each window scored")
      ->capture_default_str();
  add_lora_option(cmd, o->lora);
  add_path_option(cmd, "--tokenizer", o->tokenizer, "Tokenizer file for llama2.c checkpoints", PathRole::Input);
  cmd->add_flag("--json", o->json, "Print JSON");
  add_threads_option(cmd, o->threads);
  add_cache_options(cmd, o->kv);
  add_kv_policy_option(cmd, o->kv);
  add_early_exit_options(cmd, o->early_exit);
  cmd->add_option("--recompute-window", o->recompute,
                  "Score each token from scratch after the W-1 tokens before it (the sliding window with "
                  "re-computation that eviction policies are compared with; slow)");
  on_run(cmd, [o] {
    set_num_threads(o->threads);
    auto m = load_for_inference(o->model, o->tokenizer, o->lora);
    if (!m->tokenizer) fail("{}: the model has no tokenizer", m->path);
    const PplProtocol protocol = parse_ppl_protocol(o->protocol);
    std::string text = read_input_text(o->file);
    if (protocol == PplProtocol::Gptq) text = gptq_protocol_text(text);
    auto tokens = m->tokenizer->encode(text, true, false);
    if (o->ctx > m->cfg.ctx_len && !o->json)
      fmt::print(stderr, "warning: ctx {} exceeds the model's trained context {}\n", o->ctx, m->cfg.ctx_len);
    PerplexityOptions po{o->ctx, o->chunks, o->batch, protocol, o->kv.spec()};
    po.policy = o->kv.eviction();
    po.recompute_window = o->recompute;
    po.early_exit = o->early_exit.resolve(m->cfg);
    if (!o->json) fmt::print("{} tokens; calculating perplexity over windows of {}\n", tokens.size(), o->ctx);
    auto r = perplexity(*m, tokens, po, [&](int64_t i, double ppl) {
      if (!o->json) {
        fmt::print("[{}]{:.4f},", i + 1, ppl);
        std::fflush(stdout);
      }
    });
    if (o->json) {
      nlohmann::ordered_json j{{"model", m->path}, {"file", o->file}, {"protocol", o->protocol}, {"ctx", o->ctx}, {"chunks", r.n_chunks},
                               {"tokens", r.n_tokens_total}, {"tokens_scored", r.n_tokens_scored},
                               {"ppl", r.ppl}, {"ppl_stderr", r.ppl_stderr}, {"mean_nll", r.mean_nll},
                               {"seconds", r.seconds}, {"running_ppl", r.running_ppl}};
      if (po.early_exit.active()) j["early_exit"] = early_exit_json(po.early_exit, r.early_exit);
      fmt::print("{}\n", json_text(j));
    } else {
      fmt::print("\nFinal estimate: PPL = {:.4f} +/- {:.5f}\n", r.ppl, r.ppl_stderr);
      fmt::print("{} chunks, {} tokens scored, {:.2f} s ({:.1f} tokens/s)\n", r.n_chunks, r.n_tokens_scored, r.seconds,
                 double(r.n_chunks * o->ctx) / r.seconds);
      if (po.early_exit.active()) fmt::print("{}\n", early_exit_summary(po.early_exit, r.early_exit));
    }
  });
}

}  // namespace lmpress::cli
