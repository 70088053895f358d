// Quantization-aware training's rounding (TrainModel's fake quantization):
// the format a weight will be written in, the values a file of that format
// holds, and with learned scales (LSQ, Esser et al. 2020; EfficientQAT's
// trained step sizes) the straight-through gradients of the weight and of
// its scales. The same functions encode the trained weights for the file, so
// the file holds exactly the values training computed with.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "quant/int_group.h"
#include "quant/quantize.h"

namespace lmpress::train {

// A weight's QAT format: a ggml block type, or an int-N group format.
struct QatFormat {
  DType type = DType::F32;  // the block type (unused with int_group)
  std::optional<IntGroupSpec> int_group;
  std::string name() const;
  // Values per scale in a row of `cols`: the block, or the int-N group.
  int64_t group(int64_t cols) const;
};

// Whether a format has scales QAT can learn: one f16 scale (Q4_0, Q5_0,
// Q8_0; Q4_1 and Q5_1 with an f16 offset) per block of 32, or an int-N
// group's scale (its zero point stays where round-to-nearest put it). The
// K-quants' 6-bit sub-block scales under a super-block scale are not.
bool learnable_scales(const QatFormat& f);
// Q4_1 and Q5_1: the block's offset (its minimum) is learned too.
bool learns_offsets(const QatFormat& f);
// LSQ's gradient scale for a scale of this format, 1/√(group · Q_P) (Q_P the
// largest level above the zero level): under Adam, which normalizes
// gradients, it becomes the scales' learning-rate factor, so that a step
// moves a group's values about as far as a step of its weights does.
double scale_lr_factor(const QatFormat& f, int64_t cols);

// Round to nearest: `out` gets the values a file of format f holds for the
// row w (ggml's quantizer; int-N min-max groups, as `lmpress quantize`; F16
// and BF16: the value rounded to that type).
void fake_quant_row(const QatFormat& f, const float* w, int64_t cols, float* out);

// A row's scales, one per group: what round to nearest chose (the starting
// point of learning); offset (Q4_1/Q5_1) and zero (int-N) may be null for
// formats without them.
struct RowScales {
  float* scale;
  float* offset;
  uint16_t* zero;
};
void init_scales(const QatFormat& f, const float* w, int64_t cols, const RowScales& s);

// The row on given scales (each rounded to f16, as stored): `out` gets the
// values a file holds when each element takes the nearest level of its
// group's grid (clamped to the format's levels).
void fake_quant_row(const QatFormat& f, const float* w, int64_t cols, const RowScales& s, float* out);
// Its straight-through backward: g[cols] holds ∂L/∂ŵ and becomes ∂L/∂w (0
// where the level was clamped, LSQ's rule); dscale (and doffset) += the
// scales' gradients, ∂ŵ/∂s = v − u inside the grid (u the unrounded level)
// and v − z outside it (z the zero level), ∂ŵ/∂m = 0 inside and 1 outside.
void fake_quant_row_backward(const QatFormat& f, const float* w, int64_t cols, const RowScales& s, float* g,
                             float* dscale, float* doffset);

// A ggml-format row encoded on given scales: row_bytes(f.type, cols) bytes.
void encode_row(const QatFormat& f, const float* w, int64_t cols, const RowScales& s, uint8_t* out);
// An int-N matrix on given scales (rows · groups of them, and of zeros).
IntGroupTensor encode_int(const IntGroupSpec& spec, const float* W, int64_t rows, int64_t cols, const float* scale,
                          const uint16_t* zero);

// Trained weights encoded on their learned scales, by weight name: ggml
// blocks, or int-N tensors.
struct QatEncoded {
  std::map<std::string, EncodedTensor> blocks;
  std::map<std::string, IntGroupTensor> ints;
};

}  // namespace lmpress::train
