#include "quant/awq.h"

#include <algorithm>
#include <cmath>

#include <omp.h>

#include "core/error.h"
#include "kernels/blocks.h"
#include "quant/gptq.h"
#include "quant/quantize.h"

namespace lmpress {

int64_t QuantFormat::group_size(int64_t cols) const {
  if (group) return group->group_size(cols);
  return std::min<int64_t>(cols, is_float_type(block) ? cols : dtype_info(block).block_elems);
}

std::vector<float> fake_quantize(const float* W, int64_t rows, int64_t cols, const QuantFormat& f,
                                 const float* importance) {
  if (f.group) return int_group_rtn(W, rows, cols, *f.group, importance, {}).dequantize();
  const DType t = f.block;
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
    const int64_t G = lin.format.group_size(cols);
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
    double total = 0;
    for (const auto& lin : group) {
      const std::vector<float>& Hl = lin.H ? *lin.H : H;
      for (int64_t c = 0; c < cols; c++) diag[size_t(c)] = Hl[size_t(c * cols + c)] / (s[size_t(c)] * s[size_t(c)]);
      std::vector<float> scaled(size_t(lin.rows * cols));
      for (int64_t r = 0; r < lin.rows; r++)
        for (int64_t c = 0; c < cols; c++) scaled[size_t(r * cols + c)] = lin.W[r * cols + c] * s[size_t(c)];
      auto q = fake_quantize(scaled.data(), lin.rows, cols, lin.format, diag.data());
      for (int64_t r = 0; r < lin.rows; r++)
        for (int64_t c = 0; c < cols; c++) q[size_t(r * cols + c)] /= s[size_t(c)];
      // Each linear's error relative to its own output energy, so q, k and v count alike.
      total += lin.weight * relative_output_error(lin.W, q.data(), lin.rows, cols, Hl);
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

namespace {

// Δᵀ H_bb Δ: the output error of a change d to the G columns from `first`.
double block_output_error(const std::vector<float>& H, int64_t cols, int64_t first, int64_t G, const float* d) {
  double err = 0;
  for (int64_t a = 0; a < G; a++) {
    const float* h = H.data() + (first + a) * cols + first;
    double acc = 0;
    for (int64_t c = 0; c < G; c++) acc += double(h[c]) * d[c];
    err += acc * d[a];
  }
  return err;
}

// For every row and every group of G columns, tries the clipping ratios
// 1 .. max_shrink: quantize(r, b, ratio, y) quantizes the group with its range
// clipped by ratio and writes the dequantized values to y; keep(r, b) is
// called right after the best candidate so far was produced.
template <class Quantize, class Keep>
void clip_search(const float* W, int64_t rows, int64_t cols, int64_t G, const std::vector<float>& H,
                 const AwqOptions& o, Quantize&& quantize, Keep&& keep) {
#pragma omp parallel
  {
    std::vector<float> y(static_cast<size_t>(G)), d(static_cast<size_t>(G));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t b = 0; b < cols / G; b++) {
        const float* w = W + r * cols + b * G;
        double best = INFINITY;
        for (int i = 0; i <= o.clip_grid; i++) {
          const float ratio = float(1.0 - (1.0 - o.max_shrink) * i / o.clip_grid);
          quantize(r, b, ratio, y.data());
          for (int64_t e = 0; e < G; e++) d[size_t(e)] = y[size_t(e)] - w[e];
          const double err = block_output_error(H, cols, b * G, G, d.data());
          if (err < best) {
            best = err;
            keep(r, b);
          }
        }
      }
    }
  }
}

}  // namespace

void awq_clip_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H, DType t,
                       const float* importance, const AwqOptions& o, uint8_t* out) {
  if (!has_quantizer(t)) fail("AWQ: no quantizer for {}", dtype_name(t));
  const int64_t G = dtype_info(t).block_elems;
  if (cols % G != 0) fail("AWQ: {} columns are not a multiple of the {} block of {}", cols, G, dtype_name(t));
  const uint64_t rb = row_bytes(t, uint64_t(cols)), bb = dtype_info(t).block_bytes;
  // One candidate block per thread (rows are split across threads).
  const size_t n_threads = size_t(omp_get_max_threads());
  std::vector<std::vector<uint8_t>> cand(n_threads, std::vector<uint8_t>(bb));
  std::vector<float> x_buf(n_threads * size_t(G));
  clip_search(
      W, rows, cols, G, H, o,
      [&](int64_t r, int64_t b, float ratio, float* y) {
        const float* w = W + r * cols + b * G;
        float* x = x_buf.data() + size_t(omp_get_thread_num()) * size_t(G);
        uint8_t* q = cand[size_t(omp_get_thread_num())].data();
        float amax = 0;
        for (int64_t e = 0; e < G; e++) amax = std::max(amax, std::fabs(w[e]));
        const float lim = amax * ratio;
        for (int64_t e = 0; e < G; e++) x[e] = std::clamp(w[e], -lim, lim);
        quantize_row(t, x, G, q, importance ? importance + b * G : nullptr);
        dequantize_row(t, q, G, y);
      },
      [&](int64_t r, int64_t b) {
        const auto& q = cand[size_t(omp_get_thread_num())];
        std::copy(q.begin(), q.end(), out + uint64_t(r) * rb + uint64_t(b) * bb);
      });
}

IntGroupTensor awq_clip_quantize_int(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                                     const IntGroupSpec& spec, const AwqOptions& o) {
  spec.check_shape("AWQ", rows, cols);
  IntGroupTensor t(spec, rows, cols);
  const int64_t G = spec.group_size(cols);
  const int maxq = spec.max_level();
  std::vector<GroupGrid> cand(static_cast<size_t>(omp_get_max_threads()));
  clip_search(
      W, rows, cols, G, H, o,
      [&](int64_t r, int64_t b, float ratio, float* y) {
        const float* w = W + r * cols + b * G;
        const GroupGrid g = int_group_grid(spec, w, G, ratio);
        for (int64_t e = 0; e < G; e++) y[e] = g.scale * float(g.level(w[e], maxq) - g.zero);
        cand[size_t(omp_get_thread_num())] = g;
      },
      [&](int64_t r, int64_t b) {
        const GroupGrid& g = cand[size_t(omp_get_thread_num())];
        t.scale[size_t(r * t.n_groups + b)] = g.scale;
        t.zero[size_t(r * t.n_groups + b)] = uint16_t(g.zero);
        for (int64_t e = 0; e < G; e++) t.q[size_t(r * cols + b * G + e)] = uint8_t(g.level(W[r * cols + b * G + e], maxq));
      });
  return t;
}

}  // namespace lmpress
