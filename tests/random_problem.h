// A random linear layer with correlated calibration inputs (a shared latent
// factor per token, channel scales that differ), for the tests of the
// Hessian-based compressors (GPTQ, SparseGPT): error feedback has something
// to exploit, and input scales make activation-aware scores differ from |W|.
#pragma once
#include <cstdint>
#include <vector>

namespace lmpress::test {

struct Problem {
  int64_t rows, cols, tokens;
  std::vector<float> W, X, H;  // W[rows, cols], X[tokens, cols], H = XᵀX (full)
};

Problem make_problem(int64_t rows, int64_t cols, int64_t tokens, unsigned seed);

// tr(ΔW H ΔWᵀ) for ΔW = A − W, in double.
double output_error(const Problem& p, const std::vector<float>& A);

}  // namespace lmpress::test
