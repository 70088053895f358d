// GPTQ (Frantar et al. 2022): quantizes a weight matrix one input column at a
// time and spreads each column's rounding error over the columns not yet
// quantized, through the Cholesky factor of the inverse Hessian H = XᵀX of
// the layer's calibration inputs. Works on any ggml block type: a block's
// scales are chosen (with the block type's own search, weighted by the
// activation importance) when GPTQ reaches its first column, then fixed as
// GPTQ's static groups, and each element takes the nearest level on them.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace lmpress {

struct GptqOptions {
  double damp = 0.01;      // fraction of mean(diag H) added to the diagonal
  int64_t block = 128;     // lazy-update batch (raised to the block type's size)
  bool act_order = false;  // columns by decreasing H_ii; scales then come from the unquantized weights
};

// W: rows x cols (row-major). H: cols x cols, sum over tokens of x xᵀ.
// importance: cols weights for the block scale search (null: diag(H)).
// Writes rows * row_bytes(t, cols) bytes to out.
void gptq_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H, DType t,
                   const float* importance, const GptqOptions& o, uint8_t* out);

// Hessian accumulation: H += xᵀ x for x[n, cols] (upper triangle; call
// symmetrize_hessian when done).
void accumulate_hessian(std::vector<float>& H, const float* x, int64_t n, int64_t cols);
void symmetrize_hessian(std::vector<float>& H, int64_t cols);

// Relative output error of a quantized matrix Wq on the calibration inputs:
// tr(ΔW H ΔWᵀ) / tr(W H Wᵀ), ΔW = Wq - W.
double relative_output_error(const float* W, const float* Wq, int64_t rows, int64_t cols, const std::vector<float>& H);

}  // namespace lmpress
