#include "kernels/ops.h"

#include <cmath>

namespace lmpress {

void rmsnorm(const float* x, const float* w, int64_t n, float eps, float* out) {
  double ss = 0;
  for (int64_t i = 0; i < n; i++) ss += double(x[i]) * x[i];
  const float scale = float(1.0 / std::sqrt(ss / double(n) + eps));
  for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void rope(float* v, int64_t n_heads, int64_t head_dim, int64_t pos, const std::vector<float>& inv_freqs,
          RopeLayout layout) {
  const int64_t pairs = int64_t(inv_freqs.size());
  const int64_t half = pairs;  // Halves: partner of i is i + rope_dim/2
  for (int64_t i = 0; i < pairs; i++) {
    const float theta = float(pos) * inv_freqs[size_t(i)];
    const float c = std::cos(theta), s = std::sin(theta);
    for (int64_t h = 0; h < n_heads; h++) {
      float* p = v + h * head_dim;
      const int64_t a = layout == RopeLayout::Interleaved ? 2 * i : i;
      const int64_t b = layout == RopeLayout::Interleaved ? 2 * i + 1 : i + half;
      const float x0 = p[a], x1 = p[b];
      p[a] = x0 * c - x1 * s;
      p[b] = x0 * s + x1 * c;
    }
  }
}

void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void softmax(float* x, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; i++) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; i++) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

}  // namespace lmpress
