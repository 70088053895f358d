// AWQ (Lin et al. 2023): activation-aware scaling. Input channels that carry
// large activations are scaled up in the weights (and down in the operation
// that produces them: an RMSNorm weight or the rows of a preceding linear),
// so their weights lose less to rounding; the per-channel scale s = x̄^α / w̄^(1-α)
// is searched over α on the calibration inputs. Then each block's clipping
// range is searched. The error measure throughout is the output error on the
// calibration inputs, tr(ΔW H ΔWᵀ) with H = XᵀX.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "core/dtype.h"
#include "quant/int_group.h"

namespace lmpress {

// The format a tensor is quantized to: a ggml block type, or (when `group`
// is set) an int-N group format.
struct QuantFormat {
  DType block = DType::F32;
  std::optional<IntGroupSpec> group;
  int64_t group_size(int64_t cols) const;  // columns sharing scales
};

// One linear of a group that shares an input: W is rows x cols (row-major).
// H: the Hessian of the inputs this linear sees, when not the group's (a
// mixture's expert sees only the tokens routed to it).
struct AwqLinear {
  const float* W;
  int64_t rows;
  QuantFormat format;
  const std::vector<float>* H = nullptr;
  // Its share in the group's loss (relative errors are summed with these weights): a mixture's expert counts by
  // the share of tokens routed to it, so one that saw a token does not weigh as much as one that saw them all.
  double weight = 1.0;
};

struct AwqOptions {
  int grid = 20;            // α in {0, 1/grid, ..., (grid-1)/grid}
  int clip_grid = 10;       // clipping ratios 1, 1 - 0.5/clip_grid, ..., down to max_shrink
  double max_shrink = 0.5;  // smallest clipping ratio tried
};

// Per-input-channel scales for the linears sharing an input with cols
// channels; x_abs_mean: mean |x| per channel; H: cols x cols. Returns all ones
// when no α beats no scaling.
std::vector<float> awq_search_scales(const std::vector<AwqLinear>& group, int64_t cols,
                                     const std::vector<float>& x_abs_mean, const std::vector<float>& H,
                                     const AwqOptions& o);

// Quantizes W (rows x cols) into out, choosing for every block the clipping
// ratio (of its largest magnitude) with the least output error on H's
// diagonal block. importance: per-column weights for the scale search.
void awq_clip_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H, DType t,
                       const float* importance, const AwqOptions& o, uint8_t* out);

// The same search for an int-N group format.
IntGroupTensor awq_clip_quantize_int(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                                     const IntGroupSpec& spec, const AwqOptions& o);

// Quantizes then dequantizes W row by row (RTN in the given format).
std::vector<float> fake_quantize(const float* W, int64_t rows, int64_t cols, const QuantFormat& f,
                                 const float* importance);

}  // namespace lmpress
