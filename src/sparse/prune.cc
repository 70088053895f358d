#include "sparse/prune.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace lmpress {

namespace {

void check_nm(const SparsityPattern& p, int64_t cols) {
  if (p.is_nm() && cols % p.m != 0)
    fail("{} columns do not split into groups of {} ({} pattern)", cols, p.m, p.name());
}

// Zeroes the `z` entries of W[idx] with the smallest score (ties: lower index).
void zero_smallest(float* W, std::vector<int64_t>& idx, int64_t z, const std::vector<float>& score) {
  if (z <= 0) return;
  std::nth_element(idx.begin(), idx.begin() + (z - 1), idx.end(), [&](int64_t a, int64_t b) {
    return score[size_t(a)] < score[size_t(b)] || (score[size_t(a)] == score[size_t(b)] && a < b);
  });
  for (int64_t i = 0; i < z; i++) W[idx[size_t(i)]] = 0.0f;
}

// Per row (Wanda, N:M of every method) or, for unstructured magnitude, across the matrix.
void prune_by_score(float* W, int64_t rows, int64_t cols, const SparsityPattern& p, const std::vector<float>& score,
                    bool per_row) {
  check_nm(p, cols);
  if (p.is_nm()) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      std::vector<int64_t> idx(static_cast<size_t>(p.m));
      for (int64_t g = 0; g < cols; g += p.m) {
        std::iota(idx.begin(), idx.end(), r * cols + g);
        zero_smallest(W, idx, p.zeros_per_group(), score);
      }
    }
    return;
  }
  if (!per_row) {
    std::vector<int64_t> idx(static_cast<size_t>(rows * cols));
    std::iota(idx.begin(), idx.end(), 0);
    zero_smallest(W, idx, zeros_for(p.sparsity, 0, rows * cols), score);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    std::vector<int64_t> idx(static_cast<size_t>(cols));
    std::iota(idx.begin(), idx.end(), r * cols);
    zero_smallest(W, idx, zeros_for(p.sparsity, 0, cols), score);
  }
}

}  // namespace

PruneMethod parse_prune_method(const std::string& s) {
  if (s == "magnitude") return PruneMethod::Magnitude;
  if (s == "wanda") return PruneMethod::Wanda;
  if (s == "sparsegpt") return PruneMethod::SparseGPT;
  fail("unknown pruning method '{}' (magnitude, wanda, sparsegpt)", s);
}

const char* prune_method_name(PruneMethod m) {
  return m == PruneMethod::Magnitude ? "magnitude" : m == PruneMethod::Wanda ? "wanda" : "sparsegpt";
}

void magnitude_prune(float* W, int64_t rows, int64_t cols, const SparsityPattern& p) {
  std::vector<float> score(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < score.size(); i++) score[i] = std::fabs(W[i]);
  prune_by_score(W, rows, cols, p, score, false);
}

void wanda_prune(float* W, int64_t rows, int64_t cols, const SparsityPattern& p, const float* x_sq) {
  std::vector<float> score(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++)
      score[size_t(r * cols + c)] = std::fabs(W[r * cols + c]) * std::sqrt(std::max(0.0f, x_sq[c]));
  prune_by_score(W, rows, cols, p, score, true);
}

std::vector<float> sparsegpt_pruned(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                                    const SparsityPattern& p, const GptqOptions& o) {
  check_nm(p, cols);
  GptqGridFormat f;
  f.group = 1;  // no grid: pruning alone
  GptqOptions go = o;
  go.act_order = false;
  return std::move(gptq_core(W, rows, cols, H, f, go, &p).values);
}

void sparsegpt_prune(float* W, int64_t rows, int64_t cols, const std::vector<float>& H, const SparsityPattern& p,
                     const GptqOptions& o) {
  const auto v = sparsegpt_pruned(W, rows, cols, H, p, o);
  std::copy(v.begin(), v.end(), W);
}

double zero_fraction(const float* W, int64_t n) {
  int64_t z = 0;
  for (int64_t i = 0; i < n; i++) z += W[i] == 0.0f;
  return n > 0 ? double(z) / double(n) : 0.0;
}

}  // namespace lmpress
