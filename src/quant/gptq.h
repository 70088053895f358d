// GPTQ (Frantar et al. 2022): quantizes a weight matrix one input column at a
// time and spreads each column's rounding error over the columns not yet
// quantized, through the Cholesky factor of the inverse Hessian H = XᵀX of
// the layer's calibration inputs. Works on any ggml block type: a block's
// scales are chosen (with the block type's own search, weighted by the
// activation importance) when GPTQ reaches its first column, then fixed as
// GPTQ's static groups, and each element takes the nearest level on them.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/dtype.h"
#include "quant/int_group.h"
#include "quant/pattern.h"

namespace lmpress {

struct GptqOptions {
  double damp = 0.01;      // fraction of mean(diag H) added to the diagonal
  int64_t block = 128;     // lazy-update batch (raised to the block type's size)
  bool act_order = false;  // columns by decreasing H_ii; scales then come from the unquantized weights
  // int-N groups: choose each group's clipping ratio by diag(H)-weighted
  // squared error (as the block formats' importance-weighted scale searches do),
  // instead of AutoGPTQ's plain min-max.
  bool int_clip_search = true;
};

// W: rows x cols (row-major). H: cols x cols, sum over tokens of x xᵀ.
// importance: cols weights for the block scale search (null: diag(H)).
// Writes rows * row_bytes(t, cols) bytes to out.
// With `prune`, SparseGPT's joint pruning and quantization (see gptq_core);
// t must then have zero as a level (zero_is_level).
void gptq_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H, DType t,
                   const float* importance, const GptqOptions& o, uint8_t* out,
                   const SparsityPattern* prune = nullptr);
// The block types gptq_quantize can write: those with a block grid
// (quant/block_grid.h) and LMP2 (quant/lmp2.h).
bool gptq_can_target(DType t);
// Block types whose every block can hold an exact 0 (symmetric grids: Q4_0,
// Q5_0, Q8_0, Q3_K, Q6_K), so a pruned weight stays exactly zero.
bool zero_is_level(DType t);

// int-N group format: groups are min-max gridded when GPTQ reaches them; with
// act-order, groups are consecutive in processing order and g_idx records them.
IntGroupTensor gptq_quantize_int(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                                 const IntGroupSpec& spec, const GptqOptions& o);

// The column loop behind both: what it needs from a weight format.
struct GptqGridFormat {
  int64_t group = 0;  // columns sharing one grid per row
  int n_levels = 0;
  const int8_t* table = nullptr;  // non-linear levels (IQ4_NL), else scale·level + offset
  // false: group j is columns [j·group, (j+1)·group); true: with act-order,
  // group j is the j-th run of `group` columns in processing order.
  bool ordered_groups = false;
  // choose gives every column of a group the same scale and offset per row
  // (int-N groups; not the block types' sub-block scales): kept per group,
  // not per weight.
  bool uniform_groups = false;
  // Chooses group j's grid for every row from x (group columns of rows values,
  // column-major, the group's current values); members: their original column
  // indices. Writes each element's grid scale and offset in x's layout.
  std::function<void(int64_t j, const int64_t* members, const float* x, float* scale, float* offset)> choose;
  // Vector formats (lmp2) instead of a grid (n_levels 0, no choose): when
  // GPTQ reaches column k (a multiple of vector_dim), round_vectors rounds
  // columns k .. k + vector_dim − 1 of every row together. x: the current
  // values from column k to the end of the lazy batch (a multiple of group
  // columns, column-major, rows apart); q: the rounded values of the first
  // vector_dim columns, in x's layout. The rounded values are not returned.
  int vector_dim = 0;
  std::function<void(int64_t k, const float* x, float* q)> round_vectors;
};
// The Hessian-sized memory gptq_core holds besides the caller's H for a
// matrix of `cols` inputs: the damped Hessian in double, then its inverse's
// Cholesky factor in f32 (both at once while the factor is made).
inline uint64_t gptq_solver_bytes(int64_t cols) { return uint64_t(cols * cols) * (sizeof(double) + sizeof(float)); }

struct GptqResult {
  std::vector<uint8_t> levels;  // rows x cols, when the format has a grid
  std::vector<int32_t> g_idx;   // group of each column
  std::vector<float> values;    // rows x cols, the final weights, when the format has no grid (n_levels == 0)
  std::vector<uint8_t> pruned;  // rows x cols, 1 where pruned (with a prune pattern)
};
// With `prune`, this is SparseGPT (Frantar & Alistarh 2023): at the start of
// each lazy batch (unstructured) or of each M columns (N:M), the weights with
// the least w² / [U]ᵢᵢ² are masked; a masked weight becomes exactly zero (on a
// grid, its zero level: formats where zero is a level) and its error is
// spread like a rounding error. A format with n_levels == 0 (group 1, no
// choose) is pruning alone: the other weights stay float and are updated.
// Not with act_order.
GptqResult gptq_core(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                     const GptqGridFormat& f, const GptqOptions& o, const SparsityPattern* prune = nullptr);

// Hessian accumulation: H += xᵀ x for x[n, cols] (upper triangle; call
// symmetrize_hessian when done).
void accumulate_hessian(std::vector<float>& H, const float* x, int64_t n, int64_t cols);
void symmetrize_hessian(std::vector<float>& H, int64_t cols);

// Output error of a quantized matrix Wq on the calibration inputs,
// tr(ΔW H ΔWᵀ) = Σ_tokens ‖ΔW x‖² with ΔW = Wq − W; and relative to tr(W H Wᵀ).
double output_error(const float* W, const float* Wq, int64_t rows, int64_t cols, const std::vector<float>& H);
double relative_output_error(const float* W, const float* Wq, int64_t rows, int64_t cols, const std::vector<float>& H);

}  // namespace lmpress
