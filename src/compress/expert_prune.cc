#include "compress/expert_prune.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/parse.h"
#include "core/progress.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/to_f32.h"
#include "model/forward.h"

namespace lmpress {

namespace {

// Experts kept per layer for the options.
int64_t kept_count(const ModelConfig& c, const ExpertPruneOptions& o) {
  if (o.keep > 0) {
    if (o.keep > c.n_experts) fail("--experts {}: the model has {} experts per layer", o.keep, c.n_experts);
    return o.keep;
  }
  if (!(o.ratio > 0 && o.ratio < 1)) fail("--experts {}: a fraction to remove must be in (0, 1)", o.ratio);
  return std::max<int64_t>(1, std::llround(double(c.n_experts) * (1.0 - o.ratio)));
}

}  // namespace

ExpertPruneReport prune_experts(Model& m, const ExpertPruneOptions& o) {
  const ModelConfig& c = m.cfg;
  if (!c.moe()) fail("{}: --experts prunes the experts of a mixture of experts; this model has none", m.path);
  const int64_t keep = kept_count(c, o), E = c.n_experts, K = c.n_experts_used, L = c.n_layers;
  ExpertPruneReport rep;
  rep.experts_before = E, rep.used_before = K;
  rep.params_before = m.n_params(), rep.bytes_before = m.n_bytes();
  rep.scores.assign(size_t(L), std::vector<double>(size_t(E), 0.0));
  rep.counts.assign(size_t(L), std::vector<int64_t>(size_t(E), 0));

  LayerwiseCalibrator cal(m, calibration_windows(m, o.calib));
  rep.calib_tokens = cal.n_tokens();
  Progress progress("experts", uint64_t(L));
  for (int64_t l = 0; l < L; l++) {
    const LayerWeights& W = m.layers[size_t(l)];
    if (!c.layer_moe(l)) {  // a dense block (DeepSeek's first): nothing to score
      cal.run(l, W, nullptr, true);
      rep.kept.emplace_back();
      progress.update(uint64_t(l + 1));
      continue;
    }
    // The routing of the window now running (the observer sees the router's
    // input first, then each expert's rows in token order).
    std::vector<float> probs, weights, y;
    std::vector<int32_t> chosen;
    int64_t n = 0;
    auto& score = rep.scores[size_t(l)];
    auto& count = rep.counts[size_t(l)];
    const LinearObserver obs = [&](LinearSite s, int64_t e, const float* x, int64_t rows, int64_t cols) {
      if (s == LinearSite::FfnIn && e < 0) {
        n = rows;
        probs.resize(size_t(n * E));
        chosen.resize(size_t(n * K));
        weights.resize(size_t(n * K));
        // Routed as the forward pass routes: on the int8-rounded rows of a W8A8 model.
        std::vector<float> xq(x, x + n * cols);
        if (c.act_int8) fake_quant_int8_rows(xq.data(), n, cols);
        matmul_decode(*W.router, xq.data(), n, probs.data());
        add_bias_rows(probs.data(), W.router_bias, n);  // gpt-oss's
        route_experts(c, probs.data(), n, probs.data(), chosen.data(), weights.data());
        return;
      }
      if (s != LinearSite::FfnDown || e < 0) return;
      count[size_t(e)] += rows;
      if (o.score != ExpertScore::Reap) return;
      const Tensor& down = *W.experts[size_t(e)].down;
      y.resize(size_t(rows * c.dim));
      matmul_decode(down, x, rows, y.data());
      add_bias_rows(y.data(), W.experts[size_t(e)].b_down, rows);  // gpt-oss's: part of the expert's output
      int64_t r = 0;
      for (int64_t t = 0; t < n && r < rows; t++)
        for (int64_t k = 0; k < K; k++)
          if (chosen[size_t(t * K + k)] == e) {
            double sq = 0;
            for (int64_t i = 0; i < c.dim; i++) sq += double(y[size_t(r * c.dim + i)]) * y[size_t(r * c.dim + i)];
            score[size_t(e)] += double(weights[size_t(t * K + k)]) * std::sqrt(sq);
            r++;
          }
      if (r != rows) fail("internal: expert {} of layer {} saw {} rows, the routing gives {}", e, l, rows, r);
    };
    cal.run(l, W, &obs, true);
    for (int64_t e = 0; e < E; e++)
      if (o.score == ExpertScore::Frequency) score[size_t(e)] = double(count[size_t(e)]);
      else score[size_t(e)] = count[size_t(e)] ? score[size_t(e)] / double(count[size_t(e)]) : 0.0;
    // The best `keep`, ties to the lower expert, kept in their original order.
    std::vector<int64_t> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score[size_t(a)] > score[size_t(b)]; });
    order.resize(size_t(keep));
    std::sort(order.begin(), order.end());
    rep.kept.push_back(order);
    progress.update(uint64_t(l + 1));
  }
  progress.finish();

  // Renumber the kept experts, cut the router's rows (and gpt-oss's router and expert bias rows), drop the rest.
  std::vector<Tensor> out;
  for (const Tensor& t : m.tensors) {
    const int64_t l = layer_of(t.name);
    const std::string b = "blk." + std::to_string(l) + ".";
    if (l >= 0 && (t.name == b + "ffn_gate_inp.weight" || t.name == b + "ffn_gate_inp.bias" ||
                   t.name == b + "ffn_gate_exps.bias" || t.name == b + "ffn_up_exps.bias" ||
                   t.name == b + "ffn_down_exps.bias")) {
      const std::vector<float> r = to_f32(t);
      const int64_t len = t.numel() / E;  // one row per expert
      std::vector<float> rows;
      for (int64_t e : rep.kept[size_t(l)]) rows.insert(rows.end(), r.begin() + e * len, r.begin() + (e + 1) * len);
      out.push_back(make_f32_tensor(t.name, t.shape.size() == 1 ? std::vector<int64_t>{keep} : std::vector<int64_t>{keep, len},
                                    std::move(rows)));
      continue;
    }
    const auto st = stacked_expert_name(t.name);
    if (!st) {
      out.push_back(t);
      continue;
    }
    const auto& kept = rep.kept[size_t(l)];
    const auto it = std::find(kept.begin(), kept.end(), st->second);
    if (it == kept.end()) continue;
    Tensor renamed = t;
    renamed.name = expert_tensor_name(st->first, int64_t(it - kept.begin()));
    out.push_back(std::move(renamed));
  }
  m.tensors = std::move(out);
  m.cfg.n_experts = keep;
  m.cfg.n_experts_used = std::min(K, keep);
  m.bind();
  rep.experts_after = keep, rep.used_after = m.cfg.n_experts_used;
  rep.params_after = m.n_params(), rep.bytes_after = m.n_bytes();
  return rep;
}

double parse_expert_count(const std::string& text) {
  const auto v = parse_double(text);
  if (!v || *v <= 0) fail("--experts '{}': expected a count of experts to keep or a fraction in (0, 1) to remove", text);
  return *v;
}

}  // namespace lmpress
