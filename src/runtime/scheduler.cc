#include "runtime/scheduler.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/matmul.h"
#include "runtime/generate.h"

namespace lmpress {

Scheduler::Scheduler(BatchEngine& engine, SchedulerOptions opt)
    : engine_(engine), cache_(engine.cache()), opt_(opt) {
  if (opt.max_running < 1) fail("scheduler: at most {} running sequences; it must be at least 1", opt.max_running);
  if (opt.token_budget < 1 || opt.token_budget > engine.max_tokens())
    fail("scheduler: a token budget of {} is out of range (1..{}, the engine's batch)", opt.token_budget,
         engine.max_tokens());
  // Rejected drafts are cut from the cache: a KIVI cache keeps their f16 rows.
  if (opt.spec) cache_.set_rollback(opt.spec->options().draft_max + 1);
}

void Scheduler::submit(Request r) {
  const int64_t capacity = cache_.n_blocks() * cache_.block_size();
  if (r.prompt.empty()) fail("request {}: the prompt is empty", r.id);
  if (r.max_tokens < 1) fail("request {}: max_tokens is {}; it must be at least 1", r.id, r.max_tokens);
  const int64_t V = engine_.model().cfg.n_vocab;
  for (int32_t t : r.prompt)
    if (t < 0 || t >= V) fail("request {}: token id {} is outside the vocabulary of {}", r.id, t, V);
  // The last generated token is never computed, so a request holds at most
  // prompt + max_tokens - 1 positions.
  // (Under a sink-window policy, at most the blocks its window spans.)
  if (blocks_for(cache_.policy(), cache_.block_size(), int64_t(r.prompt.size()) + r.max_tokens - 1) > cache_.n_blocks())
    fail("request {}: {} prompt tokens + {} to generate exceed the KV pool's {} positions", r.id, r.prompt.size(),
         r.max_tokens, capacity);
  auto same = [&](const std::unique_ptr<Seq>& s) { return s->req.id == r.id; };
  if (std::any_of(waiting_.begin(), waiting_.end(), same) || std::any_of(running_.begin(), running_.end(), same))
    fail("request {}: the id is already in use", r.id);
  auto s = std::make_unique<Seq>();
  s->tokens = r.prompt;
  s->sampler = std::make_unique<Sampler>(r.sampling);
  s->req = std::move(r);
  waiting_.push_back(std::move(s));
}

bool Scheduler::cancel(int64_t id) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it)
    if ((*it)->req.id == id) {
      waiting_.erase(it);
      return true;
    }
  for (auto it = running_.begin(); it != running_.end(); ++it)
    if ((*it)->req.id == id) {
      cache_.close(id);
      running_.erase(it);
      return true;
    }
  return false;
}

std::vector<int64_t> Scheduler::request_ids() const {
  std::vector<int64_t> ids;
  for (const auto& s : running_) ids.push_back(s->req.id);
  for (const auto& s : waiting_) ids.push_back(s->req.id);
  return ids;
}

void Scheduler::preempt(size_t index) {
  std::unique_ptr<Seq> s = std::move(running_[index]);
  running_.erase(running_.begin() + int64_t(index));
  cache_.close(s->req.id);
  s->computed = 0;  // recomputed from its tokens (the sampler keeps its state)
  s->drafter.reset();  // its memory goes back too; a new one is made when it drafts again
  waiting_.push_front(std::move(s));
  preemptions_++;
}

std::vector<StepEvent> Scheduler::step() {
  struct Planned {
    Seq* s;
    int64_t count;
  };
  std::vector<Planned> plan;
  int64_t budget = opt_.token_budget;
  bool preempted = false;
  // Running sequences, oldest first; when the pool cannot hold one's next
  // tokens, the youngest gives its blocks back (possibly that one itself).
  for (size_t i = 0; i < running_.size() && budget > 0; i++) {
    Seq* s = running_[i].get();
    int64_t c = std::min({int64_t(s->tokens.size()) - s->computed, budget, cache_.max_step(s->req.id)});
    s->draft.clear();
    s->q.clear();
    if (opt_.spec && s->generated > 0 && c == 1 && int64_t(s->tokens.size()) - s->computed == 1) {
      // A decoding step: drafts that fit the budget and the tokens left.
      const SpecOptions& so = opt_.spec->options();
      const int64_t room = std::min({so.draft_max, budget - 1, s->req.max_tokens - s->generated - 1});
      if (room >= std::max<int64_t>(1, so.draft_min)) {
        // Made at a sequence's first draft, not at submit: a model draft holds
        // activation buffers and a KV cache, which waiting requests must not.
        if (!s->drafter) s->drafter = opt_.spec->make(s->req.sampling);
        s->drafter->propose(s->tokens, room, s->draft, s->q);
        if (int64_t(s->draft.size()) < so.draft_min) s->draft.clear();
      }
      c += int64_t(s->draft.size());
    }
    while (!cache_.reserve(s->req.id, s->computed + c)) {
      if (!s->draft.empty()) {  // speculation gives way before any request does
        c -= int64_t(s->draft.size());
        s->draft.clear();
        s->q.clear();
        continue;
      }
      if (running_.size() == 1) fail("scheduler: request {} alone does not fit the KV pool", s->req.id);
      const size_t youngest = running_.size() - 1;
      preempt(youngest);
      preempted = true;
      if (youngest == i) break;
    }
    if (i >= running_.size()) break;  // it preempted itself
    plan.push_back({s, c});
    budget -= c;
  }
  // Admission, FCFS, while nothing had to give way this step.
  while (!preempted && budget > 0 && int64_t(running_.size()) < opt_.max_running && !waiting_.empty()) {
    Seq* s = waiting_.front().get();
    s->draft.clear();  // drafts made before a preemption are void: this step computes its tokens
    s->q.clear();
    const int64_t id = s->req.id, len = int64_t(s->tokens.size());
    std::vector<uint8_t> kinds(static_cast<size_t>(len));
    for (int64_t pos = 0; pos < len; pos++) kinds[size_t(pos)] = engine_.token_kind(prompt_kind(pos, int64_t(s->req.prompt.size())));
    s->computed = cache_.open(id, s->tokens.data(), len, kinds.data());
    if (s->cached < 0) s->cached = s->computed;
    const int64_t c = std::min({len - s->computed, budget, cache_.max_step(id)});
    if (!cache_.reserve(id, s->computed + c)) {
      cache_.close(id);
      s->computed = 0;
      break;
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    plan.push_back({s, c});
    budget -= c;
  }
  std::vector<StepEvent> events;
  last_ = StepStats{};
  if (plan.empty()) return events;

  std::vector<BatchToken> batch;
  std::vector<Seq*> sampled;
  for (const Planned& p : plan) {
    const int64_t d = int64_t(p.s->draft.size());
    const int64_t end = p.s->computed + p.count - d, n_prompt = int64_t(p.s->req.prompt.size());
    const bool last = end == int64_t(p.s->tokens.size());
    // Generated tokens, recomputed after a preemption too, stay decoding steps
    // (BatchEngine's batch invariance); so do drafts, each with its logits.
    for (int64_t pos = p.s->computed; pos < end; pos++)
      batch.push_back({p.s->tokens[size_t(pos)], p.s->req.id, pos, last && pos == end - 1, prompt_kind(pos, n_prompt)});
    for (int64_t i = 0; i < d; i++) batch.push_back({p.s->draft[size_t(i)], p.s->req.id, end + i, true, false});
    if (last) sampled.push_back(p.s);
    // Positions before the last generated token are prompt work (a recomputation's too).
    const int64_t decode = last && p.s->generated > 0 && p.count - d == 1 ? 1 + d : 0;
    last_.decode_tokens += decode;
    last_.prompt_tokens += p.count - decode;
  }
  last_.sequences = int64_t(plan.size());
  const Model& m = engine_.model();
  const int64_t V = m.cfg.n_vocab;
  size_t rows = 0;
  for (Seq* s : sampled) rows += 1 + s->draft.size();
  logits_.resize(rows * size_t(V));
  engine_.forward(batch, logits_.data());
  for (const Planned& p : plan) p.s->computed += p.count;

  const int64_t n_sample = m.tokenizer ? std::min<int64_t>(V, int64_t(m.tokenizer->vocab().size())) : V;
  std::vector<int64_t> finished;
  size_t row = 0;
  for (Seq* s : sampled) {
    float* logits = logits_.data() + row * size_t(V);
    const size_t d = s->draft.size();
    row += 1 + d;
    // Log probabilities are of the model's distribution: the logits before the penalties.
    const bool want_logprobs = s->req.logprobs >= 0;
    const float* model_logits = logits;
    if (want_logprobs && s->req.sampling.has_penalties()) {  // verify_draft applies them to the rows in place
      raw_logits_.assign(logits, logits + (d + 1) * size_t(V));
      model_logits = raw_logits_.data();
    }
    auto event = [&](int32_t id, size_t at) {
      StepEvent e;
      e.id = s->req.id;
      e.cached_prompt_tokens = s->cached;
      if (want_logprobs) e.logprobs = token_logprobs(model_logits + at * size_t(V), n_sample, id, s->req.logprobs);
      const bool more = take(*s, id, e);
      events.push_back(e);
      if (!more) finished.push_back(e.id);
      return more;
    };
    int32_t next = -1;
    const int64_t a =
        verify_draft(*s->sampler, s->req.sampling, logits, V, n_sample, s->tokens, s->draft, s->q, next, scratch_);
    if (d > 0) {
      // The cache forgets the rejected drafts: it holds the last token and the accepted ones.
      s->computed -= int64_t(d) - a;
      cache_.truncate(s->req.id, s->computed);
      spec_.steps++;
      spec_.drafted += int64_t(d);
      spec_.accepted += a;
    }
    bool more = true;
    for (int64_t i = 0; i < a && more; i++) more = event(s->draft[size_t(i)], size_t(i));
    if (more) event(next, size_t(a));
  }
  for (int64_t id : finished) cancel(id);
  return events;
}

bool Scheduler::take(Seq& s, int32_t id, StepEvent& e) {
  const Model& m = engine_.model();
  const int32_t eos = m.tokenizer ? m.tokenizer->vocab().eos : -1;
  if (id == eos && !s.req.ignore_eos) {
    e.finished = FinishReason::Eos;
    return false;
  }
  e.token = id;
  s.tokens.push_back(id);
  if (++s.generated == s.req.max_tokens) {
    e.finished = FinishReason::Length;
    return false;
  }
  return true;
}

}  // namespace lmpress
