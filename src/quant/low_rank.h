// Low-rank approximation of a matrix in the output norm of its calibration
// inputs: the B·A of rank r minimizing ‖(D − B·A)·Xᵀ‖ over the rows x of X,
// given only H = XᵀX. With H = QΛQᵀ, the problem is plain truncated SVD of
// D·QΛ^½ (Eckart–Young), mapped back by Λ^-½Qᵀ — EoRA's eigenspace
// projection; SVD-LLM's Cholesky whitening is the same optimum. Without H it is
// the plain truncated SVD of D (LoRC).
#pragma once
#include <cstdint>
#include <vector>

namespace lmpress {

struct LowRankFactors {
  int64_t rank = 0, rows = 0, cols = 0;
  std::vector<float> a;  // [rank, cols]
  std::vector<float> b;  // [rows, rank]
  // B·A, rows x cols.
  std::vector<float> product() const;
};

// D: rows x cols, row-major. H: cols x cols (symmetric; Σ x xᵀ) or null for the
// Frobenius norm. Directions of H with eigenvalue below 1e-10 of the largest
// carry no input: A has no component along them. Each rank component is
// scaled so that its column of B and row of A have equal norms (both fit f16).
// rank must be in [1, min(rows, cols)].
LowRankFactors weighted_low_rank(const float* D, int64_t rows, int64_t cols, const std::vector<float>* H, int64_t rank);

// The singular values of the problem weighted_low_rank truncates (those of
// D·QΛ^½, or of D without H), largest first: the rank-r solution's error
// tr(E H Eᵀ) is the sum of the squares of those past r.
std::vector<double> weighted_singular_values(const float* D, int64_t rows, int64_t cols, const std::vector<float>* H);

// tr(E H Eᵀ) for E = D − approx (H null: ‖E‖²_F).
double weighted_sq_error(const float* D, const float* approx, int64_t rows, int64_t cols, const std::vector<float>* H);

}  // namespace lmpress
