// What the batched engine and the scheduler are checked against: a lone
// InferenceState on one sequence, the prompt in one batch, then greedy
// one-token steps (lmpress generate's loop).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "model/forward.h"

namespace lmpress::test {

struct GreedyReference {
  std::vector<int32_t> prompt, greedy;
  // [prompt + greedy - 1, vocab]: row p follows the token at position p. The
  // last prompt row and the decoding rows are generate()'s (one-token logits
  // kernels); the earlier prompt rows come from the batched logits kernels.
  std::vector<float> logits;
};

inline int32_t argmax_of(const float* x, int64_t n) { return int32_t(std::max_element(x, x + n) - x); }

inline GreedyReference greedy_reference(const Model& m, const std::vector<int32_t>& prompt, int64_t n_gen,
                                        const KvCacheSpec& kv = {}, const KvPolicy& policy = {}) {
  const int64_t V = m.cfg.n_vocab, P = int64_t(prompt.size());
  GreedyReference r;
  r.prompt = prompt;
  r.logits.resize(size_t((P + n_gen) * V));
  InferenceState st(m, std::max(P + n_gen + 1, policy.capacity()), 512, kv, policy);
  st.eval(prompt.data(), P, r.logits.data(), true);
  InferenceState last(m, P, 512, kv);
  last.eval(prompt.data(), P, r.logits.data() + (P - 1) * V, false);
  for (int64_t i = 0; i < n_gen; i++) {
    const int32_t next = argmax_of(r.logits.data() + (P - 1 + i) * V, V);
    r.greedy.push_back(next);
    if (i + 1 < n_gen) st.eval(&next, 1, r.logits.data() + (P + i) * V, false);
  }
  r.logits.resize(size_t((P + n_gen - 1) * V));
  return r;
}

}  // namespace lmpress::test
