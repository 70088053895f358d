#include "train/optimizer.h"

#include <cmath>

#include "core/error.h"

namespace lmpress::train {

double learning_rate(const AdamWOptions& o, int64_t s) {
  if (s < o.warmup) return o.lr * double(s + 1) / double(o.warmup);
  const int64_t span = std::max<int64_t>(1, o.steps - o.warmup);
  const double progress = std::min(1.0, double(s - o.warmup) / double(span));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return o.lr * (o.min_lr_ratio + (1.0 - o.min_lr_ratio) * cosine);
}

template <class T>
AdamW<T>::AdamW(const AdamWOptions& o, std::vector<uint8_t> decay) : o_(o), decay_(std::move(decay)) {
  m.assign(decay_.size(), 0.0f);
  v.assign(decay_.size(), 0.0f);
}

template <class T>
double AdamW<T>::update(std::vector<T>& w, std::vector<T>& grad, const std::vector<uint8_t>* frozen) {
  if (w.size() != decay_.size() || grad.size() != w.size() || (!lr_factor.empty() && lr_factor.size() != w.size()))
    fail("AdamW: parameter count changed");
  const int64_t n = int64_t(w.size());
  double sq = 0;
#pragma omp parallel for reduction(+ : sq)
  for (int64_t i = 0; i < n; i++)
    if (!frozen || !(*frozen)[size_t(i)]) sq += double(grad[size_t(i)]) * double(grad[size_t(i)]);
  const double norm = std::sqrt(sq);
  if (!std::isfinite(norm)) fail("the gradient is not finite (norm {})", norm);
  const double clip = o_.clip > 0 && norm > o_.clip ? o_.clip / norm : 1.0;
  const double lr = learning_rate(o_, t_);
  t_++;
  const double bc1 = 1.0 - std::pow(o_.beta1, double(t_)), bc2 = 1.0 - std::pow(o_.beta2, double(t_));
#pragma omp parallel for
  for (int64_t i = 0; i < n; i++) {
    const size_t k = size_t(i);
    if (frozen && (*frozen)[k]) continue;
    const double g = double(grad[k]) * clip;
    grad[k] = T(g);
    const double mk = o_.beta1 * double(m[k]) + (1.0 - o_.beta1) * g;
    const double vk = o_.beta2 * double(v[k]) + (1.0 - o_.beta2) * g * g;
    m[k] = float(mk), v[k] = float(vk);
    double wk = double(w[k]);
    if (decay_[k]) wk -= lr * o_.weight_decay * wk;
    wk -= (lr_factor.empty() ? lr : lr * double(lr_factor[k])) * (mk / bc1) / (std::sqrt(vk / bc2) + o_.eps);
    w[k] = T(wk);
  }
  return norm;
}

template class AdamW<float>;
template class AdamW<double>;

}  // namespace lmpress::train
