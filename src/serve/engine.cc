#include "serve/engine.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace lmpress::serve {

int64_t block_size_of(const EngineOptions& o) {
  if (o.block_size < 1) fail("KV block size {}: it must be at least 1", o.block_size);
  if (o.kv.kivi() && o.kv.group < 1) return o.block_size;  // blocks_of refuses the group, naming the option
  return o.kv.round_positions(o.block_size);
}

int64_t blocks_of(const Model& m, const EngineOptions& o, int64_t ctx) {
  if (o.max_running < 1) fail("--parallel {}: it must be at least 1", o.max_running);
  check_kv_spec(o.kv, m.cfg.head_dim);
  check_kv_context(o.kv, ctx);
  const int64_t bs = block_size_of(o);
  if (o.policy.active() && o.spec)
    fail("--kv-policy {} with --spec: rejected drafts are taken back from a cache that evicts", kv_policy_name(o.policy));
  check_kv_policy(o.policy, o.kv, ctx, o.batch_tokens);
  // A request holds at most the blocks of its context, or of its sinks and window.
  const int64_t per_seq = blocks_for(o.policy, bs, ctx);
  if (o.kv_memory > 0) {
    if (o.kv_blocks != 0) fail("--kv-memory and --kv-blocks: give one of them");
    double block_bytes = 0, stage_bytes = 0;
    for (int64_t l = 0; l < m.cfg.n_layers; l++) {
      const int64_t d = m.cfg.kv_dim(l);
      block_bytes += double(o.kv.k_bytes(bs, d) + o.kv.v_bytes(bs, d));
      const int64_t history = o.spec ? o.spec->options().draft_max + 1 : 0;  // PagedKvCache::set_rollback
      if (o.kv.kivi()) stage_bytes += double(KiviStage::reserved_bytes(o.kv, d, history));
    }
    const double pool = o.kv_memory - stage_bytes * double(o.max_running);
    const int64_t blocks = pool > 0 ? int64_t(pool / block_bytes) : 0;
    if (blocks < per_seq)
      fail("--kv-memory {:.1f} MiB holds {} blocks of {} positions ({} cache, with {} sequences' staged rows), fewer "
           "than one request's context of {} (--ctx-size)",
           o.kv_memory / (1 << 20), blocks, bs, kv_spec_name(o.kv), o.max_running, ctx);
    return blocks;
  }
  if (o.kv_blocks == 0) return per_seq * o.max_running;
  if (o.kv_blocks < per_seq)
    fail("--kv-blocks {} holds {} positions, fewer than one request's context of {} (--ctx-size)", o.kv_blocks,
         o.kv_blocks * bs, ctx);
  return o.kv_blocks;
}

int64_t context_of(const Model& m, const EngineOptions& o) {
  if (o.ctx_size < 0) fail("--ctx-size {} is negative", o.ctx_size);
  const int64_t model_ctx = m.cfg.ctx_len > 0 ? m.cfg.ctx_len : 4096;
  return o.ctx_size > 0 ? o.ctx_size : std::min<int64_t>(model_ctx, 4096);
}

Engine::Engine(const Model& m, EngineOptions opt)
    : m_(m),
      opt_(opt),
      ctx_(context_of(m, opt)),
      cache_(m.cfg, blocks_of(m, opt, ctx_), block_size_of(opt), opt.kv, opt.policy),
      batch_(m, cache_, opt.batch_tokens),
      sched_(batch_, SchedulerOptions{opt.max_running, opt.batch_tokens, opt.spec}) {
  if (!m.tokenizer) fail("{}: the model has no tokenizer", m.path);
  if (opt.max_waiting < 1) fail("--max-queue {}: it must be at least 1", opt.max_waiting);
  metrics_.kv_blocks = cache_.n_blocks();
  metrics_.block_size = cache_.block_size();
  metrics_.kv_bytes_per_token = cache_.bytes_per_position();
  metrics_.kv_pool_bytes = cache_.pool_bytes();
}

Engine::~Engine() {
  for (auto& [id, sink] : sinks_) sink(StepEvent{id, -1, FinishReason::Cancelled, {}});
}

void Engine::stop() {
  std::lock_guard lk(mu_);
  stopping_ = true;
  wake_.notify_all();
}

int64_t Engine::submit(Request r, Sink sink) {
  const int64_t V = m_.cfg.n_vocab;
  if (r.prompt.empty()) fail("the prompt is empty");
  if (r.max_tokens < 1) fail("max_tokens is {}; it must be at least 1", r.max_tokens);
  for (int32_t t : r.prompt)
    if (t < 0 || t >= V) fail("token id {} is outside the vocabulary of {}", t, V);
  if (int64_t(r.prompt.size()) >= ctx_)
    fail("the prompt has {} tokens, which does not fit the context of {}", r.prompt.size(), ctx_);
  if (!opt_.policy.bounded()) r.max_tokens = std::min<int64_t>(r.max_tokens, ctx_ - int64_t(r.prompt.size()));
  std::lock_guard lk(mu_);
  if (!accepting_ || stopping_) throw QueueFull("the server is shutting down");
  if (int64_t(inbox_.size()) + metrics_.waiting >= opt_.max_waiting)
    throw QueueFull(fmt::format("{} requests are waiting already (--max-queue)", opt_.max_waiting));
  r.id = next_id_++;
  const int64_t id = r.id;
  sinks_.emplace(id, sink);
  inbox_.emplace_back(std::move(r), std::move(sink));
  wake_.notify_all();
  return id;
}

void Engine::cancel(int64_t id) {
  std::lock_guard lk(mu_);
  if (!sinks_.erase(id)) return;
  auto it = std::find_if(inbox_.begin(), inbox_.end(), [&](const auto& e) { return e.first.id == id; });
  if (it != inbox_.end()) {
    inbox_.erase(it);
  } else {
    cancels_.push_back(id);
  }
  metrics_.requests_cancelled++;
  wake_.notify_all();
  if (sinks_.empty()) idle_.notify_all();
}

void Engine::drain(double seconds) {
  std::unique_lock lk(mu_);
  accepting_ = false;
  idle_.wait_for(lk, std::chrono::duration<double>(seconds), [&] { return sinks_.empty(); });
  for (auto& [id, sink] : sinks_) {
    sink(StepEvent{id, -1, FinishReason::Cancelled, {}});
    cancels_.push_back(id);
    metrics_.requests_cancelled++;
  }
  sinks_.clear();
  inbox_.clear();  // their sinks were told above; the scheduler never sees them
  wake_.notify_all();
}

EngineMetrics Engine::metrics() const {
  std::lock_guard lk(mu_);
  return metrics_;
}

void Engine::run() {
  std::unique_lock lk(mu_);
  bool busy = false;  // the scheduler holds requests (read only on this thread)
  for (;;) {
    wake_.wait(lk, [&] { return stopping_ || !inbox_.empty() || !cancels_.empty() || busy; });
    if (stopping_) return;
    auto inbox = std::move(inbox_);
    auto cancels = std::move(cancels_);
    inbox_.clear();
    cancels_.clear();
    lk.unlock();

    for (int64_t id : cancels) sched_.cancel(id);
    std::vector<int64_t> refused;
    for (auto& [r, sink] : inbox) {
      const int64_t id = r.id;
      try {
        sched_.submit(std::move(r));
      } catch (const std::exception&) {
        refused.push_back(id);  // checked at submit(): not expected
      }
    }
    std::vector<StepEvent> events;
    StepStats st;
    double seconds = 0;
    if (!sched_.idle()) {
      const auto t0 = std::chrono::steady_clock::now();
      try {
        events = sched_.step();
      } catch (const std::exception& e) {
        // A step that throws (out of memory, a bug) ends the requests it held,
        // not the server: their clients get an error and the next ones are served.
        fmt::print(stderr, "lmpress serve: error: a step failed ({}); its {} requests are cancelled\n", e.what(),
                   sched_.n_running() + sched_.n_waiting());
        for (int64_t id : sched_.request_ids()) {
          sched_.cancel(id);
          refused.push_back(id);
        }
        events.clear();
      }
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      st = sched_.last_step();
    }
    busy = !sched_.idle();

    lk.lock();
    for (int64_t id : refused) events.push_back(StepEvent{id, -1, FinishReason::Error, {}});
    EngineMetrics& mt = metrics_;
    for (const StepEvent& e : events) {
      if (e.token >= 0) mt.generated_tokens++;
      auto it = sinks_.find(e.id);
      if (it == sinks_.end()) continue;  // cancelled meanwhile
      it->second(e);
      if (e.finished != FinishReason::None) {
        sinks_.erase(it);
        (e.finished == FinishReason::Cancelled || e.finished == FinishReason::Error ? mt.requests_cancelled
                                                                                     : mt.requests_finished)++;
      }
    }
    if (st.sequences > 0) {
      const double all = double(st.prompt_tokens + st.decode_tokens);
      mt.steps++;
      mt.busy_sequences += st.sequences;
      mt.prompt_tokens += st.prompt_tokens;
      mt.prompt_seconds += seconds * double(st.prompt_tokens) / all;
      mt.generated_seconds += seconds * double(st.decode_tokens) / all;
    }
    mt.preemptions = sched_.preemptions();
    mt.running = sched_.n_running();
    mt.waiting = sched_.n_waiting();
    mt.kv_blocks_used = cache_.used_blocks();
    mt.kv_cached_blocks = cache_.cached_free_blocks();
    mt.kv_staged_bytes = cache_.staged_bytes();
    mt.prefix_query_tokens = cache_.prefix_query_tokens();
    mt.prefix_hit_tokens = cache_.prefix_hit_tokens();
    mt.spec_passes = sched_.spec_stats().steps;
    mt.spec_draft_tokens = sched_.spec_stats().drafted;
    mt.spec_accepted_tokens = sched_.spec_stats().accepted;
    if (sinks_.empty()) idle_.notify_all();
  }
}

}  // namespace lmpress::serve
