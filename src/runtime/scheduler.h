// Continuous batching over a BatchEngine: requests wait in FCFS order, are
// admitted while the running set and the KV pool allow, and every step runs
// one batch of at most `token_budget` tokens: running sequences, oldest first,
// each take their next tokens (a decoding step, or the next chunk of a prompt
// or of a recomputation), then newly admitted ones their first chunk.
// When the pool cannot hold a step, the youngest running request is preempted:
// its blocks are given back and it waits at the front of the queue to be
// computed again (its prompt and the tokens it generated, with the prefix
// cache's help), so no request fails for want of blocks that others hold.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "runtime/batch.h"
#include "runtime/sampler.h"
#include "runtime/speculative.h"

namespace lmpress {

struct SchedulerOptions {
  int64_t max_running = 8;    // sequences in the batch at once
  int64_t token_budget = 64;  // tokens per step (at most the engine's max_tokens)
  // Speculative decoding (speculative.h): each decoding sequence's step runs
  // its last token and up to draft_max drafts, as generate --spec does.
  const DraftSource* spec = nullptr;
};

struct Request {
  int64_t id = 0;
  std::vector<int32_t> prompt;
  int64_t max_tokens = 16;
  SamplerOptions sampling;
  bool ignore_eos = false;
  // -1: no log probabilities; 0..: each generated token's, and this many of
  // the most likely tokens' (of the model's distribution, before penalties
  // and temperature).
  int logprobs = -1;
};

enum class FinishReason { None, Eos, Length, Cancelled, Error };  // Error: the step computing it failed (serve)

// What one step did for one request.
struct StepEvent {
  int64_t id = 0;
  int32_t token = -1;  // a generated token, or -1
  FinishReason finished = FinishReason::None;
  TokenLogprobs logprobs;  // of `token`, when the request asks
  int64_t cached_prompt_tokens = 0;  // prompt positions the prefix cache held when it was admitted
};

// What the last step computed.
struct StepStats {
  int64_t prompt_tokens = 0;  // prompt (and recomputed) positions
  int64_t decode_tokens = 0;  // decoding steps
  int64_t sequences = 0;
};

class Scheduler {
 public:
  Scheduler(BatchEngine& engine, SchedulerOptions opt);

  // Queues a request; throws when it could never fit the KV pool alone or
  // its id is in use.
  void submit(Request r);
  // Drops a queued or running request now, giving its blocks back; false when unknown.
  bool cancel(int64_t id);
  // Admits, runs one batch and samples; returns each generated token and each
  // request that finished.
  std::vector<StepEvent> step();

  bool idle() const { return running_.empty() && waiting_.empty(); }
  int64_t n_running() const { return int64_t(running_.size()); }
  int64_t n_waiting() const { return int64_t(waiting_.size()); }
  // Ids of the running requests, then the waiting ones.
  std::vector<int64_t> request_ids() const;
  int64_t preemptions() const { return preemptions_; }
  const StepStats& last_step() const { return last_; }
  // Speculative decoding's counts since construction (passes, drafted, accepted).
  const SpecStats& spec_stats() const { return spec_; }

 private:
  struct Seq {
    Request req;
    std::vector<int32_t> tokens;  // the prompt, then the generated tokens
    int64_t computed = 0;         // positions whose K/V are in the cache
    int64_t generated = 0;
    int64_t cached = -1;  // positions shared from the prefix cache at first admission
    std::unique_ptr<Sampler> sampler;
    std::unique_ptr<Drafter> drafter;  // with SchedulerOptions::spec, from its first draft until preempted
    std::vector<int32_t> draft;        // this step's
    std::vector<Sampler::Dist> q;
  };
  // One sampled token's event (end of sequence, max_tokens); false when the request ends with it.
  bool take(Seq& s, int32_t id, StepEvent& e);
  void preempt(size_t index);

  BatchEngine& engine_;
  PagedKvCache& cache_;
  SchedulerOptions opt_;
  std::deque<std::unique_ptr<Seq>> waiting_;
  std::vector<std::unique_ptr<Seq>> running_;  // in admission order: the last is the youngest
  int64_t preemptions_ = 0;
  StepStats last_;
  SpecStats spec_;
  SpecScratch scratch_;
  std::vector<float> logits_, raw_logits_;
};

}  // namespace lmpress
