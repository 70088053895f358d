// Text generation: prompt prefill in batches, then one token at a time.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "model/kv_policy.h"
#include "model/model.h"
#include "runtime/sampler.h"
#include "runtime/speculative.h"

namespace lmpress {

// Tokens per InferenceState batch when generate() runs a prompt.
constexpr int64_t kGenerateBatch = 512;

struct GenerateOptions {
  int64_t n_predict = 64;
  int64_t n_ctx = 0;  // 0: the model's trained context
  KvCacheSpec kv;     // the target's cache
  KvPolicy policy;    // and its eviction policy (not with a drafter); a bounded one generates past n_ctx
  EarlyExit early_exit;  // dynamic depth for the decoding steps (model/early_exit.h; not with a drafter)
  SamplerOptions sampling;
  bool stop_at_eos = true;
  // Speculative decoding (speculative.h) when set: drafts of draft_min..
  // draft_max tokens checked by the target in one pass each.
  Drafter* drafter = nullptr;
  int64_t draft_max = 16, draft_min = 0;
  // Called after each generated token is taken (its text went to on_text
  // first); returning false ends generation there (StopReason::Caller).
  std::function<bool(int32_t)> on_token;
};

// Why generation ended.
enum class StopReason { Eos, Length, Context, Caller };
const char* stop_reason_name(StopReason r);  // "eos", "length", "context", "caller"

struct GenerateStats {
  int64_t n_prompt = 0, n_generated = 0;
  StopReason stopped = StopReason::Length;
  double prompt_seconds = 0, gen_seconds = 0;
  std::vector<int32_t> tokens;  // generated ids
  SpecStats spec;               // with a drafter
  EarlyExitStats early_exit;    // with opt.early_exit
  double cache_bytes_per_token = 0;  // the target's KV cache: per position (all layers, K + V)
  uint64_t cache_bytes = 0;           // and in all
  double prompt_tps() const { return prompt_seconds > 0 ? n_prompt / prompt_seconds : 0; }
  double gen_tps() const { return gen_seconds > 0 ? n_generated / gen_seconds : 0; }
};

// Streams complete UTF-8 text through on_text as tokens are produced. Only ids
// the tokenizer has are sampled: an embedding padded past the vocabulary (as
// llama.cpp allows) never yields a token that cannot be decoded.
GenerateStats generate(const Model& m, const std::string& prompt, const GenerateOptions& opt,
                       const std::function<void(const std::string&)>& on_text);

// Plain (not speculative) generation as an object the caller steps: the
// prompt runs in the constructor, each next() samples a token, hands it out
// with the text it completes, and evaluates it. generate() without a drafter
// is a loop over next(), so both give the same tokens. (Options' drafter and
// on_token are not used: the caller stops by not calling next() again.)
class Generation {
 public:
  Generation(const Model& m, const std::string& prompt, const GenerateOptions& opt);
  ~Generation();
  // The next token and its text (UTF-8; empty while a character is
  // incomplete; the last token's carries what remains); false when
  // generation has ended (stats().stopped says why): then no id, and text
  // holds any bytes the last token left incomplete. After a throw it has ended.
  bool next(int32_t& id, std::string& text);
  // Ends it here as the caller's choice (StopReason::Caller), if it has not
  // ended; returns the bytes held back.
  std::string stop();
  bool done() const { return !more_; }
  const GenerateStats& stats() const { return s_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  GenerateStats s_;
  bool more_ = true;
};

// Holds back an incomplete UTF-8 sequence at the end of `buf`, returning the
// complete prefix (tokens can end in the middle of a character).
std::string take_complete_utf8(std::string& buf);

}  // namespace lmpress
