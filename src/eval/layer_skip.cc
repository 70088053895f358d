#include "eval/layer_skip.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "eval/kld.h"
#include "model/forward.h"

namespace lmpress {
std::vector<double> block_skip_kld(const Model& m, const std::vector<int32_t>& tokens) {
  const int64_t T = int64_t(tokens.size()), V = m.cfg.n_vocab, L = m.cfg.n_layers;
  if (T < 2) fail("block skip loss: the calibration window has {} tokens; it needs at least 2", T);
  std::vector<float> full(size_t(T * V)), skipped(size_t(T * V));
  {
    InferenceState st(m, T, T);
    st.eval(tokens.data(), T, full.data(), true);
  }
  std::vector<double> loss(static_cast<size_t>(L));
  for (int64_t l = 0; l < L; l++) {
    std::vector<bool> skip(size_t(L), false);
    skip[size_t(l)] = true;
    InferenceState st(m, T, T);
    st.skip_layers(skip);
    st.eval(tokens.data(), T, skipped.data(), true);
    KldSums sums;  // llama-perplexity --kl-divergence's per-token KLD
    for (int64_t t = 0; t < T; t++)
      sums.add(full.data() + t * V, skipped.data() + t * V, V, tokens[size_t(std::min(t + 1, T - 1))]);
    loss[size_t(l)] = sums.sum_kld / double(sums.count);
  }
  return loss;
}

std::vector<int64_t> least_loss_blocks(const std::vector<double>& loss, int64_t n) {
  if (n < 1 || n >= int64_t(loss.size()))
    fail("{} blocks to skip: it must be in [1, {}] (the model has {} blocks)", n, int64_t(loss.size()) - 1, loss.size());
  std::vector<int64_t> order(loss.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return loss[size_t(a)] < loss[size_t(b)]; });
  order.resize(size_t(n));
  std::sort(order.begin(), order.end());
  return order;
}

}  // namespace lmpress
