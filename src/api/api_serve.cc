// The C API (include/lmpress.h): the serving engine (continuous batching) and KL divergence.
#include <cstring>

#include "api/api_internal.h"
#include "eval/kld.h"
#include "runtime/scheduler.h"

using namespace lmpress;
using namespace lmpress::api;

struct lmpress_engine {
  std::unique_ptr<PagedKvCache> cache;
  std::unique_ptr<BatchEngine> batch;
  std::unique_ptr<Scheduler> scheduler;
  std::vector<lmpress_step_event> events;
  std::vector<std::vector<int32_t>> top_ids;  // per event: what its pointers point at
  std::vector<std::vector<float>> top_logprobs;
  int64_t ctx = 0;  // a request's context: the model's (serve's -c default)
  bool bounded = false;  // an eviction policy lets requests run past it
};

extern "C" {

lmpress_engine_params lmpress_engine_default_params(void) {
  lmpress_engine_params p;
  std::memset(&p, 0, sizeof p);
  const SchedulerOptions o;
  p.block_size = 16;
  p.max_running = o.max_running;
  p.token_budget = 512;
  p.cache = lmpress_context_default_params().cache;
  return p;
}

lmpress_request_params lmpress_request_default_params(void) {
  lmpress_request_params p;
  std::memset(&p, 0, sizeof p);
  p.max_tokens = Request().max_tokens;
  p.sampling = lmpress_sampler_default_params();
  p.logprobs = -1;
  return p;
}

lmpress_status lmpress_engine_create(const lmpress_model* model, const lmpress_engine_params* params,
                                     lmpress_engine** out) {
  return guarded([&] {
    const char* fn = "lmpress_engine_create";
    begin_create(out, model, fn);
    const lmpress_engine_params p = params ? *params : lmpress_engine_default_params();
    const Model& m = *model->m;
    in_range(p.max_running, 1, 4096, fn, "max_running");
    in_range(p.token_budget, 1, 65536, fn, "token_budget");
    auto e = std::make_unique<lmpress_engine>();
    e->cache = paged_cache(m, p.n_ctx, p.block_size, p.cache, p.token_budget, fn);
    const KvPolicy policy = e->cache->policy();
    e->batch = std::make_unique<BatchEngine>(m, *e->cache, p.token_budget);
    SchedulerOptions so;
    so.max_running = p.max_running;
    so.token_budget = p.token_budget;
    e->scheduler = std::make_unique<Scheduler>(*e->batch, so);
    e->ctx = m.cfg.ctx_len;
    e->bounded = policy.bounded();
    *out = e.release();
  });
}

void lmpress_engine_free(lmpress_engine* engine) { delete engine; }

lmpress_status lmpress_engine_submit(lmpress_engine* engine, int64_t request_id, const int32_t* prompt, size_t n,
                                     const lmpress_request_params* params) {
  return guarded([&] {
    const char* fn = "lmpress_engine_submit";
    need(engine, fn, "engine");
    need(prompt, fn, "prompt");
    if (n == 0) invalid("{}: the prompt is empty", fn);
    const lmpress_request_params p = params ? *params : lmpress_request_default_params();
    if (p.max_tokens < 1) invalid("{}: max_tokens {} must be >= 1", fn, p.max_tokens);
    if (p.logprobs < -1 || p.logprobs > 20) invalid("{}: logprobs {}: -1 (none) or 0..20", fn, p.logprobs);
    if (int64_t(n) >= engine->ctx)
      fail("{}: the prompt has {} tokens, which does not fit the model's context of {}", fn, n, engine->ctx);
    const int64_t V = engine->batch->model().cfg.n_vocab;
    for (size_t i = 0; i < n; i++)
      if (prompt[i] < 0 || prompt[i] >= V) invalid("{}: token {} (at {}) is outside the model's {} embeddings", fn, prompt[i], i, V);
    Request r;
    r.id = request_id;
    r.prompt.assign(prompt, prompt + n);
    // Unbounded by eviction, still far from overflowing the scheduler's position arithmetic.
    r.max_tokens = engine->bounded ? std::min<int64_t>(p.max_tokens, int64_t(1) << 40)
                                   : std::min<int64_t>(p.max_tokens, engine->ctx - int64_t(n));
    r.ignore_eos = p.ignore_eos;
    r.sampling = sampler_options(p.sampling);
    r.logprobs = p.logprobs;
    engine->scheduler->submit(std::move(r));
  });
}

lmpress_status lmpress_engine_cancel(lmpress_engine* engine, int64_t request_id) {
  return guarded([&] {
    need(engine, "lmpress_engine_cancel", "engine");
    if (!engine->scheduler->cancel(request_id)) fail("lmpress_engine_cancel: no request {}", request_id);
  });
}

lmpress_status lmpress_engine_step(lmpress_engine* engine, const lmpress_step_event** events, size_t* n_events) {
  return guarded([&] {
    const char* fn = "lmpress_engine_step";
    apply_threads();
    need(engine, fn, "engine");
    need(events, fn, "events");
    need(n_events, fn, "n_events");
    *events = nullptr;
    *n_events = 0;
    engine->events.clear();
    engine->top_ids.clear();
    engine->top_logprobs.clear();
    const std::vector<StepEvent> step = engine->scheduler->step();
    engine->top_ids.resize(step.size());
    engine->top_logprobs.resize(step.size());
    for (const StepEvent& e : step) {
      lmpress_step_event c;
      std::memset(&c, 0, sizeof c);
      const size_t i = engine->events.size();
      for (const auto& [id, lp] : e.logprobs.top) {
        engine->top_ids[i].push_back(id);
        engine->top_logprobs[i].push_back(lp);
      }
      c.logprob = e.logprobs.logprob;
      c.n_top = engine->top_ids[i].size();
      c.top_ids = engine->top_ids[i].data();
      c.top_logprobs = engine->top_logprobs[i].data();
      c.request_id = e.id;
      c.token = e.token;
      c.finished = e.finished == FinishReason::Eos      ? LMPRESS_FINISH_EOS
                   : e.finished == FinishReason::Length ? LMPRESS_FINISH_LENGTH
                                                        : LMPRESS_FINISH_NONE;
      engine->events.push_back(c);
    }
    *events = engine->events.data();
    *n_events = engine->events.size();
  });
}

size_t lmpress_engine_n_requests(const lmpress_engine* engine) {
  return engine ? size_t(engine->scheduler->n_running() + engine->scheduler->n_waiting()) : 0;
}

lmpress_kld_params lmpress_kld_default_params(void) {
  lmpress_kld_params p;
  std::memset(&p, 0, sizeof p);
  const lmpress_perplexity_params pp = lmpress_perplexity_default_params();
  p.n_ctx = pp.n_ctx;
  p.n_chunks = pp.n_chunks;
  p.cache = pp.cache;
  p.base_cache = pp.cache;
  return p;
}

lmpress_status lmpress_kld(const lmpress_model* base, const lmpress_model* cand, const char* text, size_t text_len,
                           const lmpress_kld_params* params, lmpress_kld_result* result) {
  return guarded([&] {
    const char* fn = "lmpress_kld";
    apply_threads();
    need(base, fn, "base");
    need(cand, fn, "cand");
    need(text, fn, "text");
    need(result, fn, "result");
    const lmpress_kld_params p = params ? *params : lmpress_kld_default_params();
    if (p.n_ctx < 8 || p.n_ctx > (int64_t(1) << 20)) invalid("{}: n_ctx {} out of range (8 .. 2^20)", fn, p.n_ctx);
    PerplexityOptions o;
    o.n_ctx = p.n_ctx;
    o.n_chunks = p.n_chunks;
    o.kv = cache_spec(p.cache, cand->m->cfg);
    o.base_kv = cache_spec(p.base_cache, base->m->cfg);
    o.policy = cache_policy(p.cache);
    const auto tokens = base->m->tokenizer->encode(std::string_view(text, text_len), true, false);
    ScopedProgressSink sink(progress_sink(p.progress, p.progress_user_data));
    const KldResult r = kl_divergence(*base->m, *cand->m, tokens, o);
    std::memset(result, 0, sizeof *result);
    result->kld = r.kld.value;
    result->kld_unc = r.kld.unc;
    result->ppl = r.ppl.value;
    result->ppl_base = r.ppl_base.value;
    result->same_top = r.same_top.value;
    result->rms_p_diff = r.rms_p_diff.value;
    result->n_tokens = r.n_tokens;
    result->n_chunks = r.n_chunks;
  });
}

}  // extern "C"
