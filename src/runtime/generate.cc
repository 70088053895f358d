#include "runtime/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "model/forward.h"
#include "runtime/batch.h"
#include "runtime/kv_cache.h"

namespace lmpress {

std::string take_complete_utf8(std::string& buf) {
  size_t cut = buf.size();
  // Walk back over at most 3 continuation bytes to the last lead byte.
  for (size_t k = 1; k <= 4 && k <= buf.size(); k++) {
    uint8_t c = uint8_t(buf[buf.size() - k]);
    if ((c & 0xc0) == 0x80) continue;
    size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (need > k) cut = buf.size() - k;
    break;
  }
  std::string out = buf.substr(0, cut);
  buf.erase(0, cut);
  return out;
}

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::Eos: return "eos";
    case StopReason::Length: return "length";
    case StopReason::Context: return "context";
    case StopReason::Caller: return "caller";
  }
  return "?";
}

namespace {

// Hands generated tokens on as text and decides when generation ends.
class Emitter {
 public:
  Emitter(const Model& m, const GenerateOptions& opt, const std::function<void(const std::string&)>& on_text,
          GenerateStats& s, std::vector<int32_t>& toks)
      : m_(m), opt_(opt), on_text_(on_text), s_(s), toks_(toks), eos_(m.tokenizer->vocab().eos) {}
  // Takes `id`; false when generation ends here (end of sequence: `id` is
  // not taken; or the n_predict-th token).
  bool take(int32_t id) {
    if (opt_.stop_at_eos && id == eos_) {
      s_.stopped = StopReason::Eos;
      return false;
    }
    s_.tokens.push_back(id);
    toks_.push_back(id);  // the history the penalties look at
    s_.n_generated++;
    pending_ += m_.tokenizer->decode_token(id);
    if (on_text_) {
      std::string out = take_complete_utf8(pending_);
      if (!out.empty()) on_text_(out);
    }
    if (opt_.on_token && !opt_.on_token(id)) {
      s_.stopped = StopReason::Caller;
      return false;
    }
    return s_.n_generated < opt_.n_predict;
  }
  void finish() {
    if (on_text_ && !pending_.empty()) on_text_(pending_);
    pending_.clear();
  }

 private:
  const Model& m_;
  const GenerateOptions& opt_;
  const std::function<void(const std::string&)>& on_text_;
  GenerateStats& s_;
  std::vector<int32_t>& toks_;
  int32_t eos_;
  std::string pending_;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Speculative decoding (speculative.h). The target runs on a BatchEngine, so
// a pass over [last token, drafts...] as decoding steps gives each the logits
// plain decoding would, and rejected drafts are cut from its paged cache.
GenerateStats generate_speculative(const Model& m, std::vector<int32_t> toks, int64_t n_ctx, const GenerateOptions& opt,
                                   const std::function<void(const std::string&)>& on_text) {
  if (opt.draft_max < 1 || opt.draft_max >= n_ctx)
    fail("speculative decoding: draft_max {} must be in [1, {}) (the context)", opt.draft_max, n_ctx);
  if (opt.draft_min < 0 || opt.draft_min > opt.draft_max)
    fail("speculative decoding: draft_min {} must be in [0, draft_max {}]", opt.draft_min, opt.draft_max);
  GenerateStats s;
  const int64_t n_prompt = int64_t(toks.size());
  s.n_prompt = n_prompt;
  const int64_t V = m.cfg.n_vocab;
  const int64_t n_sample = std::min<int64_t>(V, int64_t(m.tokenizer->vocab().size()));
  const int64_t block = opt.kv.round_positions(16);  // whole KIVI groups (generate() checked the group)
  PagedKvCache cache(m.cfg, (n_ctx + block - 1) / block, block, opt.kv);
  BatchEngine engine(m, cache, std::max<int64_t>(kGenerateBatch, opt.draft_max + 1));
  s.cache_bytes_per_token = cache.bytes_per_position();
  s.cache_bytes = cache.pool_bytes();
  const PagedKvCache::SeqId seq = 0;
  cache.set_rollback(opt.draft_max + 1);  // rejected drafts are cut from the cache
  cache.open(seq, toks.data(), n_prompt);
  std::vector<float> logits(size_t(V * (opt.draft_max + 1)));
  std::vector<BatchToken> batch;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t start = 0; start < n_prompt; start += kGenerateBatch) {
    batch.clear();
    for (int64_t pos = start; pos < std::min(n_prompt, start + kGenerateBatch); pos++)
      batch.push_back({toks[size_t(pos)], seq, pos, pos == n_prompt - 1, prompt_kind(pos, n_prompt)});
    engine.forward(batch, logits.data());
  }
  s.prompt_seconds = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();

  Sampler sampler(opt.sampling);
  Emitter emit(m, opt, on_text, s, toks);
  SpecStats& sp = s.spec;
  sp.drafted_at.assign(size_t(opt.draft_max), 0);
  sp.accepted_at.assign(size_t(opt.draft_max), 0);
  std::vector<int32_t> draft;
  std::vector<Sampler::Dist> q;
  SpecScratch scratch;
  // toks ends with a token the cache does not hold yet: the next pass's first.
  bool more = opt.n_predict > 0;
  if (more) {
    apply_penalties(logits.data(), n_sample, toks.data(), int64_t(toks.size()), opt.sampling);
    more = emit.take(sampler.sample(logits.data(), n_sample));
  }
  while (more) {
    const int64_t len = int64_t(toks.size());  // the cache holds len - 1 positions
    if (len >= n_ctx) {
      s.stopped = StopReason::Context;
      break;
    }
    // The drafts and the token after them must fit the context and n_predict.
    const int64_t room = std::min({opt.draft_max, n_ctx - len - 1, opt.n_predict - s.n_generated - 1});
    draft.clear();
    q.clear();
    if (room >= std::max<int64_t>(1, opt.draft_min)) {
      const auto td = std::chrono::steady_clock::now();
      opt.drafter->propose(toks, room, draft, q);
      sp.draft_seconds += seconds_since(td);
      if (int64_t(draft.size()) < opt.draft_min) draft.clear();
    }
    const auto tv = std::chrono::steady_clock::now();
    batch.clear();
    batch.push_back({toks.back(), seq, len - 1, true, false});
    for (size_t i = 0; i < draft.size(); i++) batch.push_back({draft[i], seq, len + int64_t(i), true, false});
    engine.forward(batch, logits.data());
    int32_t next = -1;
    const size_t a = size_t(verify_draft(sampler, opt.sampling, logits.data(), V, n_sample, toks, draft, q, next, scratch));
    cache.truncate(seq, len + int64_t(a));
    sp.verify_seconds += seconds_since(tv);
    sp.steps++;
    sp.drafted += int64_t(draft.size());
    sp.accepted += int64_t(a);
    for (size_t i = 0; i < draft.size(); i++) {
      sp.drafted_at[i]++;
      if (i < a) sp.accepted_at[i]++;
    }
    for (size_t i = 0; i < a && more; i++) more = emit.take(draft[i]);
    if (more) more = emit.take(next);
  }
  emit.finish();
  s.gen_seconds = seconds_since(t1);
  return s;
}

}  // namespace

// The prompt's tokens, checked against the context and the cache options.
std::vector<int32_t> prompt_tokens(const Model& m, const std::string& prompt, const GenerateOptions& opt) {
  if (!m.tokenizer) fail("{}: the model has no tokenizer", m.path);
  const int64_t n_ctx = opt.n_ctx > 0 ? opt.n_ctx : m.cfg.ctx_len;
  std::vector<int32_t> toks = m.tokenizer->encode(prompt, true, true);
  if (toks.empty()) fail("the prompt is empty and the model adds no BOS token");
  if (int64_t(toks.size()) >= n_ctx && !opt.policy.bounded())
    fail("the prompt has {} tokens, which does not fit the context of {} (use a shorter prompt or --ctx)", toks.size(), n_ctx);
  check_kv_spec(opt.kv, m.cfg.head_dim);
  check_kv_context(opt.kv, n_ctx);
  return toks;
}

GenerateStats generate(const Model& m, const std::string& prompt, const GenerateOptions& opt,
                       const std::function<void(const std::string&)>& on_text) {
  if (!opt.drafter) {
    Generation g(m, prompt, opt);
    int32_t id;
    std::string text;
    while (g.next(id, text)) {
      if (on_text && !text.empty()) on_text(text);
      if (opt.on_token && !opt.on_token(id)) {
        text = g.stop();
        break;
      }
    }
    // What the end released: the bytes the last token left incomplete.
    if (on_text && !text.empty()) on_text(text);
    return g.stats();
  }
  if (opt.early_exit.active())
    fail("--early-exit with --spec: early exit is for plain decoding (for an early-exit draft use --spec self:exit:K)");
  if (opt.policy.active())
    fail("--kv-policy {} with speculative decoding: rejected drafts are taken back from the cache, which eviction "
         "rearranges; drop one of them",
         kv_policy_name(opt.policy));
  const int64_t n_ctx = opt.n_ctx > 0 ? opt.n_ctx : m.cfg.ctx_len;
  return generate_speculative(m, prompt_tokens(m, prompt, opt), n_ctx, opt, on_text);
}

struct Generation::Impl {
  const Model& m;
  GenerateOptions opt;
  int64_t n_ctx;
  std::vector<int32_t> toks;  // the prompt, then the generated tokens: the penalties' history
  InferenceState st;
  std::vector<float> logits;
  Sampler sampler;
  int64_t n_sample;
  std::string text;  // what the Emitter hands out for the current token
  std::function<void(const std::string&)> sink = [this](const std::string& t) { text += t; };
  std::unique_ptr<Emitter> emit;
  Impl(const Model& model, const GenerateOptions& o)
      : m(model), opt(o), n_ctx(o.n_ctx > 0 ? o.n_ctx : model.cfg.ctx_len),
        st(model, n_ctx, kGenerateBatch, o.kv, o.policy), logits(size_t(model.cfg.n_vocab)), sampler(o.sampling),
        n_sample(std::min<int64_t>(model.cfg.n_vocab, int64_t(model.tokenizer->vocab().size()))) {
    opt.on_token = nullptr;  // the caller's loop stops it
    opt.drafter = nullptr;
    st.set_early_exit(o.early_exit);  // the prompt, the first eval, runs whole
  }
};

Generation::Generation(const Model& m, const std::string& prompt, const GenerateOptions& opt) {
  std::vector<int32_t> toks = prompt_tokens(m, prompt, opt);
  const int64_t n_ctx = opt.n_ctx > 0 ? opt.n_ctx : m.cfg.ctx_len;
  impl_ = std::make_unique<Impl>(m, opt);
  Impl& g = *impl_;
  g.toks = std::move(toks);
  s_.n_prompt = int64_t(g.toks.size());
  s_.cache_bytes = g.st.cache_bytes();
  s_.cache_bytes_per_token = double(s_.cache_bytes) / double(opt.policy.bounded() ? opt.policy.capacity() : n_ctx);
  const auto t0 = std::chrono::steady_clock::now();
  g.st.eval(g.toks.data(), int64_t(g.toks.size()), g.logits.data(), false);
  s_.prompt_seconds = seconds_since(t0);
  g.emit = std::make_unique<Emitter>(m, g.opt, g.sink, s_, g.toks);
  more_ = opt.n_predict > 0;
}

Generation::~Generation() = default;

bool Generation::next(int32_t& id, std::string& text) {
  text.clear();
  if (!more_) return false;
  Impl& g = *impl_;
  const auto t = std::chrono::steady_clock::now();
  g.text.clear();
  bool taken = false;
  try {
    if (g.st.full()) {
      s_.stopped = StopReason::Context;
      more_ = false;
    } else {
      apply_penalties(g.logits.data(), g.n_sample, g.toks.data(), int64_t(g.toks.size()), g.opt.sampling);
      id = g.sampler.sample(g.logits.data(), g.n_sample);
      const int64_t before = s_.n_generated;
      more_ = g.emit->take(id);
      taken = s_.n_generated > before;  // not the end of sequence
      if (more_) g.st.eval(&id, 1, g.logits.data(), false);
      s_.early_exit = g.st.early_exit_stats();
    }
  } catch (...) {
    more_ = false;  // the cache may lack the token taken: no way on
    s_.gen_seconds += seconds_since(t);
    throw;
  }
  if (!more_) g.emit->finish();  // bytes held back: with the last token, or alone at the end
  text = std::move(g.text);
  s_.gen_seconds += seconds_since(t);
  return taken;
}

std::string Generation::stop() {
  if (!more_) return {};
  more_ = false;
  s_.stopped = StopReason::Caller;
  impl_->text.clear();
  impl_->emit->finish();
  return std::move(impl_->text);
}

}  // namespace lmpress
