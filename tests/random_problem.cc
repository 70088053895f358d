#include "random_problem.h"

#include <random>

#include "quant/gptq.h"

namespace lmpress::test {

Problem make_problem(int64_t rows, int64_t cols, int64_t tokens, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  Problem p{rows, cols, tokens, {}, {}, {}};
  p.W.resize(size_t(rows * cols));
  for (auto& w : p.W) w = nd(rng) * 0.1f;
  p.X.resize(size_t(tokens * cols));
  constexpr int kFactors = 4;
  std::vector<float> mix(static_cast<size_t>(kFactors * cols));
  for (auto& m : mix) m = nd(rng) * 2.0f;
  for (int64_t t = 0; t < tokens; t++) {
    float z[kFactors];
    for (auto& v : z) v = nd(rng);
    for (int64_t c = 0; c < cols; c++) {
      float x = nd(rng) * 0.5f * (1.0f + float(c % 5));
      for (int f = 0; f < kFactors; f++) x += z[f] * mix[size_t(f * cols + c)];
      p.X[size_t(t * cols + c)] = x;
    }
  }
  accumulate_hessian(p.H, p.X.data(), tokens, cols);
  symmetrize_hessian(p.H, cols);
  return p;
}

double output_error(const Problem& p, const std::vector<float>& A) {
  double e = 0;
  for (int64_t r = 0; r < p.rows; r++)
    for (int64_t i = 0; i < p.cols; i++) {
      const double di = double(A[size_t(r * p.cols + i)]) - p.W[size_t(r * p.cols + i)];
      if (di == 0) continue;
      for (int64_t j = 0; j < p.cols; j++)
        e += di * p.H[size_t(i * p.cols + j)] * (double(A[size_t(r * p.cols + j)]) - p.W[size_t(r * p.cols + j)]);
    }
  return e;
}

}  // namespace lmpress::test
