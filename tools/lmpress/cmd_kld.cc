// lmpress kld BASE CANDIDATE -f TEXT --ctx N: KL divergence and token
// statistics of a candidate against its base, printed in llama-perplexity
// --kl-divergence's layout. Or in two steps:
//   lmpress kld BASE -f TEXT --ctx N --save-base base.kld [--top-k K]
//   lmpress kld --base-logits base.kld CANDIDATE
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "eval/kld.h"
#include "eval/kld_base.h"
#include "kernels/matmul.h"
#include "model/model.h"
#include "model/repack.h"

namespace lmpress::cli {

namespace {

nlohmann::ordered_json vu(const ValueUnc& v) { return {{"value", v.value}, {"unc", v.unc}}; }

std::string pct_label(double f) {
  if (f == 1.0) return "Maximum";
  if (f == 0.0) return "Minimum";
  if (f == 0.5) return "Median ";
  return fmt::format("{:>4.1f}%  ", 100.0 * f);
}

void print_text(const KldResult& r) {
  fmt::print("====== Perplexity statistics ======\n");
  fmt::print("Mean PPL(Q)                   : {:10.6f} ± {:10.6f}\n", r.ppl.value, r.ppl.unc);
  fmt::print("Mean PPL(base)                : {:10.6f} ± {:10.6f}\n", r.ppl_base.value, r.ppl_base.unc);
  fmt::print("Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2f}%\n", 100.0 * r.ln_ppl_correlation);
  fmt::print("Mean ln(PPL(Q)/PPL(base))     : {:10.6f} ± {:10.6f}\n", r.ln_ppl_ratio.value, r.ln_ppl_ratio.unc);
  fmt::print("Mean PPL(Q)/PPL(base)         : {:10.6f} ± {:10.6f}\n", r.ppl_ratio.value, r.ppl_ratio.unc);
  fmt::print("Mean PPL(Q)-PPL(base)         : {:10.6f} ± {:10.6f}\n\n", r.ppl_diff.value, r.ppl_diff.unc);
  fmt::print("====== KL divergence statistics ======\n");
  fmt::print("Mean    KLD: {:10.6f} ± {:10.6f}\n", r.kld.value, r.kld.unc);
  for (const auto& [f, v] : r.kld_quantiles) fmt::print("{} KLD: {:10.6f}\n", pct_label(f), v);
  fmt::print("\n====== Token probability statistics ======\n");
  fmt::print("Mean    Δp: {:6.3f} ± {:5.3f} %\n", 100.0 * r.p_diff.value, 100.0 * r.p_diff.unc);
  for (const auto& [f, v] : r.p_diff_quantiles) fmt::print("{} Δp: {:6.3f}%\n", pct_label(f), 100.0 * v);
  fmt::print("RMS Δp    : {:6.3f} ± {:5.3f} %\n", 100.0 * r.rms_p_diff.value, 100.0 * r.rms_p_diff.unc);
  fmt::print("Same top p: {:6.3f} ± {:5.3f} %\n", 100.0 * r.same_top.value, 100.0 * r.same_top.unc);
  if (r.top_k_mass >= 0)
    fmt::print("\nThe saved top-k logits hold {:.2f}% of the base's probability: KLD is that of the distributions\n"
               "coarsened to {{top k, rest}}, a lower bound (raise --top-k when this is far from 100%).\n",
               100.0 * r.top_k_mass);
}

}  // namespace

void add_kld(CLI::App& app) {
  struct Opts {
    std::vector<std::string> models;
    std::string file, save_base, base_logits;
    int64_t ctx = 512, chunks = -1, batch = 2048, top_k = 256;
    int threads = 0;
    bool json = false;
    CacheOptions kv, base_kv;
    EarlyExitOptions early_exit;  // the candidate's
    std::vector<std::string> lora;  // the candidate's
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("kld", "KL divergence of a candidate model from its base (llama.cpp protocol)");
  add_path_option(cmd, "models", o->models, "BASE CANDIDATE; BASE with --save-base; CANDIDATE with --base-logits",
                  PathRole::Model)
      ->required()
      ->expected(1, 2);
  add_path_option(cmd, "-f,--file", o->file, "Text file (not with --base-logits: the saved file has the tokens)", PathRole::Input);
  add_path_option(cmd, "--save-base", o->save_base, "Evaluate BASE and save its top-k logits to this file",
                  PathRole::Output);
  cmd->add_option("--top-k", o->top_k, "Logits per token kept by --save-base")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  add_path_option(cmd, "--base-logits", o->base_logits, "Score CANDIDATE against a file from --save-base",
                  PathRole::Input)
      ->excludes("--save-base");
  cmd->add_option("-c,--ctx", o->ctx, "Window size in tokens")->capture_default_str()->check(CLI::Range(4, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "Evaluate only the first K windows (-1: all)")->capture_default_str()->check(chunk_count());
  cmd->add_option("-b,--batch", o->batch, "Tokens per forward batch")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_flag("--json", o->json, "Print JSON");
  add_cache_options(cmd, o->kv);
  add_kv_policy_option(cmd, o->kv);
  add_cache_options(cmd, o->base_kv, "base-");
  add_early_exit_options(cmd, o->early_exit);
  add_lora_option(cmd, o->lora);
  add_threads_option(cmd, o->threads);
  on_run(cmd, [o] {
    set_num_threads(o->threads);
    const size_t want = o->save_base.empty() && o->base_logits.empty() ? 2 : 1;
    if (!o->lora.empty() && !o->save_base.empty()) fail("kld: --lora adapts the candidate; --save-base evaluates only BASE");
    if (o->models.size() != want)
      fail("kld: expected {} ({} given)",
           want == 2 ? "BASE and CANDIDATE" : !o->save_base.empty() ? "only BASE with --save-base"
                                                                     : "only CANDIDATE with --base-logits",
           o->models.size());
    KldResult r;
    int64_t kv_dim = 0;  // the candidate's, for its cache's bits per value
    EarlyExit early_exit;
    if (!o->base_logits.empty()) {
      if (!o->file.empty()) fail("kld: --base-logits takes the text from the saved file; drop -f");
      auto cand = load_for_inference(o->models[0], "", o->lora);
      kv_dim = cand->cfg.kv_dim();
      early_exit = o->early_exit.resolve(cand->cfg);
      r = kl_divergence_saved(o->base_logits, *cand, o->batch, o->kv.spec(), o->kv.eviction(), early_exit);
    } else {
      if (o->file.empty()) fail("kld: -f TEXT is required");
      auto base = load_for_inference(o->models[0]);
      if (!base->tokenizer) fail("{}: the model has no tokenizer", base->path);
      const auto tokens = base->tokenizer->encode(read_input_text(o->file), true, false);
      PerplexityOptions po{o->ctx, o->chunks, o->batch};
      po.kv = o->kv.spec();
      po.policy = o->kv.eviction();
      po.base_kv = o->base_kv.spec();
      po.base_kv.rotate = po.kv.rotate;
      po.base_kv.group = po.kv.group;
      po.base_kv.residual = po.kv.residual;
      if (!o->save_base.empty()) {
        save_kld_base(*base, tokens, po, o->top_k, o->save_base);
        fmt::print("saved the base's top-{} logits to {}\n", o->top_k, o->save_base);
        return;
      }
      auto cand = load_for_inference(o->models[1], "", o->lora);
      kv_dim = cand->cfg.kv_dim();
      early_exit = po.early_exit = o->early_exit.resolve(cand->cfg);
      r = kl_divergence(*base, *cand, tokens, po);
    }
    if (!o->json) {
      fmt::print("{} chunks, {} tokens scored\n\n", r.n_chunks, r.n_tokens);
      print_text(r);
      if (early_exit.active()) fmt::print("\n{}\n", early_exit_summary(early_exit_json(early_exit, r.early_exit)));
      return;
    }
    nlohmann::ordered_json kq = nlohmann::json::object(), pq = nlohmann::json::object();
    for (const auto& [f, v] : r.kld_quantiles) kq[fmt::format("{}", f)] = v;
    for (const auto& [f, v] : r.p_diff_quantiles) pq[fmt::format("{}", f)] = v;
    nlohmann::ordered_json j{{"n_chunks", r.n_chunks},        {"n_tokens", r.n_tokens},
                             {"ppl", vu(r.ppl)},              {"ppl_base", vu(r.ppl_base)},
                             {"ln_ppl_correlation", r.ln_ppl_correlation},
                             {"ln_ppl_ratio", vu(r.ln_ppl_ratio)}, {"ppl_ratio", vu(r.ppl_ratio)},
                             {"ppl_diff", vu(r.ppl_diff)},    {"kld", vu(r.kld)},
                             {"kld_quantiles", kq},           {"p_diff", vu(r.p_diff)},
                             {"p_diff_quantiles", pq},        {"rms_p_diff", vu(r.rms_p_diff)},
                             {"same_top", vu(r.same_top)}};
    if (r.top_k_mass >= 0) j["top_k_mass"] = r.top_k_mass;
    if (early_exit.active()) j["early_exit"] = early_exit_json(early_exit, r.early_exit);
    const KvCacheSpec kv = o->kv.spec();
    j["kv_cache"] = {{"type_k", kv_type_name(kv.k)}, {"type_v", kv_type_name(kv.v)}, {"bits_per_value", kv.bits_per_value(kv_dim)}};
    fmt::print("{}\n", json_text(j));
  });
}

}  // namespace lmpress::cli
