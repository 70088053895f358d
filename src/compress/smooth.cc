#include "compress/smooth.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/progress.h"
#include "kernels/to_f32.h"

namespace lmpress {

SmoothReport smooth_model(Model& m, const CalibrationOptions& calib, double alpha) {
  if (!m.cfg.pre_norms)
    fail("{}: {} has no norms before its attention and feed-forward, into which smoothing folds its scales", m.path,
         m.cfg.arch);
  if (!(alpha >= 0 && alpha <= 1)) fail("--alpha {}: SmoothQuant's migration strength is in [0, 1]", alpha);
  refuse_factorized(m, "smoothing");
  for (const Tensor& t : m.tensors)
    if (layer_of(t.name) >= 0 && t.shape.size() == 2 && !is_float_type(t.dtype))
      fail("{}: {} is {}: smoothing rescales float weights (smooth before quantizing)", m.path, t.name,
           dtype_name(t.dtype));
  const int64_t L = m.cfg.n_layers, D = m.cfg.dim;
  // max|x| per channel at each block's two norm outputs, from one calibrated pass.
  std::vector<std::vector<float>> amax(size_t(2 * L), std::vector<float>(size_t(D), 0.0f));
  LayerwiseCalibrator cal(m, calibration_windows(m, calib));
  SmoothReport rep;
  rep.calib_tokens = cal.n_tokens();
  {
    Progress progress("smooth", uint64_t(L));
    for (int64_t l = 0; l < L; l++) {
      const LinearObserver obs = [&](LinearSite site, int64_t, const float* x, int64_t n, int64_t cols) {
        if (site != LinearSite::AttnIn && site != LinearSite::FfnIn) return;
        auto& a = amax[size_t(2 * l + (site == LinearSite::FfnIn))];
        for (int64_t t = 0; t < n; t++)
          for (int64_t j = 0; j < cols; j++) a[size_t(j)] = std::max(a[size_t(j)], std::fabs(x[t * cols + j]));
      };
      cal.run(l, m.layers[size_t(l)], &obs, true);
      progress.update(uint64_t(l + 1));
    }
  }
  rep.min_scale = INFINITY;
  for (int64_t l = 0; l < L; l++)
    for (int site = 0; site < 2; site++) {
      const std::string b = "blk." + std::to_string(l) + ".";
      const std::string norm = b + (site == 0 ? "attn_norm.weight" : "ffn_norm.weight");
      // Every linear reading the norm's output: q/k/v, or gate/up (a mixture: the router, the shared
      // expert's gate and gate/up, every expert's gate/up, whose inputs are rows of the same output).
      std::vector<std::string> linears;
      for (int64_t e : site_experts(m.cfg))
        for (const auto& name : linear_names(m.cfg, l, site == 0 ? LinearSite::AttnIn : LinearSite::FfnIn, e))
          linears.push_back(name);
      // Qwen2-MoE's shared-expert gate, sigmoid(x · g), reads it too.
      if (site == 1 && m.cfg.layer_moe(l) && m.cfg.shared_gate()) linears.push_back(b + "ffn_gate_inp_shexp.weight");
      // Max |w| per input channel, a matrix at a time (a mixture's experts are not held at once).
      std::vector<float> wmax(static_cast<size_t>(D), 0.0f);
      for (const auto& name : linears) {
        const Tensor& t = m.tensor(name);
        if (t.cols() != D) fail("{}: {} has {} columns, the model's width is {}", m.path, name, t.cols(), D);
        const std::vector<float> w = to_f32(t);
        for (int64_t r = 0; r < t.rows(); r++)
          for (int64_t j = 0; j < D; j++) wmax[size_t(j)] = std::max(wmax[size_t(j)], std::fabs(w[size_t(r * D + j)]));
      }
      const auto& a = amax[size_t(2 * l + site)];
      std::vector<float> s(static_cast<size_t>(D));
      for (int64_t j = 0; j < D; j++) {
        // A channel with no activation or no weight keeps scale 1 (nothing to migrate).
        const double x = a[size_t(j)], y = wmax[size_t(j)];
        const double v = x > 0 && y > 0 ? std::pow(x, alpha) / std::pow(y, 1 - alpha) : 1.0;
        s[size_t(j)] = float(std::clamp(v, 1e-5, 1e5));
        rep.min_scale = std::min(rep.min_scale, double(s[size_t(j)]));
        rep.max_scale = std::max(rep.max_scale, double(s[size_t(j)]));
      }
      std::vector<float> g = to_f32(m.tensor(norm));
      for (int64_t j = 0; j < D; j++) g[size_t(j)] /= s[size_t(j)];
      m.set_f32(norm, std::move(g));
      for (const auto& name : linears) {
        const Tensor& t = m.tensor(name);
        std::vector<float> w = to_f32(t);
        for (int64_t r = 0; r < t.rows(); r++)
          for (int64_t j = 0; j < D; j++) w[size_t(r * D + j)] *= s[size_t(j)];
        m.set_f32(name, std::move(w));
      }
    }
  m.bind();
  return rep;
}

}  // namespace lmpress
