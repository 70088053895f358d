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
};

class Sampler {
 public:
  explicit Sampler(SamplerOptions o);
  int32_t sample(const float* logits, int64_t n_vocab);
  // The candidates (ids) that survive the filters for these logits, most
  // likely first; exposed for tests.
  std::vector<int32_t> candidates(const float* logits, int64_t n_vocab);

 private:
  SamplerOptions o_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
  std::vector<double> probs_;
};

int32_t argmax(const float* x, int64_t n);

}  // namespace lmpress
