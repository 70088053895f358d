#include "quant/awq.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "quant/blocks.h"
#include "quant/gptq.h"
#include "quant/quantize.h"

namespace lmpress {

std::vector<float> fake_quantize(const float* W, int64_t rows, int64_t cols, DType t, const float* importance) {
  std::vector<float> out(size_t(rows * cols));
  if (is_float_type(t)) {
    std::copy_n(W, rows * cols, out.begin());
    return out;
  }
  const uint64_t rb = row_bytes(t, uint64_t(cols));
#pragma omp parallel
  {
    std::vector<uint8_t> q(rb);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      quantize_row(t, W + r * cols, cols, q.data(), importance);
      dequantize_row(t, q.data(), cols, out.data() + r * cols);
    }
  }
  return out;
}

std::vector<float> awq_search_scales(const std::vector<AwqLinear>& group, int64_t cols,
                                     const std::vector<float>& x_abs_mean, const std::vector<float>& H,
                                     const AwqOptions& o) {
  // w̄: mean over all rows of |w| normalised by its block's largest magnitude.
  std::vector<double> w_mean(static_cast<size_t>(cols), 0.0);
  int64_t total_rows = 0;
  for (const auto& lin : group) {
    const int64_t G = std::min<int64_t>(cols, is_float_type(lin.type) ? cols : dtype_info(lin.type).block_elems);
    for (int64_t r = 0; r < lin.rows; r++)
      for (int64_t b = 0; b < cols; b += G) {
        float mx = 0;
        for (int64_t c = b; c < b + G; c++) mx = std::max(mx, std::fabs(lin.W[r * cols + c]));
        if (mx > 0)
          for (int64_t c = b; c < b + G; c++) w_mean[size_t(c)] += std::fabs(lin.W[r * cols + c]) / mx;
      }
    total_rows += lin.rows;
  }
  for (auto& v : w_mean) v /= double(std::max<int64_t>(1, total_rows));
  std::vector<float> diag(static_cast<size_t>(cols));

  // Output error of the whole group with channel scales s.
  auto loss = [&](const std::vector<float>& s) {
    for (int64_t c = 0; c < cols; c++) diag[size_t(c)] = H[size_t(c * cols + c)] / (s[size_t(c)] * s[size_t(c)]);
    double total = 0;
    for (const auto& lin : group) {
      std::vector<float> scaled(size_t(lin.rows * cols));
      for (int64_t r = 0; r < lin.rows; r++)
        for (int64_t c = 0; c < cols; c++) scaled[size_t(r * cols + c)] = lin.W[r * cols + c] * s[size_t(c)];
      auto q = fake_quantize(scaled.data(), lin.rows, cols, lin.type, diag.data());
      for (int64_t r = 0; r < lin.rows; r++)
        for (int64_t c = 0; c < cols; c++) q[size_t(r * cols + c)] /= s[size_t(c)];
      // Each linear's error relative to its own output energy, so q, k and v count alike.
      total += relative_output_error(lin.W, q.data(), lin.rows, cols, H);
    }
    return total;
  };
  std::vector<float> best(static_cast<size_t>(cols), 1.0f), s(static_cast<size_t>(cols));
  double best_loss = loss(best);
  for (int g = 0; g < o.grid; g++) {
    const double alpha = double(g) / o.grid;
    double mx = 0, mn = 1e300;
    for (int64_t c = 0; c < cols; c++) {
      const double v = std::max(1e-4, std::pow(std::max<double>(x_abs_mean[size_t(c)], 1e-12), alpha) /
                                          (std::pow(w_mean[size_t(c)], 1 - alpha) + 1e-4));
      s[size_t(c)] = float(v);
      mx = std::max(mx, v);
      mn = std::min(mn, v);
    }
    const double norm = std::sqrt(mx * mn);
    for (auto& v : s) v = float(v / norm);
    const double l = loss(s);
    if (l < best_loss) {
      best_loss = l;
      best = s;
    }
  }
  return best;
}

void awq_clip_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H, DType t,
                       const float* importance, const AwqOptions& o, uint8_t* out) {
  if (!has_quantizer(t)) fail("AWQ: no quantizer for {}", dtype_name(t));
  const int64_t G = dtype_info(t).block_elems;
  if (cols % G != 0) fail("AWQ: {} columns are not a multiple of the {} block of {}", cols, G, dtype_name(t));
  const uint64_t rb = row_bytes(t, uint64_t(cols)), bb = dtype_info(t).block_bytes;
#pragma omp parallel
  {
    std::vector<float> x(static_cast<size_t>(G)), y(static_cast<size_t>(G)), d(static_cast<size_t>(G));
    std::vector<uint8_t> q(bb), best_q(bb);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t b = 0; b < cols / G; b++) {
        const float* w = W + r * cols + b * G;
        float amax = 0;
        for (int64_t e = 0; e < G; e++) amax = std::max(amax, std::fabs(w[e]));
        double best = 1e300;
        for (int i = 0; i <= o.clip_grid; i++) {
          const float ratio = float(1.0 - (1.0 - o.max_shrink) * i / o.clip_grid);
          const float lim = amax * ratio;
          for (int64_t e = 0; e < G; e++) x[size_t(e)] = std::clamp(w[e], -lim, lim);
          quantize_row(t, x.data(), G, q.data(), importance ? importance + b * G : nullptr);
          dequantize_row(t, q.data(), G, y.data());
          for (int64_t e = 0; e < G; e++) d[size_t(e)] = y[size_t(e)] - w[e];
          // Δᵀ H_bb Δ over the block's columns.
          double err = 0;
          for (int64_t a = 0; a < G; a++) {
            const float* h = H.data() + (b * G + a) * cols + b * G;
            double acc = 0;
            for (int64_t c = 0; c < G; c++) acc += double(h[c]) * d[size_t(c)];
            err += acc * d[size_t(a)];
          }
          if (err < best) {
            best = err;
            best_q = q;
          }
        }
        std::copy(best_q.begin(), best_q.end(), out + uint64_t(r) * rb + uint64_t(b) * bb);
      }
    }
  }
}

}  // namespace lmpress
