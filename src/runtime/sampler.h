// Token sampling: greedy, or top-k -> top-p -> min-p -> temperature -> draw,
// in llama.cpp's default order (the filters see the untempered distribution).
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace lmpress {

struct SamplerOptions {
  float temperature = 0.0f;  // <= 0: greedy
  int top_k = 40;            // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  uint64_t seed = 0;
  // Penalties on the logits of tokens among the last `penalty_last_n` of the
  // sequence (prompt and generated; llama.cpp's penalties sampler): repeat
  // divides a positive logit (multiplies a negative one) by repeat_penalty;
  // frequency subtracts count × frequency_penalty, presence subtracts
  // presence_penalty once. 1 / 0 / 0: off.
  float repeat_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  int penalty_last_n = 64;  // -1: the whole sequence
  bool has_penalties() const { return repeat_penalty != 1.0f || frequency_penalty != 0.0f || presence_penalty != 0.0f; }
};

class Sampler {
 public:
  explicit Sampler(SamplerOptions o);
  int32_t sample(const float* logits, int64_t n_vocab);
  // The candidates (ids) that survive the filters for these logits, most
  // likely first; exposed for tests.
  std::vector<int32_t> candidates(const float* logits, int64_t n_vocab);

  // The distribution sample() draws from: the ids that pass the filters with
  // their tempered probabilities (summing to 1); greedy: the argmax alone.
  // Speculative sampling compares the target's and the draft's.
  using Dist = std::vector<std::pair<int32_t, double>>;
  void distribution(const float* logits, int64_t n_vocab, Dist& out);
  // Draws an id from `d` (weights need not sum to 1; at least one > 0).
  int32_t draw(const Dist& d);
  // Uniform in [0, 1) from this sampler's generator.
  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
  bool greedy() const { return o_.temperature <= 0.0f; }

 private:
  size_t filter(const float* logits, int64_t n_vocab, bool sorted);

  SamplerOptions o_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
  std::vector<double> probs_;
};

int32_t argmax(const float* x, int64_t n);

// Applies o's penalties to logits[0..n_vocab) for the sequence history[0..n).
void apply_penalties(float* logits, int64_t n_vocab, const int32_t* history, int64_t n, const SamplerOptions& o);

// log softmax(logits)[id] for the ids asked, and the `top` most likely ids
// with theirs (most likely first; ties: lower id first).
struct TokenLogprobs {
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};
TokenLogprobs token_logprobs(const float* logits, int64_t n_vocab, int32_t id, int top);

}  // namespace lmpress
