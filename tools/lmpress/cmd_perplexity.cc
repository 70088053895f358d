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
    const std::string text = read_input_text(o->file);
    const ApiModel m = api_load_model(o->model, o->tokenizer, o->lora);
    lmpress_model_info info;
    api_check(lmpress_model_get_info(m.get(), &info));
    if (o->ctx > info.n_ctx_train && !o->json)
      fmt::print(stderr, "warning: ctx {} exceeds the model's trained context {}\n", o->ctx, info.n_ctx_train);
    lmpress_perplexity_params p = lmpress_perplexity_default_params();
    p.n_ctx = o->ctx;
    p.n_chunks = o->chunks;
    p.n_batch = o->batch;
    p.protocol = o->protocol.c_str();
    p.cache = o->kv.c_params();
    p.recompute_window = o->recompute;
    p.early_exit = o->early_exit.c_params();
    if (!o->json) {
      fmt::print("calculating perplexity over windows of {}\n", o->ctx);
      p.on_chunk = [](int64_t i, double ppl, void*) {
        fmt::print("[{}]{:.4f},", i + 1, ppl);
        std::fflush(stdout);
        return true;
      };
    }
    lmpress_perplexity_result r;
    api_check(lmpress_perplexity(m.get(), text.data(), text.size(), &p, &r));
    nlohmann::ordered_json report = api_report();
    if (o->json) {
      nlohmann::ordered_json j{{"model", o->model}, {"file", o->file}};
      j.update(report);
      fmt::print("{}\n", json_text(j));
      return;
    }
    fmt::print("\nFinal estimate: PPL = {:.4f} +/- {:.5f}\n", r.ppl, r.ppl_stderr);
    const double seconds = report["seconds"].get<double>();
    fmt::print("{} chunks, {} tokens scored (of {}), {:.2f} s ({:.1f} tokens/s)\n", r.n_chunks, r.n_tokens_scored,
               report["tokens"].get<int64_t>(), seconds, double(r.n_chunks * o->ctx) / seconds);
    if (report.contains("early_exit")) fmt::print("{}\n", early_exit_summary(report["early_exit"]));
  });
}

}  // namespace lmpress::cli
