#include "compress/owl.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/progress.h"
#include "kernels/to_f32.h"

namespace lmpress {

std::vector<double> owl_outlier_ratios(const Model& m, const CalibrationOptions& calib, const OwlOptions& o) {
  refuse_experts(m, "OWL");
  LayerwiseCalibrator cal(m, calibration_windows(m, calib));
  std::vector<double> ratios;
  Progress progress("owl", uint64_t(m.cfg.n_layers));
  for (int64_t l = 0; l < m.cfg.n_layers; l++) {
    std::map<LinearSite, ChannelStats> stats;  // Σ_tokens x_j² per input channel of each site
    const LinearObserver obs = [&](LinearSite s, int64_t, const float* x, int64_t n, int64_t cols) { stats[s].add(x, n, cols); };
    cal.run(l, m.layers[size_t(l)], &obs, true);  // dense: the next block sees this one unpruned
    std::vector<float> scores;
    double sum = 0;
    for (LinearSite site : kLinearSites) {
      const std::vector<double>& sq = stats.at(site).sq;
      std::vector<double> norm(sq.size());
      for (size_t j = 0; j < norm.size(); j++) norm[j] = std::sqrt(sq[j]);
      for (const auto& name : linear_names(m.cfg, l, site)) {
        const Tensor* t = m.find(name);
        const auto W = to_f32(*t);
        const int64_t cols = t->cols();
        for (size_t i = 0; i < W.size(); i++) {
          const float s = std::fabs(W[i]) * float(norm[i % size_t(cols)]);
          scores.push_back(s);
          sum += s;
        }
      }
    }
    const double threshold = o.m * sum / double(std::max<size_t>(1, scores.size()));
    const auto outliers = std::count_if(scores.begin(), scores.end(), [&](float s) { return s > threshold; });
    ratios.push_back(double(outliers) / double(std::max<size_t>(1, scores.size())));
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
