// Speculative decoding (Leviathan et al. 2023, Chen et al. 2023): a cheap
// drafter proposes a few tokens, the target model checks them all in one
// batched forward pass, and the longest prefix it accepts plus one token of
// its own are kept; the target's KV cache forgets the rest. Decoding reads the
// weights once per pass, so each accepted token is a weight pass saved.
//
// Exactness: greedy output equals plain decoding's token for token (the
// verification pass runs the drafted tokens as decoding steps of BatchEngine,
// whose logits equal a lone InferenceState's: batch.h). With sampling, a
// drafted token x drawn from the draft's q is accepted with probability
// min(1, p(x)/q(x)), else the token is drawn from max(0, p − q) normalized,
// so every output token is distributed as the target's p (after its
// penalties, temperature and filters).
//
// Drafters: prompt lookup (the tokens that followed the latest earlier
// occurrence of the last n tokens; no second model), a second model with the
// target's vocabulary (another file, a compressed copy of the target), or the
// target itself with blocks skipped (layer skipping; early exit after block K
// is skipping every block after K).
#pragma once
#include <nlohmann/json.hpp>
#include "core/parse.h"
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/forward.h"
#include "model/model.h"
#include "runtime/sampler.h"

namespace lmpress {

struct SpecStats {
  int64_t steps = 0;                             // verification passes
  int64_t drafted = 0, accepted = 0;             // tokens proposed, tokens the target kept
  std::vector<int64_t> drafted_at, accepted_at;  // by draft position (0: the first proposed)
  double draft_seconds = 0, verify_seconds = 0;
  double acceptance_rate() const { return drafted > 0 ? double(accepted) / double(drafted) : 0.0; }
  // Accepted tokens per verification pass (each pass also yields one of the target's own).
  double mean_accepted() const { return steps > 0 ? double(accepted) / double(steps) : 0.0; }
  // Sums another run's statistics into these (by position too).
  SpecStats& operator+=(const SpecStats& o) {
    steps += o.steps, drafted += o.drafted, accepted += o.accepted;
    draft_seconds += o.draft_seconds, verify_seconds += o.verify_seconds;
    drafted_at.resize(std::max(drafted_at.size(), o.drafted_at.size()));
    accepted_at.resize(std::max(accepted_at.size(), o.accepted_at.size()));
    for (size_t i = 0; i < o.drafted_at.size(); i++) drafted_at[i] += o.drafted_at[i];
    for (size_t i = 0; i < o.accepted_at.size(); i++) accepted_at[i] += o.accepted_at[i];
    return *this;
  }
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  // Proposes up to `max` tokens continuing `seq` (the prompt and the output so
  // far). q[i] is the distribution draft[i] was drawn from, or empty when the
  // proposal is not sampled (q is then 1 on the token).
  virtual void propose(const std::vector<int32_t>& seq, int64_t max, std::vector<int32_t>& draft,
                       std::vector<Sampler::Dist>& q) = 0;
};

// Prompt lookup decoding: for n from ngram_max down to ngram_min, the tokens
// that followed the latest earlier occurrence of the sequence's last n tokens.
// Adaptive: every candidate draft is scored against the tokens the target then
// produced (proposed or not, so a withheld length can recover), per n-gram
// length and draft position, and a draft stops at the first token whose
// estimated acceptance — kept / tried there, after a prior of 4 kept in 4 —
// is below p_min (0: never stops).
class NgramDrafter : public Drafter {
 public:
  NgramDrafter(int64_t ngram_min = 1, int64_t ngram_max = 3, float p_min = 0);
  void propose(const std::vector<int32_t>& seq, int64_t max, std::vector<int32_t>& draft,
               std::vector<Sampler::Dist>& q) override;
  // The estimated acceptance of a draft token at `pos` from an n-gram match of length n.
  double estimate(int64_t n, int64_t pos) const;

 private:
  struct Candidate {
    std::vector<int32_t> tokens;
    size_t at;  // the sequence's length when it was made
    int64_t n;  // its n-gram length
  };
  // Scores the candidates whose outcome `seq` now shows (a mismatch, or every token seen).
  void score(const std::vector<int32_t>& seq);
  int64_t min_, max_;
  float p_min_;
  std::vector<Candidate> pending_;
  struct Tally {
    int64_t tried = 0, kept = 0;
  };
  std::vector<std::vector<Tally>> tally_;  // [n][position]
};

// A model as the draft (its own KV cache, kept across calls and cut back to
// what the sequence still shares). Greedy: it proposes its argmax while that
// has probability p_min or more. Sampling: it draws from its distribution
// restricted to the tokens of probability p_min or more (and stops drafting
// with the probability outside them), so the q it reports is the one the
// token was drawn from.
class ModelDrafter : public Drafter {
 public:
  // skip: blocks of `m` bypassed (empty: none); n_vocab: the ids it may propose.
  ModelDrafter(const Model& m, std::vector<bool> skip, int64_t n_ctx, const SamplerOptions& s, float p_min,
               int64_t n_vocab);
  void propose(const std::vector<int32_t>& seq, int64_t max, std::vector<int32_t>& draft,
               std::vector<Sampler::Dist>& q) override;

 private:
  InferenceState st_;
  std::vector<int32_t> cached_;  // the tokens whose K/V st_ holds
  Sampler sampler_;
  float p_min_;
  int64_t n_vocab_;
  std::vector<float> logits_;
  Sampler::Dist dist_;
};

struct SpecOptions {
  // "" (off), "ngram" (n-grams of 3, 2, 1 tokens), "ngram:MIN-MAX", "draft:MODEL", "self:skip:LAYERS" (e.g. 3,5-7, or auto:N),
  // "self:exit:K" (blocks after K skipped), "self:file:PATH".
  std::string type;
  int64_t draft_max = 16;  // tokens proposed per pass
  int64_t draft_min = 0;   // fewer proposed: the pass runs without them
  float p_min = 0.75f;     // a draft stops below this probability (ngram: its estimated acceptance)
  // Calibration text for "self:skip:auto:N" (the CLI turns it into a block
  // list with eval/layer_skip.h before a DraftSource is made).
  std::string calib;
};

// Fails naming --draft-max, --draft-min or --draft-p-min when o's lengths do
// not fit a context of n_ctx tokens (DraftSource checks them first too).
void check_draft_lengths(const SpecOptions& o, int64_t n_ctx);

// What --spec TYPE names, for `target`: loads a draft file once and makes
// a drafter per sequence. Throws naming the option for a bad type or draft
// length, a draft whose vocabulary differs, a skip set outside the model or
// removing every block.
class DraftSource {
 public:
  DraftSource(const SpecOptions& o, const Model& target, int64_t n_ctx);
  // A drafter for one sequence sampled with `s` (its own random stream).
  std::unique_ptr<Drafter> make(const SamplerOptions& s) const;
  const SpecOptions& options() const { return o_; }

 private:
  SpecOptions o_;
  int64_t n_ctx_, n_vocab_;
  int64_t ngram_min_ = 1, ngram_max_ = 3;  // prompt lookup's n-gram lengths
  std::unique_ptr<Model> owned_;  // a draft file
  const Model* model_ = nullptr;  // null: prompt lookup
  std::vector<bool> skip_;
};

// Scratch for verify_draft, kept across calls.
struct SpecScratch {
  Sampler::Dist p;
  std::vector<double> dense;
  std::vector<int32_t> history;
};

// The target's verdict on `draft`: rows[i] (row_stride floats apart, i =
// 0..draft.size()) are its logits after the sequence `seq` and draft[0..i).
// Returns how many drafts it accepts, and in `next` the token it adds after
// them (its own choice where it rejected one, else a sample of the last row).
// The penalties are applied to the rows in place, each over its own history.
int64_t verify_draft(Sampler& s, const SamplerOptions& o, float* rows, int64_t row_stride, int64_t n_sample,
                     const std::vector<int32_t>& seq, const std::vector<int32_t>& draft,
                     const std::vector<Sampler::Dist>& q, int32_t& next, SpecScratch& scratch);

// Throws unless `draft` (read from `path`) tokenizes as `target` does: the
// same tokenizer kind and special tokens, the same token at every id both
// have, sizes within 128 (llama.cpp's rule).
void check_draft_vocab(const Model& target, const Model& draft, const std::string& path);

// Parses "3,5-7" into flags for n_layers blocks; throws naming `what`.
std::vector<bool> parse_layer_set(const std::string& list, int64_t n_layers, const std::string& what);

// Speculative sampling's test of one drafted token x against the target's p:
// true when accepted; else `replacement` is drawn from max(0, p − q)
// normalized. q empty: a proposal that was not sampled (q = 1 on x). `dense`
// is scratch of at least the vocabulary's size, all zero (left so).
bool speculative_accept(Sampler& s, const Sampler::Dist& p, const Sampler::Dist& q, int32_t x, int32_t& replacement,
                        std::vector<double>& dense);

// Speculative decoding's statistics: a report's "spec" object, and that object as one line of text.
nlohmann::ordered_json spec_json(const SpecOptions& o, const SpecStats& s);
std::string spec_summary(const nlohmann::ordered_json& j);

}  // namespace lmpress
