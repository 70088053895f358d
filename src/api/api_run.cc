// The C API (include/lmpress.h): contexts, batches, generation, perplexity, quantization.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>

#include "api/api_internal.h"
#include "compress/convert.h"
#include "compress/expert_prune.h"
#include "compress/low_rank_model.h"
#include "compress/report_json.h"
#include "model/export.h"
#include "compress/prune_model.h"
#include "compress/quantize_model.h"
#include "core/path_guard.h"
#include "eval/perplexity.h"
#include "kernels/matmul.h"
#include "model/forward.h"
#include "runtime/batch.h"
#include "eval/layer_skip.h"
#include "runtime/generate.h"
#include "runtime/generate_report.h"
#include "runtime/kv_cache.h"
#include "runtime/speculative.h"

using namespace lmpress;
using namespace lmpress::api;

struct lmpress_context {
  std::unique_ptr<InferenceState> st;
  std::vector<float> logits;
  size_t rows = 0;
};

struct lmpress_batch {
  const Model* m = nullptr;
  std::unique_ptr<PagedKvCache> cache;
  std::unique_ptr<BatchEngine> engine;
  std::vector<float> logits;
  size_t rows = 0;
};

namespace {

lmpress_cache_params default_cache() {
  lmpress_cache_params c;
  std::memset(&c, 0, sizeof c);
  c.kivi_group = 64;
  return c;
}

// The command line's rule: no output is an input (by inode and path).
void guard_paths(const char* in_path, const char* out_path, const std::vector<std::pair<const char*, std::string>>& inputs,
                 OutputKind kind, const std::string& adapter_out = "") {
  PathGuard guard;
  for (const auto& path : model_input_paths(in_path)) guard.input("in_path", path);
  for (const auto& [what, path] : inputs)
    if (!path.empty()) guard.input(what, path);
  guard.output("out_path", out_path, kind);
  if (!adapter_out.empty()) guard.output("compensate_out", adapter_out, OutputKind::Either, "adapter_config.json");
  guard.check();
}

lmpress_early_exit_params default_early_exit() {
  lmpress_early_exit_params e;
  std::memset(&e, 0, sizeof e);
  e.threshold = -1;
  e.layer = -1;
  return e;
}

EarlyExit early_exit(const lmpress_early_exit_params& e, const ModelConfig& c) {
  return make_early_exit(e.threshold, e.layer, e.measure ? e.measure : "softmax", c);
}

GenerateOptions generate_options(const Model& m, const lmpress_generate_params& p, const char* fn) {
  if (p.n_predict < 0) invalid("{}: n_predict {} must be >= 0", fn, p.n_predict);
  if (p.n_ctx < 0 || p.n_ctx > (int64_t(1) << 24)) invalid("{}: n_ctx {} out of range (0 .. 2^24)", fn, p.n_ctx);
  GenerateOptions g;
  g.n_predict = p.n_predict;
  g.n_ctx = p.n_ctx;
  g.stop_at_eos = !p.ignore_eos;
  g.sampling = sampler_options(p.sampling);
  g.kv = cache_spec(p.cache, m.cfg);
  g.policy = cache_policy(p.cache);
  g.early_exit = early_exit(p.early_exit, m.cfg);
  return g;
}

// done: false while a stepped generation may go on (then "caller").
lmpress_generate_result generate_result(const GenerateStats& s, bool done) {
  lmpress_generate_result r;
  std::memset(&r, 0, sizeof r);
  r.n_prompt = s.n_prompt;
  r.n_generated = s.n_generated;
  r.stop_reason = !done                               ? LMPRESS_STOP_CALLER
                  : s.stopped == StopReason::Eos      ? LMPRESS_STOP_EOS
                  : s.stopped == StopReason::Context  ? LMPRESS_STOP_CONTEXT
                  : s.stopped == StopReason::Caller   ? LMPRESS_STOP_CALLER
                                                      : LMPRESS_STOP_LENGTH;
  r.prompt_seconds = s.prompt_seconds;
  r.gen_seconds = s.gen_seconds;
  r.n_drafted = s.spec.drafted;
  r.n_accepted = s.spec.accepted;
  return r;
}

// The calibration of a compression call, checked as the command line checks its options.
CalibrationOptions calibration(const char* path, int64_t samples, int64_t ctx, const char* fn) {
  CalibrationOptions c;
  if (path) c.file = path;
  c.samples = samples;
  c.ctx = ctx;
  if (c.samples == 0 || c.samples < -1) invalid("{}: calib_samples {}: -1 (all) or >= 1", fn, c.samples);
  if (c.ctx < 2) invalid("{}: calib_ctx {} must be >= 2", fn, c.ctx);
  return c;
}

void check_tokens(const Model& m, const int32_t* tokens, size_t n, const char* fn) {
  for (size_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= m.cfg.n_vocab)
      invalid("{}: token {} (at {}) is outside the model's {} embeddings", fn, tokens[i], i, m.cfg.n_vocab);
}

}  // namespace

extern "C" {

lmpress_context_params lmpress_context_default_params(void) {
  lmpress_context_params p;
  std::memset(&p, 0, sizeof p);
  p.n_batch = 512;
  p.cache = default_cache();
  return p;
}

lmpress_status lmpress_context_create(const lmpress_model* model, const lmpress_context_params* params,
                                      lmpress_context** out) {
  return guarded([&] {
    const char* fn = "lmpress_context_create";
    begin_create(out, model, fn);
    const lmpress_context_params p = params ? *params : lmpress_context_default_params();
    const Model& m = *model->m;
    const int64_t n_ctx = p.n_ctx > 0 ? in_range(p.n_ctx, 1, int64_t(1) << 24, fn, "n_ctx") : m.cfg.ctx_len;
    in_range(p.n_batch, 1, 65536, fn, "n_batch");
    const KvCacheSpec kv = cache_spec(p.cache, m.cfg);
    check_kv_context(kv, n_ctx);
    const KvPolicy policy = cache_policy(p.cache);
    check_kv_policy(policy, kv, n_ctx, p.n_batch);
    auto c = std::make_unique<lmpress_context>();
    c->st = std::make_unique<InferenceState>(m, n_ctx, p.n_batch, kv, policy);
    *out = c.release();
  });
}

void lmpress_context_free(lmpress_context* ctx) { delete ctx; }

lmpress_status lmpress_context_eval(lmpress_context* ctx, const int32_t* tokens, size_t n, bool all_logits) {
  return guarded([&] {
    const char* fn = "lmpress_context_eval";
    apply_threads();
    need(ctx, fn, "ctx");
    need(tokens, fn, "tokens");
    if (n == 0) invalid("{}: no tokens", fn);
    const Model& m = ctx->st->model();
    check_tokens(m, tokens, n, fn);
    if (!ctx->st->policy().bounded() && ctx->st->n_cached() + int64_t(n) > ctx->st->n_ctx())
      fail("{}: {} more tokens do not fit the context: {} of {} positions are used", fn, n, ctx->st->n_cached(),
           ctx->st->n_ctx());
    const size_t rows = all_logits ? n : 1;
    ctx->logits.resize(rows * size_t(m.cfg.n_vocab));
    ctx->rows = 0;
    ctx->st->eval(tokens, int64_t(n), ctx->logits.data(), all_logits);
    ctx->rows = rows;
  });
}

const float* lmpress_context_logits(const lmpress_context* ctx, size_t* n_rows) {
  if (n_rows) *n_rows = ctx ? ctx->rows : 0;
  return ctx && ctx->rows ? ctx->logits.data() : nullptr;
}

int64_t lmpress_context_n_past(const lmpress_context* ctx) { return ctx ? ctx->st->n_past() : 0; }

lmpress_status lmpress_context_truncate(lmpress_context* ctx, int64_t n) {
  return guarded([&] {
    need(ctx, "lmpress_context_truncate", "ctx");
    if (n < 0 || n > ctx->st->n_past())
      invalid("lmpress_context_truncate: {} positions asked to keep, {} evaluated", n, ctx->st->n_past());
    if (n == 0)
      ctx->st->reset();
    else
      ctx->st->truncate(n);
    ctx->rows = 0;
  });
}

lmpress_batch_params lmpress_batch_default_params(void) {
  lmpress_batch_params p;
  std::memset(&p, 0, sizeof p);
  p.block_size = 16;
  p.max_tokens = 512;
  p.cache = default_cache();
  return p;
}

lmpress_status lmpress_batch_create(const lmpress_model* model, const lmpress_batch_params* params,
                                    lmpress_batch** out) {
  return guarded([&] {
    const char* fn = "lmpress_batch_create";
    begin_create(out, model, fn);
    const lmpress_batch_params p = params ? *params : lmpress_batch_default_params();
    const Model& m = *model->m;
    in_range(p.max_tokens, 1, 65536, fn, "max_tokens");
    auto b = std::make_unique<lmpress_batch>();
    b->m = &m;
    b->cache = paged_cache(m, p.n_ctx, p.block_size, p.cache, p.max_tokens, fn);
    b->engine = std::make_unique<BatchEngine>(m, *b->cache, p.max_tokens);
    *out = b.release();
  });
}

void lmpress_batch_free(lmpress_batch* batch) { delete batch; }

lmpress_status lmpress_batch_eval(lmpress_batch* batch, const int32_t* tokens, const int32_t* seq_ids,
                                  const int64_t* positions, const bool* want_logits, size_t n) {
  return guarded([&] {
    const char* fn = "lmpress_batch_eval";
    apply_threads();
    need(batch, fn, "batch");
    need(tokens, fn, "tokens");
    need(seq_ids, fn, "seq_ids");
    need(positions, fn, "positions");
    if (n == 0) invalid("{}: no tokens", fn);
    if (int64_t(n) > batch->engine->max_tokens())
      invalid("{}: {} tokens, the batch was made for at most {} (max_tokens)", fn, n, batch->engine->max_tokens());
    check_tokens(*batch->m, tokens, n, fn);
    PagedKvCache& cache = *batch->cache;
    // A sequence's tokens in this batch; as many as InferenceState would run
    // through the batched kernels make them prompt tokens (batch.h: the same
    // logits as a lone context).
    std::map<int32_t, int64_t> count;
    for (size_t i = 0; i < n; i++) {
      if (seq_ids[i] < 0) invalid("{}: seq_ids[{}] is {}: sequence ids are >= 0", fn, i, seq_ids[i]);
      count[seq_ids[i]]++;
    }
    std::vector<BatchToken> b(n);
    size_t rows = 0;
    for (size_t i = 0; i < n; i++) {
      const bool logits = want_logits ? want_logits[i] : i + 1 == n;
      b[i] = {tokens[i], seq_ids[i], positions[i], logits, count[seq_ids[i]] >= kMatmulBatchMin};
      rows += logits;
    }
    // Into a scratch buffer, swapped in on success: a failed call leaves the
    // last eval's logits (and pointers to them) as they were.
    std::vector<float> logits(rows * size_t(batch->m->cfg.n_vocab));
    std::vector<int32_t> opened;
    try {
      for (const auto& kv : count)
        if (!cache.has(kv.first)) {
          cache.open(kv.first, nullptr, 0);
          opened.push_back(kv.first);
        }
      batch->engine->forward(b, rows ? logits.data() : nullptr);
    } catch (...) {
      for (int32_t seq : opened) cache.close(seq);  // as before the call
      throw;
    }
    batch->logits.swap(logits);
    batch->rows = rows;
  });
}

const float* lmpress_batch_logits(const lmpress_batch* batch, size_t* n_rows) {
  if (n_rows) *n_rows = batch ? batch->rows : 0;
  return batch && batch->rows ? batch->logits.data() : nullptr;
}

int64_t lmpress_batch_seq_length(const lmpress_batch* batch, int32_t seq) {
  return batch && batch->cache->has(seq) ? batch->cache->n_computed(seq) : 0;
}

lmpress_status lmpress_batch_seq_truncate(lmpress_batch* batch, int32_t seq, int64_t n) {
  return guarded([&] {
    need(batch, "lmpress_batch_seq_truncate", "batch");
    PagedKvCache& cache = *batch->cache;
    const int64_t len = cache.has(seq) ? cache.n_computed(seq) : 0;
    if (n < 0 || n > len) invalid("lmpress_batch_seq_truncate: sequence {} holds {} positions, {} asked to keep", seq, len, n);
    if (n == 0) {
      if (cache.has(seq)) cache.close(seq);
    } else if (n < len) {
      cache.truncate(seq, n);
    }
  });
}

lmpress_generate_params lmpress_generate_default_params(void) {
  lmpress_generate_params p;
  std::memset(&p, 0, sizeof p);
  p.n_predict = GenerateOptions().n_predict;
  p.sampling = lmpress_sampler_default_params();
  p.cache = default_cache();
  const SpecOptions spec;
  p.spec.draft_max = spec.draft_max;
  p.spec.draft_min = spec.draft_min;
  p.spec.p_min = spec.p_min;
  p.early_exit = default_early_exit();
  return p;
}

lmpress_status lmpress_generate(const lmpress_model* model, const char* prompt, const lmpress_generate_params* params,
                                lmpress_generate_result* result) {
  return guarded([&] {
    const char* fn = "lmpress_generate";
    apply_threads();
    need(model, fn, "model");
    need(prompt, fn, "prompt");
    const lmpress_generate_params p = params ? *params : lmpress_generate_default_params();
    GenerateOptions g = generate_options(*model->m, p, fn);
    std::string pending;
    std::function<void(const std::string&)> on_text;
    if (p.on_token) {
      on_text = [&](const std::string& piece) { pending += piece; };
      g.on_token = [&](int32_t id) {
        const bool more = p.on_token(id, pending.data(), pending.size(), p.user_data);
        pending.clear();
        return more;
      };
    }
    // Speculative decoding: the drafter and its draft model live for this call.
    std::unique_ptr<DraftSource> source;
    std::unique_ptr<Drafter> drafter;
    SpecOptions so;
    std::string skip_ranking;
    if (p.spec.type && *p.spec.type) {
      // The draft lengths are checked (naming --draft-max, --draft-min, --draft-p-min) before the blocks are ranked.
      const int64_t n_ctx = g.n_ctx > 0 ? g.n_ctx : model->m->cfg.ctx_len;
      so.draft_max = p.spec.draft_max;
      so.draft_min = p.spec.draft_min;
      so.p_min = p.spec.p_min;
      if (p.spec.calib_path) so.calib = p.spec.calib_path;
      check_draft_lengths(so, n_ctx);
      so.type = resolve_skip_auto(p.spec.type, so.calib, *model->m, n_ctx, &skip_ranking);
      source = std::make_unique<DraftSource>(so, *model->m, n_ctx);
      drafter = source->make(g.sampling);
      g.drafter = drafter.get();
      g.draft_max = so.draft_max;
      g.draft_min = so.draft_min;
    }
    const GenerateStats s = generate(*model->m, prompt, g, on_text);
    // Bytes held back at the end (an incomplete character): once more, token -1,
    // unless the callback itself stopped generation.
    if (p.on_token && !pending.empty() && s.stopped != StopReason::Caller)
      p.on_token(-1, pending.data(), pending.size(), p.user_data);
    if (result) *result = generate_result(s, true);
    nlohmann::ordered_json report = generate_report_json(s, g, &so);
    if (!skip_ranking.empty()) report["spec"]["skip_ranking"] = skip_ranking;
    set_report(report);
  });
}

struct lmpress_generation {
  std::unique_ptr<Generation> g;
  std::string text;
};

lmpress_status lmpress_generation_start(const lmpress_model* model, const char* prompt,
                                        const lmpress_generate_params* params, lmpress_generation** out) {
  return guarded([&] {
    const char* fn = "lmpress_generation_start";
    apply_threads();
    need(out, fn, "out");
    *out = nullptr;
    need(model, fn, "model");
    need(prompt, fn, "prompt");
    const lmpress_generate_params p = params ? *params : lmpress_generate_default_params();
    if (p.spec.type && *p.spec.type)
      invalid("{}: spec.type {}: speculative decoding runs in lmpress_generate, not stepped generation", fn, p.spec.type);
    if (p.early_exit.threshold >= 0)
      invalid("{}: early_exit runs in lmpress_generate, not stepped generation", fn);
    auto h = std::make_unique<lmpress_generation>();
    h->g = std::make_unique<Generation>(*model->m, prompt, generate_options(*model->m, p, fn));
    *out = h.release();
  });
}

lmpress_status lmpress_generation_next(lmpress_generation* gen, int32_t* token, const char** text, size_t* text_len,
                                       bool* done) {
  return guarded([&] {
    const char* fn = "lmpress_generation_next";
    apply_threads();
    need(token, fn, "token");
    need(done, fn, "done");
    *token = -1;
    *done = true;
    need(gen, fn, "gen");
    int32_t id = -1;
    *done = !gen->g->next(id, gen->text);
    *token = *done ? -1 : id;
    if (text) *text = gen->text.c_str();
    if (text_len) *text_len = gen->text.size();
  });
}

lmpress_status lmpress_generation_result(const lmpress_generation* gen, lmpress_generate_result* result) {
  return guarded([&] {
    need(gen, "lmpress_generation_result", "gen");
    need(result, "lmpress_generation_result", "result");
    *result = generate_result(gen->g->stats(), gen->g->done());
  });
}

void lmpress_generation_free(lmpress_generation* gen) { delete gen; }

lmpress_perplexity_params lmpress_perplexity_default_params(void) {
  lmpress_perplexity_params p;
  std::memset(&p, 0, sizeof p);
  const PerplexityOptions o;
  p.n_ctx = o.n_ctx;
  p.n_chunks = o.n_chunks;
  p.cache = default_cache();
  p.n_batch = o.n_batch;
  p.early_exit = default_early_exit();
  return p;
}

lmpress_status lmpress_perplexity(const lmpress_model* model, const char* text, size_t text_len,
                                  const lmpress_perplexity_params* params, lmpress_perplexity_result* result) {
  return guarded([&] {
    const char* fn = "lmpress_perplexity";
    apply_threads();
    need(model, fn, "model");
    need(text, fn, "text");
    need(result, fn, "result");
    const lmpress_perplexity_params p = params ? *params : lmpress_perplexity_default_params();
    const Model& m = *model->m;
    if (p.n_ctx < 4 || p.n_ctx > (int64_t(1) << 20)) invalid("{}: n_ctx {} out of range (4 .. 2^20)", fn, p.n_ctx);
    check_chunks(p.n_chunks);
    PerplexityOptions o;
    o.n_ctx = p.n_ctx;
    o.n_chunks = p.n_chunks;
    o.protocol = parse_ppl_protocol(p.protocol ? p.protocol : "llama.cpp");
    o.n_batch = in_range(p.n_batch, 1, int64_t(1) << 20, fn, "n_batch");
    o.recompute_window = in_range(p.recompute_window, 0, int64_t(1) << 20, fn, "recompute_window");
    o.kv = cache_spec(p.cache, m.cfg);
    o.policy = cache_policy(p.cache);
    o.early_exit = early_exit(p.early_exit, m.cfg);
    std::string t(text, text_len);
    if (o.protocol == PplProtocol::Gptq) t = gptq_protocol_text(t);
    const auto tokens = m.tokenizer->encode(t, true, false);
    ScopedProgressSink sink(progress_sink(p.progress, p.progress_user_data));
    const PerplexityResult r = perplexity(m, tokens, o, [&](int64_t i, double ppl) {
      if (p.on_chunk && !p.on_chunk(i, ppl, p.chunk_user_data)) throw Cancelled("perplexity: cancelled by the caller");
    });
    set_report(perplexity_report_json(r, o));
    std::memset(result, 0, sizeof *result);
    result->ppl = r.ppl;
    result->ppl_stderr = r.ppl_stderr;
    result->mean_nll = r.mean_nll;
    result->n_tokens_scored = r.n_tokens_scored;
    result->n_chunks = r.n_chunks;
  });
}

lmpress_quantize_params lmpress_quantize_default_params(void) {
  lmpress_quantize_params p;
  std::memset(&p, 0, sizeof p);
  const QuantizeRequest r;
  p.calib_samples = r.calib.samples;
  p.calib_ctx = r.calib.ctx;
  p.damp = r.damp;
  p.smooth = r.smooth;
  return p;
}

lmpress_status lmpress_quantize(const char* in_path, const char* out_path, const lmpress_quantize_params* params) {
  return guarded([&] {
    const char* fn = "lmpress_quantize";
    apply_threads();
    need(in_path, fn, "in_path");
    need(out_path, fn, "out_path");
    const lmpress_quantize_params p = params ? *params : lmpress_quantize_default_params();
    if (!p.type && !p.scheme && p.target_bpw == 0)
      invalid("{}: params->type is NULL (a file type such as q4_k_m, or int4-g128)", fn);
    QuantizeRequest r;
    if (p.type) r.type = p.type;
    if (p.scheme) r.scheme = p.scheme;
    r.smooth = p.smooth;
    if (p.method) r.method = p.method;
    r.calib = calibration(p.calib_path, p.calib_samples, p.calib_ctx, fn);
    if (p.imatrix_path) r.imatrix = p.imatrix_path;
    r.damp = p.damp;
    r.act_order = p.act_order;
    if (p.rotate) r.rotate = p.rotate;
    if (p.compensate) r.compensate = p.compensate;
    if (p.compensate_out) r.compensate_out = p.compensate_out;
    r.tensor_types = strings(p.tensor_types, p.n_tensor_types, fn, "tensor_types");
    r.expert_types = strings(p.expert_types, p.n_expert_types, fn, "expert_types");
    r.targets = strings(p.targets, p.n_targets, fn, "targets");
    r.ignore = strings(p.ignore, p.n_ignore, fn, "ignore");
    r.target_bpw = p.target_bpw;
    if (p.format) r.format = p.format;
    if (p.output_tensor_type) r.output_type = p.output_tensor_type;
    if (p.token_embedding_type) r.embd_type = p.token_embedding_type;
    r.keep_output = p.keep_output;
    r.pure = p.pure;
    r.allow_requantize = p.allow_requantize;
    r.clip_search = p.clip_search;
    if (p.name) r.name = p.name;
    guard_paths(in_path, out_path, {{"calib_path", r.calib.file}, {"imatrix_path", r.imatrix}}, OutputKind::Either,
                r.compensate.empty()
                    ? ""
                    : parse_compensate_spec(r.compensate, out_path, r.compensate_out, writes_checkpoint_dir(r)).adapter_path);
    QuantizeOptions q = quantize_options(r, out_path);
    ScopedProgressSink sink(progress_sink(p.progress, p.progress_user_data));
    auto m = load_for_compression(in_path, "", p.skip_finite_check);
    keep_output_type(q, r, *m);
    set_report(quantize_report_json(quantize_model(*m, out_path, q)));
  });
}

lmpress_prune_params lmpress_prune_default_params(void) {
  lmpress_prune_params p;
  std::memset(&p, 0, sizeof p);
  const PruneRequest r;
  p.sparsity = r.sparsity;
  p.calib_samples = r.calib.samples;
  p.calib_ctx = r.calib.ctx;
  p.damp = r.damp;
  p.owl_lambda = r.owl_opts.lambda;
  p.owl_m = r.owl_opts.m;
  return p;
}

lmpress_status lmpress_prune(const char* in_path, const char* out_path, const lmpress_prune_params* params) {
  return guarded([&] {
    const char* fn = "lmpress_prune";
    apply_threads();
    need(in_path, fn, "in_path");
    need(out_path, fn, "out_path");
    const lmpress_prune_params p = params ? *params : lmpress_prune_default_params();
    PruneRequest r;
    if (p.method) r.method = p.method;
    r.sparsity = p.sparsity;
    if (p.nm) r.nm = p.nm;
    if (p.quantize) r.quantize = p.quantize;
    r.calib = calibration(p.calib_path, p.calib_samples, p.calib_ctx, fn);
    r.damp = p.damp;
    if (p.rotate) r.rotate = p.rotate;
    if (p.compensate) r.compensate = p.compensate;
    if (p.compensate_out) r.compensate_out = p.compensate_out;
    r.targets = strings(p.targets, p.n_targets, fn, "targets");
    r.ignore = strings(p.ignore, p.n_ignore, fn, "ignore");
    r.owl = p.owl;
    r.global = p.global;
    r.owl_opts.lambda = p.owl_lambda;
    r.owl_opts.m = p.owl_m;
    if (!(r.owl_opts.lambda >= 0 && r.owl_opts.lambda <= 0.5)) invalid("{}: owl_lambda {} not in [0, 0.5]", fn, p.owl_lambda);
    if (!(r.owl_opts.m >= 1 && r.owl_opts.m <= 1000)) invalid("{}: owl_m {} not in [1, 1000]", fn, p.owl_m);
    if (p.name) r.name = p.name;
    if (p.experts && *p.experts) {
      if (p.sparsity >= 0 || p.nm || p.structured || p.quantize || p.owl || p.global || p.rotate || p.compensate ||
          !r.targets.empty() || !r.ignore.empty())
        invalid("{}: experts removes whole experts: leave sparsity (< 0), nm, structured, quantize, owl, global, "
                "rotate, compensate, targets and ignore unset",
                fn);
      const std::string score = p.method ? p.method : "reap";
      if (score != "reap" && score != "frequency") fail("--method {}: with --experts, reap or frequency", score);
      if (r.calib.file.empty()) fail("--experts scores the experts on calibration text: --calib FILE");
      ExpertPruneOptions eo;
      eo.calib = r.calib;
      const double n = parse_expert_count(p.experts);
      if (n >= 1 && n == std::floor(n)) eo.keep = int64_t(n);
      else eo.ratio = n;
      eo.score = score == "frequency" ? ExpertScore::Frequency : ExpertScore::Reap;
      guard_paths(in_path, out_path, {{"calib_path", r.calib.file}}, OutputKind::File);
      ScopedProgressSink sink(progress_sink(p.progress, p.progress_user_data));
      auto m = load_for_compression(in_path, "", p.skip_finite_check);
      const auto report = prune_experts(*m, eo);
      ExportOptions out;
      out.name = r.name;
      write_gguf_model(*m, out_path, out);
      set_report(expert_prune_report_json(report));
      return;
    }
    const bool structured = p.structured && *p.structured;
    // As `prune --structured`: the unstructured choices do not apply.
    // (rotate is refused by the structured pruner itself, naming --rotate.)
    if (structured && (p.method || p.nm || p.sparsity >= 0 || p.compensate || p.owl || p.global ||
                       !r.targets.empty() || !r.ignore.empty()))
      invalid("{}: structured removes whole heads, channels and blocks: leave method, nm, sparsity (< 0), "
              "compensate, owl, global, targets and ignore unset",
              fn);
    guard_paths(in_path, out_path, {{"calib_path", r.calib.file}}, OutputKind::File,
                r.compensate.empty() ? "" : parse_compensate_spec(r.compensate, out_path, r.compensate_out, false).adapter_path);
    if (structured) {
      if (r.calib.file.empty()) invalid("{}: structured scores heads, channels and blocks on calibration text: calib_path", fn);
      const PruneOptions po = prune_output_options(r);
      const StructuredOptions so = parse_structured(p.structured);
      ScopedProgressSink sink(progress_sink(p.progress, p.progress_user_data));
      auto m = load_for_compression(in_path, "", p.skip_finite_check);
      set_report(structured_report_json(prune_model_structured(*m, out_path, so, po)));
      return;
    }
    const PruneOptions o = prune_options(r, out_path);
    ScopedProgressSink sink(progress_sink(p.progress, p.progress_user_data));
    auto m = load_for_compression(in_path, "", p.skip_finite_check);
    set_report(prune_report_json(prune_model(*m, out_path, o), o));
  });
}

lmpress_lowrank_params lmpress_lowrank_default_params(void) {
  lmpress_lowrank_params p;
  std::memset(&p, 0, sizeof p);
  const LowRankRequest r;
  p.ratio = r.ratio;
  p.rank = r.rank;
  p.alpha = r.alpha;
  p.calib_samples = r.calib.samples;
  p.calib_ctx = r.calib.ctx;
  return p;
}

lmpress_status lmpress_lowrank(const char* in_path, const char* out_path, const lmpress_lowrank_params* params) {
  return guarded([&] {
    const char* fn = "lmpress_lowrank";
    apply_threads();
    need(in_path, fn, "in_path");
    need(out_path, fn, "out_path");
    const lmpress_lowrank_params p = params ? *params : lmpress_lowrank_default_params();
    LowRankRequest r;
    if (p.method) r.method = p.method;
    if (p.factor_type) r.factor_type = p.factor_type;
    r.ratio = p.ratio;
    r.rank = p.rank;
    r.global = p.global;
    r.alpha = p.alpha;
    r.calib = calibration(p.calib_path, p.calib_samples, p.calib_ctx, fn);
    if (p.name) r.name = p.name;
    r.targets = strings(p.targets, p.n_targets, fn, "targets");
    r.ignore = strings(p.ignore, p.n_ignore, fn, "ignore");
    const LowRankOptions o = low_rank_options(r);
    guard_paths(in_path, out_path, {{"calib_path", r.calib.file}}, OutputKind::File);
    ScopedProgressSink sink(progress_sink(p.progress, p.progress_user_data));
    auto m = load_for_compression(in_path, "", p.skip_finite_check);
    set_report(low_rank_report_json(low_rank_model(*m, out_path, o), o));
  });
}

lmpress_convert_params lmpress_convert_default_params(void) {
  lmpress_convert_params p;
  std::memset(&p, 0, sizeof p);
  return p;
}

lmpress_status lmpress_convert_model(const char* in_path, const char* out_path, const lmpress_convert_params* params) {
  return guarded([&] {
    const char* fn = "lmpress_convert_model";
    apply_threads();
    need(in_path, fn, "in_path");
    need(out_path, fn, "out_path");
    const lmpress_convert_params p = params ? *params : lmpress_convert_default_params();
    ConvertRequest r;
    if (p.dtype) r.dtype = p.dtype;
    std::transform(r.dtype.begin(), r.dtype.end(), r.dtype.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if (p.format) r.format = p.format;
    if (p.name) r.name = p.name;
    r.split_experts = in_range(p.split_experts, 0, 64, fn, "split_experts");
    if (r.split_experts == 1) invalid("{}: split_experts 1: 0 (off) or 2 .. 64", fn);
    r.split_experts_used = in_range(p.split_experts_used, 0, 64, fn, "split_experts_used");
    if (r.split_experts_used > 0 && r.split_experts == 0) invalid("{}: split_experts_used without split_experts", fn);
    if (r.split_experts_used > r.split_experts)
      invalid("{}: split_experts_used {} is above the {} experts", fn, r.split_experts_used, r.split_experts);
    r.kv_heads = in_range(p.kv_heads, 0, int64_t(1) << 20, fn, "kv_heads");
    const std::string tokenizer = p.tokenizer_path ? p.tokenizer_path : "";
    guard_paths(in_path, out_path, {{"tokenizer_path", tokenizer}}, OutputKind::Either);
    auto m = load_for_compression(in_path, tokenizer, p.skip_finite_check);
    if (r.kv_heads > 0) pool_kv_heads(*m, r.kv_heads);
    if (r.split_experts > 0) split_into_experts(*m, r.split_experts, r.split_experts_used);
    const std::string format = convert_model(*m, out_path, r);
    set_report(nlohmann::ordered_json{{"path", out_path}, {"format", format}, {"tensors", m->tensors.size()}});
  });
}

lmpress_status lmpress_convert(const char* in_path, const char* out_path, const char* dtype, const char* format) {
  lmpress_convert_params p = lmpress_convert_default_params();
  p.dtype = dtype;
  p.format = format;
  return lmpress_convert_model(in_path, out_path, &p);
}

}  // extern "C"
