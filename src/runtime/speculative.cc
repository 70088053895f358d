#include "runtime/speculative.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/repack.h"

namespace lmpress {

NgramDrafter::NgramDrafter(int64_t ngram_min, int64_t ngram_max, float p_min)
    : min_(ngram_min), max_(ngram_max), p_min_(p_min) {
  if (ngram_min < 1 || ngram_max < ngram_min) fail("ngram drafter: n-gram sizes {}..{} are out of range", ngram_min, ngram_max);
  tally_.resize(size_t(ngram_max + 1));
}

double NgramDrafter::estimate(int64_t n, int64_t pos) const {
  constexpr double kPrior = 4;  // an unseen length and position starts as always accepted, and a miss or two do not end it
  const auto& t = tally_[size_t(n)];
  const size_t i = size_t(pos);
  return i < t.size() ? (double(t[i].kept) + kPrior) / (double(t[i].tried) + kPrior) : 1.0;
}

void NgramDrafter::score(const std::vector<int32_t>& seq) {
  // Drops each candidate whose outcome is known, tallied, or unknowable.
  std::erase_if(pending_, [&](const Candidate& c) {
    if (seq.size() < c.at) return true;  // the sequence was cut back: its outcome is unknown
    const size_t seen = std::min(c.tokens.size(), seq.size() - c.at);
    size_t i = 0;
    while (i < seen && seq[c.at + i] == c.tokens[i]) i++;
    if (i == seen && seen < c.tokens.size()) return false;  // no mismatch yet and tokens still to come
    auto& t = tally_[size_t(c.n)];
    const size_t last = std::min(i + 1, c.tokens.size());  // positions up to the first miss (conditional rates)
    if (t.size() < last) t.resize(last);
    for (size_t j = 0; j < last; j++) t[j].tried++, t[j].kept += j < i;
    return true;
  });
}

void NgramDrafter::propose(const std::vector<int32_t>& seq, int64_t max, std::vector<int32_t>& draft,
                           std::vector<Sampler::Dist>& q) {
  draft.clear();
  q.clear();
  score(seq);
  const int64_t n = int64_t(seq.size());
  for (int64_t k = std::min(max_, n - 1); k >= min_; k--) {
    const int32_t* tail = seq.data() + n - k;
    // The latest earlier occurrence: text being repeated or edited is most
    // often continued as it went on there most recently.
    for (int64_t j = n - k - 1; j >= 0; j--) {
      if (!std::equal(tail, tail + k, seq.data() + j)) continue;
      const int64_t from = j + k, to = std::min(n, from + max);
      if (to <= from) continue;
      pending_.push_back({std::vector<int32_t>(seq.begin() + from, seq.begin() + to), seq.size(), k});
      int64_t len = 0;
      while (len < to - from && estimate(k, len) >= double(p_min_)) len++;
      draft.assign(seq.begin() + from, seq.begin() + from + len);
      return;
    }
  }
}

ModelDrafter::ModelDrafter(const Model& m, std::vector<bool> skip, int64_t n_ctx, const SamplerOptions& s, float p_min,
                           int64_t n_vocab)
    : st_(m, n_ctx), sampler_(s), p_min_(p_min), n_vocab_(std::min(n_vocab, m.cfg.n_vocab)) {
  st_.skip_layers(std::move(skip));
  logits_.resize(size_t(m.cfg.n_vocab));
}

void ModelDrafter::propose(const std::vector<int32_t>& seq, int64_t max, std::vector<int32_t>& draft,
                           std::vector<Sampler::Dist>& q) {
  draft.clear();
  q.clear();
  if (seq.empty() || max < 1) return;
  // Keep what the cache shares with seq; the last token is evaluated again
  // when nothing is new, for its logits.
  size_t common = 0;
  while (common < cached_.size() && common < seq.size() && cached_[common] == seq[common]) common++;
  common = std::min(common, seq.size() - 1);
  st_.truncate(int64_t(common));
  cached_.resize(common);
  const int64_t room = st_.n_ctx() - int64_t(seq.size());
  if (room < 1) return;
  max = std::min(max, room);
  st_.eval(seq.data() + common, int64_t(seq.size() - common), logits_.data(), false);
  cached_ = seq;
  for (int64_t i = 0; i < max; i++) {
    int32_t t;
    if (sampler_.greedy()) {
      t = argmax(logits_.data(), n_vocab_);
      if (std::exp(double(token_logprobs(logits_.data(), n_vocab_, t, 0).logprob)) < p_min_) break;
    } else {
      sampler_.distribution(logits_.data(), n_vocab_, dist_);
      // Drafting stops with the probability of the tokens below p_min; a
      // token drafted is drawn from the rest, and that is its q.
      Sampler::Dist kept;
      double z = 0;
      for (const auto& [id, p] : dist_)
        if (p >= p_min_) {
          kept.emplace_back(id, p);
          z += p;
        }
      if (kept.empty() || sampler_.uniform() >= z) break;
      for (auto& e : kept) e.second /= z;
      t = sampler_.draw(kept);
      q.push_back(std::move(kept));
    }
    draft.push_back(t);
    if (i + 1 < max) {
      st_.eval(&t, 1, logits_.data(), false);
      cached_.push_back(t);
    }
  }
}

std::vector<bool> parse_layer_set(const std::string& list, int64_t n_layers, const std::string& what) {
  std::vector<bool> skip(size_t(n_layers), false);
  size_t at = 0;
  auto number = [&](const std::string& s) {
    const int64_t v = parse_block_number(s);
    if (v < 0) fail("{} '{}': '{}' is not a block number", what, list, s);
    if (v >= n_layers) fail("{} '{}': block {} is outside the model's {} blocks (0..{})", what, list, v, n_layers, n_layers - 1);
    return v;
  };
  while (at <= list.size()) {
    const size_t comma = std::min(list.find(',', at), list.size());
    const std::string item = list.substr(at, comma - at);
    const size_t dash = item.find('-');
    const int64_t a = number(item.substr(0, dash));
    const int64_t b = dash == std::string::npos ? a : number(item.substr(dash + 1));
    if (b < a) fail("{} '{}': the range {} is backwards", what, list, item);
    for (int64_t l = a; l <= b; l++) skip[size_t(l)] = true;
    at = comma + 1;
  }
  if (std::find(skip.begin(), skip.end(), false) == skip.end())
    fail("{} '{}' skips every block of the model: nothing would be left to draft with", what, list);
  return skip;
}

void check_draft_vocab(const Model& target, const Model& draft, const std::string& path) {
  if (!draft.tokenizer) fail("--spec: the draft {} has no tokenizer", path);
  const Vocab& a = target.tokenizer->vocab();
  const Vocab& b = draft.tokenizer->vocab();
  if (a.model != b.model)
    fail("--spec: the draft {} has a {} tokenizer, the target a {} one: a draft must share the target's vocabulary",
         path, b.model, a.model);
  if (a.bos != b.bos || a.eos != b.eos)
    fail("--spec: the draft {}'s BOS/EOS ids ({}/{}) differ from the target's ({}/{})", path, b.bos, b.eos, a.bos, a.eos);
  const size_t diff = a.size() > b.size() ? a.size() - b.size() : b.size() - a.size();
  if (diff > 128)
    fail("--spec: the draft {} has {} tokens, the target {}: more than 128 apart", path, b.size(), a.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); i++)
    if (a.tokens[i] != b.tokens[i])
      fail("--spec: token {} is '{}' in the draft {} and '{}' in the target: the vocabularies differ", i, b.tokens[i],
           path, a.tokens[i]);
}

void check_draft_lengths(const SpecOptions& o, int64_t n_ctx) {
  if (o.draft_max < 1 || o.draft_max >= n_ctx)
    fail("--draft-max {}: it must be in [1, {}) (the context)", o.draft_max, n_ctx);
  if (o.draft_min < 0 || o.draft_min > o.draft_max)
    fail("--draft-min {}: it must be in [0, --draft-max {}]", o.draft_min, o.draft_max);
  if (!(o.p_min >= 0.0f && o.p_min <= 1.0f)) fail("--draft-p-min {}: it must be in [0, 1]", o.p_min);
}

DraftSource::DraftSource(const SpecOptions& o, const Model& target, int64_t n_ctx) : o_(o), n_ctx_(n_ctx) {
  check_draft_lengths(o, n_ctx);
  if (!target.tokenizer) fail("--spec: the target {} has no tokenizer", target.path);
  n_vocab_ = std::min<int64_t>(target.cfg.n_vocab, int64_t(target.tokenizer->vocab().size()));
  const std::string& t = o.type;
  auto draft_file = [&](const std::string& path) {
    if (path.empty()) fail("--spec {}: the draft model's path is missing", t);
    owned_ = load_for_inference(path);
    check_draft_vocab(target, *owned_, path);
    model_ = owned_.get();
  };
  if (t == "ngram") {
    return;
  } else if (t.rfind("ngram:", 0) == 0) {
    const std::string r = t.substr(6);
    const size_t dash = r.find('-');
    ngram_min_ = parse_block_number(r.substr(0, dash));
    ngram_max_ = dash == std::string::npos ? ngram_min_ : parse_block_number(r.substr(dash + 1));
    if (ngram_min_ < 1 || ngram_max_ < ngram_min_ || ngram_max_ > 64)
      fail("--spec {}: write ngram:MIN-MAX, the n-gram lengths matched, 1 <= MIN <= MAX <= 64", t);
  } else if (t.rfind("draft:", 0) == 0) {
    draft_file(t.substr(6));
  } else if (t.rfind("self:file:", 0) == 0) {
    draft_file(t.substr(10));
  } else if (t.rfind("self:skip:auto", 0) == 0) {
    fail("--spec {}: the blocks are chosen on --spec-calib text by the command, not here", t);
  } else if (t.rfind("self:skip:", 0) == 0) {
    model_ = &target;
    skip_ = parse_layer_set(t.substr(10), target.cfg.n_layers, "--spec self:skip");
  } else if (t.rfind("self:exit:", 0) == 0) {
    const int64_t k = parse_block_number(t.substr(10)), L = target.cfg.n_layers;
    if (k < 0 || k >= L - 1)
      fail("--spec {}: the exit block must be in [0, {}] (after block {} the model is whole)", t, L - 2, L - 1);
    model_ = &target;
    skip_.assign(size_t(L), false);
    for (int64_t l = k + 1; l < L; l++) skip_[size_t(l)] = true;
  } else {
    fail("--spec '{}': unknown type (ngram, ngram:MIN-MAX, draft:MODEL, self:skip:LAYERS, self:exit:K, self:file:PATH)", t);
  }
}

std::unique_ptr<Drafter> DraftSource::make(const SamplerOptions& s) const {
  if (!model_) return std::make_unique<NgramDrafter>(ngram_min_, ngram_max_, o_.p_min);
  SamplerOptions ds = s;
  ds.seed = s.seed ^ 0x9e3779b97f4a7c15ull;  // the draft's own random stream
  return std::make_unique<ModelDrafter>(*model_, skip_, n_ctx_, ds, o_.p_min, n_vocab_);
}

int64_t verify_draft(Sampler& s, const SamplerOptions& o, float* rows, int64_t row_stride, int64_t n_sample,
                     const std::vector<int32_t>& seq, const std::vector<int32_t>& draft,
                     const std::vector<Sampler::Dist>& q, int32_t& next, SpecScratch& scratch) {
  std::vector<int32_t>& hist = scratch.history;
  for (size_t a = 0;; a++) {
    float* L = rows + int64_t(a) * row_stride;
    // Row a's penalties look at seq and draft[0..a): seq itself for the first
    // row (no copy on a plain decoding step), then a copy grown by one draft
    // per accepted row.
    const std::vector<int32_t>* h = &seq;
    if (a > 0 && o.has_penalties()) {
      if (a == 1) hist.assign(seq.begin(), seq.end());
      hist.push_back(draft[a - 1]);
      h = &hist;
    }
    apply_penalties(L, n_sample, h->data(), int64_t(h->size()), o);
    if (a == draft.size()) {
      next = s.sample(L, n_sample);
      return int64_t(a);
    }
    bool ok;
    if (s.greedy()) {
      next = argmax(L, n_sample);
      ok = next == draft[a];
    } else {
      if (scratch.dense.size() < size_t(n_sample)) scratch.dense.assign(size_t(n_sample), 0.0);
      s.distribution(L, n_sample, scratch.p);
      ok = speculative_accept(s, scratch.p, q.empty() ? Sampler::Dist{} : q[a], draft[a], next, scratch.dense);
    }
    if (!ok) return int64_t(a);
  }
}

bool speculative_accept(Sampler& s, const Sampler::Dist& p, const Sampler::Dist& q, int32_t x, int32_t& replacement,
                        std::vector<double>& dense) {
  double px = 0;
  for (const auto& [id, pr] : p)
    if (id == x) px = pr;
  if (q.empty()) {
    dense[size_t(x)] = 1.0;
  } else {
    for (const auto& [id, pr] : q) dense[size_t(id)] = pr;
  }
  const double qx = dense[size_t(x)];
  bool accepted = qx > 0 && s.uniform() < std::min(1.0, px / qx);
  if (!accepted) {
    Sampler::Dist r;
    double sum = 0;
    for (const auto& [id, pr] : p) {
      const double w = std::max(0.0, pr - dense[size_t(id)]);
      if (w > 0) r.emplace_back(id, w);
      sum += w;
    }
    // p ≤ q everywhere means p = q: then x was accepted with probability 1.
    replacement = sum > 0 ? s.draw(r) : s.draw(p);
  }
  if (q.empty()) {
    dense[size_t(x)] = 0;
  } else {
    for (const auto& e : q) dense[size_t(e.first)] = 0;
  }
  return accepted;
}

nlohmann::ordered_json spec_json(const SpecOptions& o, const SpecStats& s) {
  std::vector<double> by_position;
  for (size_t i = 0; i < s.drafted_at.size() && s.drafted_at[i] > 0; i++)
    by_position.push_back(double(s.accepted_at[i]) / double(s.drafted_at[i]));
  return {{"type", o.type},
          {"draft_max", o.draft_max},
          {"draft_min", o.draft_min},
          {"p_min", o.p_min},
          {"steps", s.steps},
          {"drafted", s.drafted},
          {"accepted", s.accepted},
          {"acceptance_rate", s.acceptance_rate()},
          {"acceptance_by_position", by_position},
          {"mean_accepted", s.mean_accepted()},
          {"draft_seconds", s.draft_seconds},
          {"verify_seconds", s.verify_seconds}};
}

std::string spec_summary(const nlohmann::ordered_json& j) {
  return fmt::format(
      "speculative ({}): {} passes, {} drafted, {} accepted ({:.1f}%), {:.2f} accepted per pass; draft {:.2f} s, "
      "verify {:.2f} s",
      j.at("type").get<std::string>(), j.at("steps").get<int64_t>(), j.at("drafted").get<int64_t>(),
      j.at("accepted").get<int64_t>(), 100.0 * j.at("acceptance_rate").get<double>(),
      j.at("mean_accepted").get<double>(), j.at("draft_seconds").get<double>(), j.at("verify_seconds").get<double>());
}

}  // namespace lmpress
