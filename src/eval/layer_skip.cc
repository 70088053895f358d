#include "eval/layer_skip.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/parse.h"
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

std::string resolve_skip_auto(const std::string& type, const std::string& calib, const Model& m, int64_t n_ctx,
                              std::string* note) {
  const std::string prefix = "self:skip:auto";
  if (type.rfind(prefix, 0) != 0) return type;
  const int64_t n_skip =
      type.size() > prefix.size() && type[prefix.size()] == ':' ? parse_block_number(type.substr(prefix.size() + 1)) : -1;
  if (n_skip < 0) fail("--spec {}: write self:skip:auto:N, N the number of blocks to skip", type);
  if (calib.empty()) fail("--spec {} needs --spec-calib TEXT to rank the blocks on", type);
  const int64_t L = m.cfg.n_layers;
  if (n_skip < 1 || n_skip >= L)
    fail("--spec {}: {} blocks to skip: it must be in [1, {}] (the model has {} blocks)", type, n_skip, L - 1, L);
  if (!m.tokenizer) fail("--spec {}: the model has no tokenizer", type);
  std::vector<int32_t> window = m.tokenizer->encode(read_input_text(calib), true, false);
  window.resize(std::min<size_t>(window.size(), size_t(std::min<int64_t>(256, n_ctx))));
  if (window.size() < 16) fail("--spec-calib {}: {} tokens; at least 16 are needed", calib, window.size());
  const std::vector<double> loss = block_skip_kld(m, window);
  const std::vector<int64_t> blocks = least_loss_blocks(loss, n_skip);
  std::string list, losses;
  for (int64_t b : blocks) {
    if (!list.empty()) list += ',';
    list += std::to_string(b);
  }
  for (size_t l = 0; l < loss.size(); l++) losses += fmt::format("{}{}: {:.4f}", l ? ", " : "", l, loss[l]);
  if (note)
    *note = fmt::format("{}: skipping blocks {} (mean KLD of each block skipped alone over {} tokens of {}: {})", type,
                        list, window.size(), calib, losses);
  return "self:skip:" + list;
}

}  // namespace lmpress
