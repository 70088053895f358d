#include "compress/owl.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/progress.h"
#include "core/tensor_names.h"
#include "kernels/to_f32.h"

namespace lmpress {

std::vector<double> owl_outlier_ratios(const Model& m, const CalibrationOptions& calib, const OwlOptions& o) {
  LayerwiseCalibrator cal(m, calibration_windows(m, calib));
  std::vector<double> ratios;
  Progress progress("owl", uint64_t(m.cfg.n_layers));
  for (int64_t l = 0; l < m.cfg.n_layers; l++) {
    // Σ_tokens x_j² per input channel of each site, and of each expert's on the rows routed to it.
    std::map<std::pair<LinearSite, int64_t>, ChannelStats> stats;
    const LinearObserver obs = [&](LinearSite s, int64_t e, const float* x, int64_t n, int64_t cols) {
      stats[{s, e}].add(x, n, cols);
    };
    cal.run(l, m.layers[size_t(l)], &obs, true);  // dense: the next block sees this one unpruned
    // Every prunable linear of the block with its input norms (a mixture: the shared expert and each expert
    // some token reached; never the router); the scores are made twice, for their mean and then the count
    // above the threshold, rather than held (a mixture's block is large).
    auto each_score = [&](auto&& f) {
      for (const auto& [key, st] : stats) {
        std::vector<double> norm(st.sq.size());
        for (size_t j = 0; j < norm.size(); j++) norm[j] = std::sqrt(st.sq[j]);
        for (const auto& name : linear_names(m.cfg, l, key.first, key.second)) {
          if (is_router(name)) continue;
          const Tensor* t = m.find(name);
          const auto W = to_f32(*t);
          const int64_t cols = t->cols();
          for (size_t i = 0; i < W.size(); i++) f(std::fabs(W[i]) * float(norm[i % size_t(cols)]));
        }
      }
    };
    double sum = 0;
    uint64_t count = 0;
    each_score([&](float s) { sum += s, count++; });
    const double threshold = o.m * sum / double(std::max<uint64_t>(1, count));
    uint64_t outliers = 0;
    each_score([&](float s) { outliers += s > threshold; });
    ratios.push_back(double(outliers) / double(std::max<uint64_t>(1, count)));
    release_block_pages(m, l);
    progress.update(uint64_t(l + 1));
  }
  progress.finish();
  return ratios;
}

std::vector<double> owl_sparsities(const std::vector<double>& ratios, double target, double lambda) {
  std::vector<double> s(ratios.size(), target);
  if (ratios.empty()) return s;
  const auto [lo, hi] = std::minmax_element(ratios.begin(), ratios.end());
  if (!(*hi > *lo)) return s;  // no layer stands out: uniform
  std::vector<double> density(ratios.size());
  double mean = 0;
  for (size_t l = 0; l < ratios.size(); l++) {
    density[l] = (ratios[l] - *lo) / (*hi - *lo) * 2 * lambda;
    mean += density[l] / double(ratios.size());
  }
  for (size_t l = 0; l < ratios.size(); l++) s[l] = std::clamp(target - (density[l] - mean), 0.0, 0.99);
  return s;
}

}  // namespace lmpress
