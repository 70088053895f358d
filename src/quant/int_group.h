// Group-quantized integer weights, the format GPU engines (vLLM, TGI,
// ExLlama, Marlin) load from GPTQ checkpoints: each row's input columns are
// cut into groups; a group has one scale and one integer zero point, and an
// element decodes to scale · (q − zero) with q in 0 .. 2^bits − 1.
// Symmetric groups fix zero = 2^(bits−1), as AutoGPTQ does. With act-order,
// groups follow GPTQ's processing order and g_idx maps each column to its group.
// Layout on disk (AutoGPTQ's int32 packing): docs/int-group-format.md.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lmpress {

struct IntGroupSpec {
  int bits = 4;        // 2, 3, 4 or 8
  int64_t group = 128;  // columns per group; -1: one group per row (per channel)
  bool sym = true;
  bool act_order = false;  // GPTQ's desc_act: groups in decreasing-activation order

  int max_level() const { return (1 << bits) - 1; }
  int64_t group_size(int64_t cols) const { return group < 0 ? cols : group; }
  std::string name() const;  // "int4-g128", "int3-g64-asym", "int8-ch"
  // Fails with a clear message unless a cols-wide row (rows of them) fits this
  // spec and AutoGPTQ's int32 packing.
  void check_shape(const std::string& tensor, int64_t rows, int64_t cols) const;
};

// Parses "int<bits>-g<group>" or "int<bits>-ch", optionally followed by
// "-asym" or "-sym" (default symmetric); nullopt if the name is not of this form.
std::optional<IntGroupSpec> parse_int_group_type(const std::string& name);

// One quantized matrix (rows x cols, row = output feature).
struct IntGroupTensor {
  IntGroupSpec spec;
  int64_t rows = 0, cols = 0, n_groups = 0;
  std::vector<uint8_t> q;       // rows x cols levels
  std::vector<float> scale;     // rows x n_groups (values representable in f16)
  std::vector<uint16_t> zero;   // rows x n_groups (1 .. 2^bits)
  std::vector<int32_t> g_idx;   // cols: group of each column

  IntGroupTensor() = default;
  IntGroupTensor(const IntGroupSpec& s, int64_t rows, int64_t cols);  // g_idx = c / group
  float value(int64_t r, int64_t c) const {
    const size_t g = size_t(r * n_groups + g_idx[size_t(c)]);
    return scale[g] * float(int(q[size_t(r * cols + c)]) - int(zero[g]));
  }
  std::vector<float> dequantize() const;
};

// The count of zero values (levels at their group's zero point) when every row
// has at most 2 non-zero values in every 4 consecutive columns (the 2:4
// pattern), else nothing.
std::optional<int64_t> two_of_four_zeros(const IntGroupTensor& t);

// A group's scale and zero point from its values (AutoGPTQ's min-max
// find_params, the range widened to include 0), with the range shrunk by
// `clip` (1 = none). The scale is rounded to f16, as it is stored.
struct GroupGrid {
  float scale;
  int zero;
  int level(float x, int max_level) const;  // nearest level, clamped
};
GroupGrid int_group_grid(const IntGroupSpec& s, const float* x, int64_t n, float clip = 1.0f);

// Round to nearest, each group on its min-max grid; with clip_search, each
// group's clipping ratio minimizes Σ w·(x − x̂)² (w = importance per column, or 1).
struct IntGroupRtnOptions {
  bool clip_search = false;
  int clip_grid = 20;       // ratios 1, 1 − (1 − max_shrink)/clip_grid, ...
  double max_shrink = 0.5;
};
// One group's grid: min-max, or with clip_search the ratio with the least
// Σ w·(x − x̂)² (w: weights per element, or null for 1).
GroupGrid search_group_grid(const IntGroupSpec& s, const float* x, int64_t n, const float* w,
                            const IntGroupRtnOptions& o);
IntGroupTensor int_group_rtn(const float* W, int64_t rows, int64_t cols, const IntGroupSpec& s,
                             const float* importance, const IntGroupRtnOptions& o);

// AutoGPTQ's on-disk tensors. qweight: [cols·bits/32, rows] int32, the levels of
// each output row packed along the input dimension as a little-endian bit stream
// of 32-bit words; qzeros: [n_groups, rows·bits/32] int32, (zero − 1) packed the
// same way along the output dimension; scales: [n_groups, rows]; g_idx: [cols].
struct GptqPacked {
  std::vector<int32_t> qweight, qzeros;
  std::vector<float> scales;
  std::vector<int32_t> g_idx;
};
GptqPacked pack_gptq(const IntGroupTensor& t);
// The inverse; rows, cols and the spec come from the checkpoint's shapes and
// quantize_config. Fails on inconsistent shapes or group indices.
// `what` names the tensor in error messages.
IntGroupTensor unpack_gptq(const GptqPacked& p, const IntGroupSpec& s, int64_t rows, int64_t cols,
                           const std::string& what = "GPTQ tensor");

// Bit-stream packing shared by qweight and qzeros: value i occupies bits
// [bits·i, bits·(i+1)) of the stream (n·bits must be a multiple of 32).
void pack_bits(const uint32_t* values, int64_t n, int bits, uint32_t* words);
void unpack_bits(const uint32_t* words, int64_t n, int bits, uint32_t* values);

}  // namespace lmpress
