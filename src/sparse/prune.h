// One-shot pruning of one weight matrix (rows = outputs, cols = inputs):
// magnitude (|W|, compared across the whole matrix, the usual baseline),
// Wanda (Sun et al. 2023: |W_ij|·‖X_j‖₂, compared within each output row)
// and SparseGPT (Frantar & Alistarh 2023: OBS mask selection and weight
// updates through the inverse Hessian, the machinery of GPTQ). N:M patterns
// are chosen within every M consecutive weights of a row for all three.
// A pruned weight is exactly zero; counts are exact (see zeros_for).
#pragma once
#include <cstdint>
#include <vector>

#include "quant/gptq.h"
#include "quant/pattern.h"

namespace lmpress {

enum class PruneMethod { Magnitude, Wanda, SparseGPT };
PruneMethod parse_prune_method(const std::string& s);
const char* prune_method_name(PruneMethod m);

// Zeroes W in place by |W|.
void magnitude_prune(float* W, int64_t rows, int64_t cols, const SparsityPattern& p);
// Zeroes W in place by |W_ij|·sqrt(x_sq[j]), x_sq[j] = Σ_tokens x_j² (diag H).
void wanda_prune(float* W, int64_t rows, int64_t cols, const SparsityPattern& p, const float* x_sq);
// SparseGPT on H = Σ x xᵀ: W is replaced by the pruned and updated weights.
void sparsegpt_prune(float* W, int64_t rows, int64_t cols, const std::vector<float>& H, const SparsityPattern& p,
                     const GptqOptions& o);
// The same, returning the pruned weights (W is left as it is).
std::vector<float> sparsegpt_pruned(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                                    const SparsityPattern& p, const GptqOptions& o);

// Fraction of exact zeros.
double zero_fraction(const float* W, int64_t n);

}  // namespace lmpress
