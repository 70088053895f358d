#include "quant/low_rank.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "kernels/matmul.h"

namespace lmpress {

std::vector<float> LowRankFactors::product() const {
  std::vector<float> p(static_cast<size_t>(rows * cols));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(cols), int(rank), 1.0f, b.data(), int(rank),
              a.data(), int(cols), 0.0f, p.data(), int(cols));
  return p;
}

namespace {

// Dw = D·S with S = QΛ^½ (the whitening) for H = QΛQᵀ, and T = Λ^-½Qᵀ, which maps back: D·S·T = D on H's
// range. Without H: Dw = D, T empty (the identity).
std::vector<double> whiten(const float* D, int64_t rows, int64_t cols, const std::vector<float>* H,
                           std::vector<double>& T) {
  if (H && int64_t(H->size()) != cols * cols) fail("internal: H is not {}x{}", cols, cols);
  std::vector<double> Dw(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < Dw.size(); i++) Dw[i] = D[i];
  T.clear();
  if (H) {
    std::vector<double> Q(static_cast<size_t>(cols * cols)), lambda(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; i++)
      for (int64_t j = 0; j < cols; j++)
        Q[size_t(i * cols + j)] = 0.5 * (double((*H)[size_t(i * cols + j)]) + double((*H)[size_t(j * cols + i)]));
    if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', int(cols), Q.data(), int(cols), lambda.data()) != 0)
      fail("internal: eigendecomposition of a {}x{} calibration matrix failed", cols, cols);
    const double floor = 1e-10 * std::max(0.0, lambda.back());
    std::vector<double> S(Q), sqrt_l(static_cast<size_t>(cols)), inv_sqrt_l(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; j++) {
      const double l = lambda[size_t(j)];
      sqrt_l[size_t(j)] = l > floor ? std::sqrt(l) : 0.0;
      inv_sqrt_l[size_t(j)] = l > floor ? 1.0 / std::sqrt(l) : 0.0;
    }
    for (int64_t i = 0; i < cols; i++)
      for (int64_t j = 0; j < cols; j++) S[size_t(i * cols + j)] *= sqrt_l[size_t(j)];  // Q's column j · √λ_j
    T.resize(size_t(cols * cols));
    for (int64_t i = 0; i < cols; i++)
      for (int64_t j = 0; j < cols; j++) T[size_t(i * cols + j)] = inv_sqrt_l[size_t(i)] * Q[size_t(j * cols + i)];
    std::vector<double> tmp(Dw.size());
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(cols), int(cols), 1.0, Dw.data(), int(cols),
                S.data(), int(cols), 0.0, tmp.data(), int(cols));
    Dw.swap(tmp);
  }
  return Dw;
}

}  // namespace

std::vector<double> weighted_singular_values(const float* D, int64_t rows, int64_t cols, const std::vector<float>* H) {
  std::optional<SingleThreadScope> one_thread;
  if (cols <= 2048) one_thread.emplace();
  std::vector<double> T;
  std::vector<double> Dw = whiten(D, rows, cols, H, T);
  std::vector<double> s(static_cast<size_t>(std::min(rows, cols)));
  if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'N', int(rows), int(cols), Dw.data(), int(cols), s.data(), nullptr, 1, nullptr,
                     int(cols)) != 0)  // LAPACKE checks ldvt >= cols even when it writes no vectors
    fail("internal: SVD of a {}x{} matrix failed", rows, cols);
  return s;
}

LowRankFactors weighted_low_rank(const float* D, int64_t rows, int64_t cols, const std::vector<float>* H, int64_t rank) {
  const int64_t k = std::min(rows, cols);
  if (rank < 1 || rank > k) fail("internal: low-rank approximation of rank {} for a {}x{} matrix", rank, rows, cols);
  // Small solves on one thread; a wide layer's (a 4096-wide model's and up) keep the threads.
  std::optional<SingleThreadScope> one_thread;
  if (cols <= 2048) one_thread.emplace();
  std::vector<double> T;  // cols x cols, row-major; empty: identity
  std::vector<double> Dw = whiten(D, rows, cols, H, T);
  std::vector<double> s(static_cast<size_t>(k)), U(static_cast<size_t>(rows * k)), Vt(static_cast<size_t>(k * cols));
  if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', int(rows), int(cols), Dw.data(), int(cols), s.data(), U.data(), int(k),
                     Vt.data(), int(cols)) != 0)
    fail("internal: SVD of a {}x{} matrix failed", rows, cols);
  // A = Vt_r · T (r x cols).
  std::vector<double> A(static_cast<size_t>(rank * cols));
  if (T.empty()) {
    std::copy(Vt.begin(), Vt.begin() + rank * cols, A.begin());
  } else {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rank), int(cols), int(cols), 1.0, Vt.data(), int(cols),
                T.data(), int(cols), 0.0, A.data(), int(cols));
  }
  LowRankFactors f;
  f.rank = rank;
  f.rows = rows;
  f.cols = cols;
  f.a.resize(size_t(rank * cols));
  f.b.resize(size_t(rows * rank));
  for (int64_t c = 0; c < rank; c++) {
    double na = 0;
    for (int64_t j = 0; j < cols; j++) na += A[size_t(c * cols + j)] * A[size_t(c * cols + j)];
    na = std::sqrt(na);
    // Column c of B is σ_c·U_c (unit norm U_c): balance σ_c between the two.
    const double sigma = s[size_t(c)];
    const double g = na > 0 && sigma > 0 ? std::sqrt(sigma / na) : 1.0;
    for (int64_t j = 0; j < cols; j++) f.a[size_t(c * cols + j)] = float(A[size_t(c * cols + j)] * g);
    for (int64_t i = 0; i < rows; i++) f.b[size_t(i * rank + c)] = float(U[size_t(i * k + c)] * (g > 0 ? sigma / g : 0.0));
  }
  return f;
}

double weighted_sq_error(const float* D, const float* approx, int64_t rows, int64_t cols, const std::vector<float>* H) {
  double total = 0;
  std::vector<double> e(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t j = 0; j < cols; j++) e[size_t(j)] = double(D[r * cols + j]) - double(approx[r * cols + j]);
    if (!H) {
      for (double v : e) total += v * v;
      continue;
    }
    for (int64_t i = 0; i < cols; i++) {
      double hi = 0;
      for (int64_t j = 0; j < cols; j++) hi += double((*H)[size_t(i * cols + j)]) * e[size_t(j)];
      total += e[size_t(i)] * hi;
    }
  }
  return total;
}

}  // namespace lmpress
