#include "train/qat.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/blocks.h"
#include "quant/block_grid.h"
#include "quant/quantize.h"

namespace lmpress::train {

namespace {

constexpr int64_t kBlock = 32;

// The ggml types whose block is one f16 scale d (and an f16 offset m) over 32
// values: element = d·(level − zero_level) + m, level 0 .. max_level.
struct ScaledBlock {
  DType type;
  int max_level, zero_level;
  bool offset;
};
constexpr ScaledBlock kScaledBlocks[] = {
    {DType::Q4_0, 15, 8, false}, {DType::Q5_0, 31, 16, false}, {DType::Q8_0, 255, 128, false},
    {DType::Q4_1, 15, 0, true},  {DType::Q5_1, 31, 0, true},
};
const ScaledBlock* scaled_block(DType t) {
  for (const auto& b : kScaledBlocks)
    if (b.type == t) return &b;
  return nullptr;
}

float f16_round(float x) { return f16_to_f32(f32_to_f16(x)); }

// One block's bytes on scale d and offset m: the header set, each element at
// its nearest level of that grid.
void encode_block(const ScaledBlock& b, const float* x, float d, float m, uint8_t* block, BlockGrid& g) {
  std::memset(block, 0, row_bytes(b.type, kBlock));
  const uint16_t hd = f32_to_f16(d);
  std::memcpy(block, &hd, 2);
  if (b.offset) {
    const uint16_t hm = f32_to_f16(m);
    std::memcpy(block + 2, &hm, 2);
  }
  block_grid(b.type, block, g);
  uint8_t levels[kBlock];
  for (int e = 0; e < kBlock; e++) levels[e] = uint8_t(g.nearest_level(e, x[e]));
  pack_levels(b.type, levels, block);
}

const ScaledBlock& require_block(const QatFormat& f) {
  const ScaledBlock* b = scaled_block(f.type);
  if (!b) fail("QAT: {} has no learnable scales", f.name());
  return *b;
}

// ∂ŵ/∂(scale, offset) of one element at level v (the forward's), whose
// unrounded level is u, unclamped rounding r, on a grid with zero level z;
// g (∂L/∂ŵ) becomes ∂L/∂w.
void element_backward(int v, long r, double u, double z, float& g, double& dscale, double& doffset) {
  if (r == v) {
    dscale += double(g) * (v - u);
    return;
  }
  dscale += double(g) * (v - z);
  doffset += double(g);
  g = 0;
}

}  // namespace

std::string QatFormat::name() const { return int_group ? int_group->name() : dtype_name(type); }

int64_t QatFormat::group(int64_t cols) const {
  return int_group ? int_group->group_size(cols) : int64_t(dtype_info(type).block_elems);
}

bool learnable_scales(const QatFormat& f) { return f.int_group || scaled_block(f.type); }

bool learns_offsets(const QatFormat& f) {
  const ScaledBlock* b = f.int_group ? nullptr : scaled_block(f.type);
  return b && b->offset;
}

double scale_lr_factor(const QatFormat& f, int64_t cols) {
  const IntGroupSpec* ig = f.int_group ? &*f.int_group : nullptr;
  const int qp = ig ? (ig->sym ? (1 << (ig->bits - 1)) - 1 : ig->max_level())
                    : require_block(f).max_level - require_block(f).zero_level;
  return 1.0 / std::sqrt(double(f.group(cols)) * double(std::max(1, qp)));
}

void fake_quant_row(const QatFormat& f, const float* w, int64_t cols, float* out) {
  if (!f.int_group && (f.type == DType::F16 || f.type == DType::BF16)) {
    for (int64_t c = 0; c < cols; c++)
      out[c] = f.type == DType::F16 ? f16_to_f32(f32_to_f16(w[c])) : bf16_to_f32(f32_to_bf16(w[c]));
    return;
  }
  if (f.int_group) {
    const auto t = int_group_rtn(w, 1, cols, *f.int_group, nullptr, {});
    for (int64_t c = 0; c < cols; c++) out[c] = t.value(0, c);
    return;
  }
  std::vector<uint8_t> q(row_bytes(f.type, uint64_t(cols)));
  quantize_row(f.type, w, cols, q.data());
  dequantize_row(f.type, q.data(), cols, out);
}

void init_scales(const QatFormat& f, const float* w, int64_t cols, const RowScales& s) {
  if (f.int_group) {
    const auto t = int_group_rtn(w, 1, cols, *f.int_group, nullptr, {});
    for (int64_t g = 0; g < t.n_groups; g++) s.scale[g] = t.scale[size_t(g)], s.zero[g] = t.zero[size_t(g)];
    return;
  }
  const ScaledBlock& b = require_block(f);
  const uint64_t bb = row_bytes(f.type, kBlock);
  std::vector<uint8_t> q(row_bytes(f.type, uint64_t(cols)));
  quantize_row(f.type, w, cols, q.data());
  for (int64_t g = 0; g < cols / kBlock; g++) {
    uint16_t h[2];
    std::memcpy(h, q.data() + uint64_t(g) * bb, b.offset ? 4 : 2);
    s.scale[g] = f16_to_f32(h[0]);
    if (b.offset) s.offset[g] = f16_to_f32(h[1]);
  }
}

void fake_quant_row(const QatFormat& f, const float* w, int64_t cols, const RowScales& s, float* out) {
  if (f.int_group) {
    const int L = f.int_group->max_level();
    const int64_t G = f.group(cols);
    for (int64_t g = 0; g < cols / G; g++) {
      const GroupGrid grid{f16_round(s.scale[g]), s.zero[g]};
      for (int64_t e = g * G; e < (g + 1) * G; e++)
        out[e] = grid.scale * float(grid.level(w[e], L) - grid.zero);  // IntGroupTensor::value
    }
    return;
  }
  // What the file decodes to: the row encoded, then decoded.
  std::vector<uint8_t> q(row_bytes(f.type, uint64_t(cols)));
  encode_row(f, w, cols, s, q.data());
  dequantize_row(f.type, q.data(), cols, out);
}

void fake_quant_row_backward(const QatFormat& f, const float* w, int64_t cols, const RowScales& s, float* g,
                             float* dscale, float* doffset) {
  const int64_t G = f.group(cols);
  for (int64_t k = 0; k < cols / G; k++) {
    double ds = 0, dm = 0;
    // Each element's level as the forward picks it (GroupGrid::level, nearest_grid_level), and the rounding
    // before the clamp: they differ where the level was clamped. A zero scale decodes every element to the
    // offset: all count as clamped (the weights get no gradient; the scale may move off zero).
    if (f.int_group) {
      const GroupGrid grid{f16_round(s.scale[k]), s.zero[k]};
      const int L = f.int_group->max_level();
      for (int64_t e = k * G; e < (k + 1) * G; e++) {
        const int v = grid.level(w[e], L);
        const long r = grid.scale == 0 ? -1 : long(std::nearbyint(w[e] / grid.scale)) + grid.zero;
        element_backward(v, r, grid.scale == 0 ? 0.0 : double(w[e]) / grid.scale + grid.zero, grid.zero, g[e], ds, dm);
      }
    } else {
      const ScaledBlock& b = require_block(f);
      uint8_t block[64];
      BlockGrid grid;
      encode_block(b, w + k * G, s.scale[k], b.offset ? s.offset[k] : 0.0f, block, grid);
      for (int e = 0; e < G; e++) {
        const float x = w[k * G + e];
        const int v = grid.nearest_level(e, x);
        const float u = grid.scale[e] != 0 ? (x - grid.offset[e]) / grid.scale[e] : 0.0f;
        const long r = grid.scale[e] == 0 ? -1 : std::lround(u);
        element_backward(v, r, u, b.zero_level, g[k * G + e], ds, dm);
      }
    }
    dscale[k] += float(ds);
    if (doffset) doffset[k] += float(dm);
  }
}

void encode_row(const QatFormat& f, const float* w, int64_t cols, const RowScales& s, uint8_t* out) {
  const ScaledBlock& b = require_block(f);
  const uint64_t bb = row_bytes(f.type, kBlock);
  BlockGrid grid;
  for (int64_t g = 0; g < cols / kBlock; g++)
    encode_block(b, w + g * kBlock, s.scale[g], b.offset ? s.offset[g] : 0.0f, out + uint64_t(g) * bb, grid);
}

IntGroupTensor encode_int(const IntGroupSpec& spec, const float* W, int64_t rows, int64_t cols, const float* scale,
                          const uint16_t* zero) {
  IntGroupTensor t(spec, rows, cols);
  const int64_t G = spec.group_size(cols);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < t.n_groups; g++) {
      const size_t i = size_t(r * t.n_groups + g);
      const GroupGrid grid{f16_round(scale[i]), zero[i]};
      t.scale[i] = grid.scale, t.zero[i] = zero[i];
      for (int64_t e = g * G; e < (g + 1) * G; e++)
        t.q[size_t(r * cols + e)] = uint8_t(grid.level(W[r * cols + e], spec.max_level()));
    }
  return t;
}

}  // namespace lmpress::train
