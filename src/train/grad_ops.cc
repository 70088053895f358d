#include "train/grad_ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace lmpress::train {

namespace {

CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C,
              int(ldc));
}

template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                  const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C,
              int(ldc));
}

template <class T>
void linear_forward(const T* W, const T* bias, const T* x, int64_t n, int64_t in, int64_t out, T* y) {
  gemm<T>(false, true, n, out, in, T(1), x, in, W, in, T(0), y, out);
  if (bias)
    for (int64_t t = 0; t < n; t++)
      for (int64_t o = 0; o < out; o++) y[t * out + o] += bias[o];
}

template <class T>
void linear_backward(const T* W, const T* x, const T* dy, int64_t n, int64_t in, int64_t out, T* dW, T* dbias, T* dx,
                     bool accumulate_dx) {
  if (dW) gemm<T>(true, false, out, in, n, T(1), dy, out, x, in, T(1), dW, in);
  if (dbias)
    for (int64_t t = 0; t < n; t++)
      for (int64_t o = 0; o < out; o++) dbias[o] += dy[t * out + o];
  if (dx) gemm<T>(false, false, n, in, out, T(1), dy, out, W, in, accumulate_dx ? T(1) : T(0), dx, in);
}

template <class T>
void rmsnorm_forward(const T* x, const T* w, int64_t n, int64_t D, double eps, T* y, T* rstd) {
#pragma omp parallel for if (n > 64)
  for (int64_t t = 0; t < n; t++) {
    const T* xr = x + t * D;
    double ss = 0;
    for (int64_t j = 0; j < D; j++) ss += double(xr[j]) * double(xr[j]);
    const T r = T(1.0 / std::sqrt(ss / double(D) + eps));
    rstd[t] = r;
    for (int64_t j = 0; j < D; j++) y[t * D + j] = xr[j] * r * w[j];
  }
}

template <class T>
void rmsnorm_backward(const T* x, const T* w, const T* rstd, const T* dy, int64_t n, int64_t D, T* dx, T* dw) {
  // y_j = x_j·r·w_j with r = (mean(x²) + eps)^(-1/2), ∂r/∂x_k = −r³·x_k / D:
  // dx_k = r·w_k·dy_k − x_k·r³/D · Σ_j dy_j·w_j·x_j.
#pragma omp parallel for if (n > 64)
  for (int64_t t = 0; t < n; t++) {
    const T* xr = x + t * D;
    const T* g = dy + t * D;
    const double r = double(rstd[t]);
    double dot = 0;
    for (int64_t j = 0; j < D; j++) dot += double(g[j]) * double(w[j]) * double(xr[j]);
    const double c = r * r * r * dot / double(D);
    for (int64_t j = 0; j < D; j++) dx[t * D + j] += T(r * double(w[j]) * double(g[j]) - double(xr[j]) * c);
  }
  if (!dw) return;
  // Each thread sums a slice of the columns over the rows (no shared writes).
#pragma omp parallel for if (n * D > 65536)
  for (int64_t j = 0; j < D; j++) {
    double s = 0;
    for (int64_t t = 0; t < n; t++) s += double(dy[t * D + j]) * double(x[t * D + j]) * double(rstd[t]);
    dw[j] += T(s);
  }
}

template <class T>
void rope_rotate(T* v, int64_t n_heads, int64_t head_dim, int64_t pos, const std::vector<float>& inv_freqs,
                 RopeLayout layout, bool inverse) {
  const int64_t pairs = int64_t(inv_freqs.size());
  for (int64_t i = 0; i < pairs; i++) {
    // θ as the inference kernel computes it (float), so that training and
    // inference rotate by the same angles.
    const float theta = float(pos) * inv_freqs[size_t(i)];
    const T c = T(std::cos(theta)), s = inverse ? -T(std::sin(theta)) : T(std::sin(theta));
    const int64_t a = layout == RopeLayout::Interleaved ? 2 * i : i;
    const int64_t b = layout == RopeLayout::Interleaved ? 2 * i + 1 : i + pairs;
    for (int64_t h = 0; h < n_heads; h++) {
      T* p = v + h * head_dim;
      const T x0 = p[a], x1 = p[b];
      p[a] = x0 * c - x1 * s;
      p[b] = x0 * s + x1 * c;
    }
  }
}

template <class T>
void attention_forward(const T* q, const T* k, const T* v, int64_t n, int64_t H, int64_t KV, int64_t hd, int64_t g,
                       double scale, T* lse, T* out, int64_t tile) {
  const int64_t rep = H / KV;
  std::vector<T> S(size_t(std::min(tile, n) * n));
  for (int64_t h = g * rep; h < (g + 1) * rep; h++)
    for (int64_t i0 = 0; i0 < n; i0 += tile) {
      const int64_t tq = std::min(tile, n - i0), nk = i0 + tq;  // the tile's queries see keys 0 .. nk − 1
      const T* qt = q + (i0 * H + h) * hd;
      gemm<T>(false, true, tq, nk, hd, T(scale), qt, H * hd, k + g * hd, KV * hd, T(0), S.data(), nk);
      for (int64_t r = 0; r < tq; r++) {
        const int64_t i = i0 + r;
        T* row = S.data() + r * nk;
        T mx = row[0];
        for (int64_t j = 1; j <= i; j++) mx = std::max(mx, row[j]);
        double sum = 0;
        for (int64_t j = 0; j <= i; j++) {
          row[j] = T(std::exp(double(row[j] - mx)));
          sum += double(row[j]);
        }
        lse[h * n + i] = T(double(mx) + std::log(sum));
        const T inv = T(1.0 / sum);
        for (int64_t j = 0; j <= i; j++) row[j] *= inv;
        std::fill(row + i + 1, row + nk, T(0));
      }
      gemm<T>(false, false, tq, hd, nk, T(1), S.data(), nk, v + g * hd, KV * hd, T(0), out + (i0 * H + h) * hd, H * hd);
    }
}

template <class T>
void attention_backward(const T* q, const T* k, const T* v, const T* lse, const T* dout, int64_t n, int64_t H,
                        int64_t KV, int64_t hd, int64_t g, double scale, T* dq, T* dk, T* dv, int64_t tile) {
  const int64_t rep = H / KV;
  for (int64_t t = 0; t < n; t++)
    for (int64_t j = 0; j < hd; j++) dk[t * KV * hd + g * hd + j] = 0, dv[t * KV * hd + g * hd + j] = 0;
  const size_t cap = size_t(std::min(tile, n) * n);
  std::vector<T> P(cap), dS(cap);
  for (int64_t h = g * rep; h < (g + 1) * rep; h++)
    for (int64_t i0 = 0; i0 < n; i0 += tile) {
      const int64_t tq = std::min(tile, n - i0), nk = i0 + tq;
      const T* qt = q + (i0 * H + h) * hd;
      const T* dot_ = dout + (i0 * H + h) * hd;
      // P = exp(scores − lse), zero above the diagonal.
      gemm<T>(false, true, tq, nk, hd, T(scale), qt, H * hd, k + g * hd, KV * hd, T(0), P.data(), nk);
      for (int64_t r = 0; r < tq; r++) {
        const int64_t i = i0 + r;
        T* row = P.data() + r * nk;
        for (int64_t j = 0; j <= i; j++) row[j] = T(std::exp(double(row[j]) - double(lse[h * n + i])));
        std::fill(row + i + 1, row + nk, T(0));
      }
      // dV_g += Pᵀ·dO_h; dP = dO_h·V_gᵀ; dS = P ⊙ (dP − rowsum(P ⊙ dP)).
      gemm<T>(true, false, nk, hd, tq, T(1), P.data(), nk, dot_, H * hd, T(1), dv + g * hd, KV * hd);
      gemm<T>(false, true, tq, nk, hd, T(1), dot_, H * hd, v + g * hd, KV * hd, T(0), dS.data(), nk);
      for (int64_t r = 0; r < tq; r++) {
        const int64_t i = i0 + r;
        T* row = dS.data() + r * nk;
        const T* p = P.data() + r * nk;
        double dot = 0;
        for (int64_t j = 0; j <= i; j++) dot += double(p[j]) * double(row[j]);
        for (int64_t j = 0; j <= i; j++) row[j] = T(double(p[j]) * (double(row[j]) - dot) * scale);
        std::fill(row + i + 1, row + nk, T(0));
      }
      gemm<T>(false, false, tq, hd, nk, T(1), dS.data(), nk, k + g * hd, KV * hd, T(0), dq + (i0 * H + h) * hd, H * hd);
      gemm<T>(true, false, nk, hd, tq, T(1), dS.data(), nk, qt, H * hd, T(1), dk + g * hd, KV * hd);
    }
}

template <class T>
void swiglu_forward(const T* g, const T* u, int64_t n, T* a) {
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    const double x = double(g[i]);
    a[i] = T(x / (1.0 + std::exp(-x)) * double(u[i]));
  }
}

template <class T>
void swiglu_backward(const T* g, const T* u, const T* da, int64_t n, T* dg, T* du) {
  // silu(x) = x·σ(x), silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    const double x = double(g[i]), s = 1.0 / (1.0 + std::exp(-x));
    du[i] = T(double(da[i]) * x * s);
    dg[i] = T(double(da[i]) * double(u[i]) * s * (1.0 + x * (1.0 - s)));
  }
}

namespace {

// log Σ exp(z) of a row, in double.
template <class T>
double log_sum_exp(const T* z, int64_t V) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < V; j++) mx = std::max(mx, double(z[j]));
  double s = 0;
  for (int64_t j = 0; j < V; j++) s += std::exp(double(z[j]) - mx);
  return mx + std::log(s);
}

}  // namespace

namespace {

// Row r of the teacher: its full logits, or its top k (ids, logits) and the
// mass of the rest; and the log-sum-exp of all its logits.
struct TeacherRow {
  const float* full = nullptr;
  double tlse = 0;
  // top k
  const int32_t* ids = nullptr;
  const float* top = nullptr;
  int64_t k = 0;
  double p_rest = 0;
};

TeacherRow teacher_row(const TeacherLogits& t, int64_t r, int64_t V) {
  TeacherRow row;
  if (t.full) {
    row.full = t.full + r * V;
    row.tlse = log_sum_exp(row.full, V);
    return row;
  }
  row.ids = t.ids + r * t.k, row.top = t.top + r * t.k, row.k = t.k, row.tlse = double(t.lse[r]);
  double p_top = 0;
  for (int64_t i = 0; i < t.k; i++) p_top += std::exp(double(row.top[i]) - row.tlse);
  row.p_rest = std::max(0.0, 1.0 - p_top);
  return row;
}

// The coarsened losses of a top-k teacher row (see TeacherLogits): zr
// overwritten by scale · ∂/∂z of w_kl · KL (KL or RKL), the loss returned.
template <class T>
double topk_kl_backward(const TeacherRow& t, T* zr, int64_t V, double lse, bool reverse, double w_kl, double scale,
                        std::vector<uint8_t>& in_top) {
  in_top.assign(size_t(V), 0);
  for (int64_t i = 0; i < t.k; i++) in_top[size_t(t.ids[i])] = 1;
  double q_rest = 0;
  for (int64_t j = 0; j < V; j++)
    if (!in_top[size_t(j)]) q_rest += std::exp(double(zr[j]) - lse);
  double kl = 0;
  if (!reverse) {
    // KL(p ‖ q); ∂/∂z_j = q_j − p_j, with p_j = p_rest · q_j / q_rest for the rest.
    for (int64_t i = 0; i < t.k; i++) {
      const double lp = double(t.top[i]) - t.tlse;
      kl += std::exp(lp) * (lp - (double(zr[t.ids[i]]) - lse));
    }
    if (t.p_rest > 0 && q_rest > 0) kl += t.p_rest * std::log(t.p_rest / q_rest);
    const double rest_ratio = q_rest > 0 ? t.p_rest / q_rest : 0.0;
    for (int64_t j = 0; j < V; j++)
      if (!in_top[size_t(j)]) {
        const double q = std::exp(double(zr[j]) - lse);
        zr[j] = T((q - w_kl * q * rest_ratio) * scale);
      }
    for (int64_t i = 0; i < t.k; i++) {
      T& z = zr[t.ids[i]];
      z = T((std::exp(double(z) - lse) - w_kl * std::exp(double(t.top[i]) - t.tlse)) * scale);
    }
    return kl;
  }
  // KL(q ‖ p); ∂/∂z_j = q_j (g_j − KL) with g_j = log q_j − log p_j (top), log q_rest − log p_rest (rest).
  const double lp_rest = std::log(std::max(t.p_rest, 1e-10));
  const double g_rest = q_rest > 0 ? std::log(q_rest) - lp_rest : 0.0;
  for (int64_t i = 0; i < t.k; i++) {
    const double lq = double(zr[t.ids[i]]) - lse;
    kl += std::exp(lq) * (lq - (double(t.top[i]) - t.tlse));
  }
  kl += q_rest * g_rest;
  for (int64_t j = 0; j < V; j++)
    if (!in_top[size_t(j)]) zr[j] = T(std::exp(double(zr[j]) - lse) * (g_rest - kl) * scale);
  for (int64_t i = 0; i < t.k; i++) {
    T& z = zr[t.ids[i]];
    const double lq = double(z) - lse;
    z = T(std::exp(lq) * (lq - (double(t.top[i]) - t.tlse) - kl) * scale);
  }
  return kl;
}

}  // namespace

template <class T>
double loss_backward(const Loss& loss, T* z, const int32_t* targets, const TeacherLogits& teacher, int64_t rows,
                     int64_t V, double scale, double* ce_sum) {
  const bool ce = loss.kind == Loss::CE || loss.kind == Loss::Mix;
  if (ce && !targets) fail("loss_backward: cross-entropy without targets");
  if (loss.needs_teacher() && teacher.empty()) fail("loss_backward: a distillation loss without the teacher's logits");
  const double a = loss.kind == Loss::Mix ? loss.ce_weight : loss.kind == Loss::CE ? 1.0 : 0.0;
  double total = 0, ce_total = 0;
#pragma omp parallel for reduction(+ : total, ce_total) if (rows > 1)
  for (int64_t r = 0; r < rows; r++) {
    T* zr = z + r * V;
    const double lse = log_sum_exp(zr, V);
    double row_ce = 0;
    if (targets) {
      const int32_t y = targets[r];
      row_ce = lse - double(zr[y]);
      ce_total += row_ce;
    }
    if (loss.kind == Loss::CE) {
      for (int64_t j = 0; j < V; j++) zr[j] = T(std::exp(double(zr[j]) - lse) * scale);
      zr[targets[r]] -= T(scale);
      total += row_ce;
      continue;
    }
    const TeacherRow t = teacher_row(teacher, r, V);
    if (!t.full) {
      thread_local std::vector<uint8_t> in_top;
      const double kl = topk_kl_backward(t, zr, V, lse, loss.kind == Loss::RKL, 1.0 - a, scale, in_top);
      if (a > 0) zr[targets[r]] -= T(a * scale);
      total += a * row_ce + (1.0 - a) * kl;
      continue;
    }
    const float* tr = t.full;
    const double tlse = t.tlse;
    if (loss.kind == Loss::RKL) {
      // KL(q ‖ p) = Σ q (log q − log p); ∂/∂z_j = q_j (log q_j − log p_j − KL).
      double kl = 0;
      for (int64_t j = 0; j < V; j++) {
        const double lq = double(zr[j]) - lse, lp = double(tr[j]) - tlse;
        kl += std::exp(lq) * (lq - lp);
      }
      for (int64_t j = 0; j < V; j++) {
        const double lq = double(zr[j]) - lse, lp = double(tr[j]) - tlse;
        zr[j] = T(std::exp(lq) * (lq - lp - kl) * scale);
      }
      total += kl;
      continue;
    }
    // KL(p ‖ q) = Σ p (log p − log q); ∂/∂z_j = q_j − p_j. Mix adds a·CE.
    double kl = 0;
    for (int64_t j = 0; j < V; j++) {
      const double lq = double(zr[j]) - lse, lp = double(tr[j]) - tlse, p = std::exp(lp);
      kl += p * (lp - lq);
      zr[j] = T((std::exp(lq) - (1.0 - a) * p) * scale);
    }
    if (a > 0) zr[targets[r]] -= T(a * scale);
    total += a * row_ce + (1.0 - a) * kl;
  }
  if (ce_sum) *ce_sum += ce_total;
  return total;
}

// The floor llama.cpp puts under the chosen weights' sum before dividing (the smallest normal f16), as inference.
constexpr double kRouteSumFloor = 6.103515625e-5;

template <class T>
void route_forward(const T* z, int64_t n, int64_t E, int64_t K, bool norm, double scale, T* probs, int32_t* chosen,
                   T* weights, T* sums) {
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < n; t++) {
    T* p = probs + t * E;
    const T mx = *std::max_element(z + t * E, z + (t + 1) * E);
    T sum = 0;
    for (int64_t e = 0; e < E; e++) sum += p[e] = std::exp(z[t * E + e] - mx);
    for (int64_t e = 0; e < E; e++) p[e] /= sum;
    for (int64_t e = 0; e < E; e++) order[size_t(e)] = int32_t(e);
    std::partial_sort(order.begin(), order.begin() + K, order.end(),
                      [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    T total = 0;
    for (int64_t k = 0; k < K; k++) chosen[t * K + k] = order[size_t(k)], total += p[order[size_t(k)]];
    sums[t] = total;
    const T div = norm ? std::max(total, T(kRouteSumFloor)) : T(1);
    for (int64_t k = 0; k < K; k++) weights[t * K + k] = T(scale) * p[chosen[t * K + k]] / div;
  }
}

template <class T>
void route_backward(const T* probs, const int32_t* chosen, const T* weights, const T* sums, const T* dw, int64_t n,
                    int64_t E, int64_t K, bool norm, double scale, T* dz) {
  std::vector<T> dp(static_cast<size_t>(E));
  for (int64_t t = 0; t < n; t++) {
    const T* p = probs + t * E;
    std::fill(dp.begin(), dp.end(), T(0));
    // w_k = s·p_k / S with S = Σ chosen p (held constant under the floor): ∂/∂p_k = s/S · (dw_k − Σ_j dw_j·w_j / s).
    const bool divides = norm && sums[t] >= T(kRouteSumFloor);
    const T S = norm ? std::max(sums[t], T(kRouteSumFloor)) : T(1);
    T mean = 0;
    if (divides)
      for (int64_t k = 0; k < K; k++) mean += dw[t * K + k] * weights[t * K + k] / T(scale);
    for (int64_t k = 0; k < K; k++) dp[size_t(chosen[t * K + k])] += T(scale) / S * (dw[t * K + k] - mean);
    // Softmax: dz_e = p_e · (dp_e − Σ_f p_f·dp_f).
    T dot = 0;
    for (int64_t e = 0; e < E; e++) dot += p[e] * dp[size_t(e)];
    for (int64_t e = 0; e < E; e++) dz[t * E + e] = p[e] * (dp[size_t(e)] - dot);
  }
}

#define LMPRESS_TRAIN_OPS(T)                                                                                         \
  template void linear_forward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, T*);                      \
  template void linear_backward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, T*, T*, T*, bool);       \
  template void rmsnorm_forward<T>(const T*, const T*, int64_t, int64_t, double, T*, T*);                            \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, const T*, int64_t, int64_t, T*, T*);               \
  template void rope_rotate<T>(T*, int64_t, int64_t, int64_t, const std::vector<float>&, RopeLayout, bool);          \
  template void attention_forward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t,      \
                                     double, T*, T*, int64_t);                                                       \
  template void attention_backward<T>(const T*, const T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,   \
                                      int64_t, int64_t, double, T*, T*, T*, int64_t);                                \
  template void swiglu_forward<T>(const T*, const T*, int64_t, T*);                                                  \
  template void swiglu_backward<T>(const T*, const T*, const T*, int64_t, T*, T*);                                   \
  template void route_forward<T>(const T*, int64_t, int64_t, int64_t, bool, double, T*, int32_t*, T*, T*);           \
  template void route_backward<T>(const T*, const int32_t*, const T*, const T*, const T*, int64_t, int64_t, int64_t, \
                                  bool, double, T*);                                                                 \
  template double loss_backward<T>(const Loss&, T*, const int32_t*, const TeacherLogits&, int64_t, int64_t, double, \
                                   double*);
LMPRESS_TRAIN_OPS(float)
LMPRESS_TRAIN_OPS(double)

}  // namespace lmpress::train
