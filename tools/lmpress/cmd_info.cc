// lmpress info MODEL: architecture, parameters, tensor table, tokenizer.
#include <nlohmann/json.hpp>

#include "commands.h"
#include "model/cost.h"
#include "model/model.h"

namespace lmpress::cli {

void add_info(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer;
    int64_t ctx = 0;
    CacheOptions kv;
    bool json = false, no_tensors = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("info", "Show a model's architecture, tensors and tokenizer");
  add_path_option(cmd, "model", o->model, "GGUF file, Hugging Face directory, llama2.c .bin or cached ORG/NAME", PathRole::Model)->required();
  add_path_option(cmd, "--tokenizer", o->tokenizer, "Tokenizer file for llama2.c checkpoints", PathRole::Input);
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->add_flag("--no-tensors", o->no_tensors, "Omit the tensor table");
  cmd->add_option("-c,--ctx", o->ctx, "Context length the per-token cost is given at (0: the model's)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 24));
  add_cache_options(cmd, o->kv);
  on_run(cmd, [o] {
    auto m = load_model(o->model, o->tokenizer);
    const auto& c = m->cfg;
    const double bpw = 8.0 * double(m->n_bytes()) / double(m->n_params());
    const Vocab* v = m->tokenizer ? &m->tokenizer->vocab() : nullptr;
    const KvCacheSpec kv = o->kv.spec();
    check_kv_spec(kv, c.head_dim);
    const TokenCost cost = token_cost(*m, o->ctx > 0 ? o->ctx : c.ctx_len, kv);
    if (o->json) {
      nlohmann::ordered_json j;
      j["path"] = m->path;
      j["format"] = m->format;
      j["architecture"] = c.arch;
      j["n_params"] = m->n_params();
      j["n_bytes"] = m->n_bytes();
      j["bits_per_weight"] = bpw;
      j["config"] = {{"vocab_size", c.n_vocab},       {"hidden_size", c.dim},        {"num_layers", c.n_layers},
                     {"num_heads", c.n_heads},        {"num_kv_heads", c.n_kv_heads}, {"head_dim", c.head_dim},
                     {"intermediate_size", c.ffn_dim}, {"context_length", c.ctx_len}, {"rms_norm_eps", c.rms_eps},
                     {"rope_theta", c.rope_theta},    {"rope_scaling", c.rope_scaling},
                     {"tied_embeddings", c.tied_embeddings}, {"qkv_bias", c.qkv_bias}};
      if (c.sliding_window > 0) {
        j["config"]["sliding_window"] = c.sliding_window;
        std::vector<int64_t> sliding;
        for (int64_t l = 0; l < c.n_layers; l++)
          if (c.window(l) > 0) sliding.push_back(l);
        j["config"]["sliding_layers"] = sliding;
      }
      if (c.moe()) {
        j["config"]["num_experts"] = c.n_experts;
        j["config"]["num_experts_per_tok"] = c.n_experts_used;
        j["config"]["expert_intermediate_size"] = c.expert_ffn;
        j["config"]["norm_topk_prob"] = c.expert_norm;
        if (c.shared_ffn > 0) j["config"]["shared_expert_intermediate_size"] = c.shared_ffn;
        if (c.n_dense_lead > 0) j["config"]["first_k_dense_replace"] = c.n_dense_lead;
      }
      if (c.attn_softcap > 0) j["config"]["attn_logit_softcapping"] = c.attn_softcap;
      if (c.final_softcap > 0) j["config"]["final_logit_softcapping"] = c.final_softcap;
      if (!m->rotation.empty()) j["rotation"] = m->rotation;
      if (c.down_rotation) j["online_rotation"] = {{"site", "ffn_down"}, {"size", c.down_rotation->size()},
                                                   {"seed", c.down_rotation->seed()}};
      if (c.act_int8) j["activations"] = "int8-token";
      if (!c.uniform()) {
        // Per-layer sizes (non-uniform structured pruning); the scalars above are the maxima.
        j["config"]["layer_heads"] = c.layer_heads;
        j["config"]["layer_kv_heads"] = c.layer_kv_heads;
        j["config"]["layer_ffn"] = c.layer_ffn;
      }
      j["per_token"] = {{"context", cost.ctx},
                        {"macs", cost.macs()},
                        {"linear_macs", cost.linear_macs},
                        {"attention_macs", cost.attention_macs},
                        {"flops", cost.flops()},
                        {"weight_bytes", cost.weight_bytes},
                        {"kv_cache", kv_spec_name(kv)},
                        {"kv_bytes_per_position", cost.kv_bytes_per_position},
                        {"kv_bytes_read", cost.kv_bytes_read()}};
      if (v)
        j["tokenizer"] = {{"model", v->model}, {"pre", v->pre}, {"n_tokens", v->size()}, {"n_merges", v->merges.size()},
                          {"bos", v->bos}, {"eos", v->eos}, {"add_bos", v->add_bos}};
      if (!o->no_tensors) {
        auto arr = nlohmann::ordered_json::array();
        for (const auto& t : m->tensors)
          arr.push_back({{"name", t.name}, {"shape", t.shape}, {"dtype", dtype_name(t.dtype)}, {"bytes", t.nbytes}});
        j["tensors"] = arr;
      }
      fmt::print("{}\n", json_text(j));
      return;
    }
    fmt::print("model:         {} ({})\n", m->path, m->format);
    fmt::print("architecture:  {}\n", c.arch);
    fmt::print("parameters:    {} ({:.2f} M)\n", m->n_params(), double(m->n_params()) / 1e6);
    fmt::print("size:          {} bytes ({:.2f} MiB), {:.2f} bits per weight\n", m->n_bytes(),
               double(m->n_bytes()) / (1 << 20), bpw);
    if (c.uniform()) {
      fmt::print("layers:        {}, hidden {}, ffn {}, heads {} (kv {}), head dim {}\n", c.n_layers, c.dim, c.ffn_dim,
                 c.n_heads, c.n_kv_heads, c.head_dim);
    } else {
      fmt::print("layers:        {}, hidden {}, head dim {}; per layer:\n", c.n_layers, c.dim, c.head_dim);
      fmt::print("  ffn          {}\n  heads        {}\n  kv heads     {}\n", c.layer_ffn, c.layer_heads,
                 c.layer_kv_heads);
    }
    fmt::print("context:       {}, rope theta {}{}, rms eps {}\n", c.ctx_len, c.rope_theta,
               c.rope_scaling.empty() ? "" : ", scaling " + c.rope_scaling, c.rms_eps);
    fmt::print("output head:   {}{}\n", c.tied_embeddings ? "tied to embeddings" : "separate",
               c.qkv_bias ? ", q/k/v bias" : "");
    if (c.sliding_window > 0) {
      int64_t sliding = 0;
      for (int64_t l = 0; l < c.n_layers; l++) sliding += c.window(l) > 0;
      fmt::print("attention:     sliding window of {} on {} of {} layers{}\n", c.sliding_window, sliding, c.n_layers,
                 c.rope_theta_swa > 0 ? fmt::format(" (rope theta {})", c.rope_theta_swa) : "");
    }
    if (c.moe())
      fmt::print("experts:       {} of {} per token, each ffn {}, weights {}renormalized{}\n", c.n_experts_used,
                 c.n_experts, c.expert_ffn, c.expert_norm ? "" : "not ",
                 (c.shared_ffn > 0 ? fmt::format(", a shared expert of ffn {}", c.shared_ffn) : "") +
                     (c.n_dense_lead > 0 ? fmt::format("; the first {} blocks dense", c.n_dense_lead) : ""));
    if (c.attn_softcap > 0 || c.final_softcap > 0)
      fmt::print("soft-capping:  attention {}, logits {}\n", c.attn_softcap, c.final_softcap);
    if (!m->rotation.empty())
      fmt::print("rotation:      {} (R1/R2 folded into the weights{})\n", m->rotation,
                 c.down_rotation ? fmt::format("; R4: ffn_down's input rotated at run time, size {}, seed {} — an lmpress "
                                               "file, other engines compute another function",
                                               c.down_rotation->size(), c.down_rotation->seed())
                                 : "");
    if (c.act_int8) fmt::print("activations:   int8 per token, dynamic (W8A8)\n");
    fmt::print("per token:     at context {}: {:.2f} M MACs ({:.2f} M in attention), {:.2f} MiB of weights read; "
               "KV cache ({}) {:.0f} bytes per position, {:.2f} MiB read\n",
               cost.ctx, cost.macs() / 1e6, cost.attention_macs / 1e6, cost.weight_bytes / (1 << 20), kv_spec_name(kv),
               cost.kv_bytes_per_position, cost.kv_bytes_read() / (1 << 20));
    if (v)
      fmt::print("tokenizer:     {} ({}), {} tokens, {} merges, bos {} eos {}, add bos {}\n",
                 v->model == "llama" ? "SentencePiece BPE" : "byte-level BPE", v->model, v->size(), v->merges.size(),
                 v->bos, v->eos, v->add_bos ? "yes" : "no");
    if (o->no_tensors) return;
    fmt::print("\n{:<36} {:<20} {:<6} {:>12}\n", "tensor", "shape", "type", "bytes");
    for (const auto& t : m->tensors) fmt::print("{:<36} {:<20} {:<6} {:>12}\n", t.name, t.shape_str(), dtype_name(t.dtype), t.nbytes);
  });
}

}  // namespace lmpress::cli
