// W8A8 weights at run time (DType::I8_X8): int8 values with one f32 scale per
// output row, the weights of a compressed-tensors int-quantized checkpoint,
// against int8 activations with one scale per token (ActFormat::I8_TOKEN).
// Groups of 8 rows as the other interleaved layouts (kernels/interleaved.h),
// each led by a header: the 8 row scales and 128 · Σ of each row's values.
// Then cols / 4 vectors of 32 bytes, vector j holding values 4j..4j+3 of each
// row (row r at bytes 4r..4r+3, as BlockQ8_0x8.qs). The dot of a row runs in
// int32 over the whole row, scaled once at the end: no per-block scales as in
// Q8_0, which is why a W8A8 prompt runs faster than a Q8_0 one. vpdpbusd takes
// the activations unsigned (value + 128); the header's bias takes the 128 off.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "core/tensor.h"
#include "kernels/interleaved.h"

namespace lmpress {

struct I8x8Header {
  float d[8];        // row scales
  int32_t bias[8];   // 128 · Σ of each row's int8 values
};

// Bytes of one group of 8 rows of `cols` columns (a multiple of 32).
inline uint64_t i8x8_group_bytes(int64_t cols) { return sizeof(I8x8Header) + uint64_t(cols) * 8; }

// Per-token activations: the scale s = max|x| / 127 (f32), then each value as
// round(x / s) + 128 in a byte: what fake_quant_int8_rows (kernels/ops.h) rounds to.
void quantize_i8_token(const float* x, int64_t n, uint8_t* out);
void quantize_i8_token_ref(const float* x, int64_t n, uint8_t* out);
// x <- s·round(x / s) with the same s: the values quantize_i8_token's bytes stand for.
void fake_quant_i8_token(float* x, int64_t n);

// The per-row scales of an F32 matrix each of whose rows is int8 values times
// one scale (a W8A8 checkpoint's weights as read), or nullopt when a row is
// not: its largest |value| ÷ k (k = 127, 128, 126, 125, ... 1) for the first k
// that puts every value within 1e-4 of an integer in [-128, 127].
std::optional<std::vector<float>> int8_row_scales(const Tensor& f32);
// The matrix as I8_X8 (rows a multiple of 8, columns of 32, int8_row_scales
// found; fails otherwise), and back as F32 bytes (value × its row's scale).
Tensor repack_i8x8(const Tensor& f32);
Tensor repack_i8x8(const Tensor& f32, const std::vector<float>& scales);  // int8_row_scales(f32) known
std::vector<uint8_t> unpack_i8x8(const Tensor& x8);
void dequantize_i8x8_row(const uint8_t* group, int64_t cols, int r, float* out);

// out[0..8) = the group's 8 rows · one token's I8_TOKEN activations: the
// scalar reference, (Σ (a + 128)·q − bias) converted to float times d·s.
void gemv_i8x8_ref(int64_t cols, const uint8_t* group, const uint8_t* act, float* out);
// The kernels as cpu_isa() allows them, in the interleaved table's signature
// (activations `stride` bytes apart).
X8Kernels i8x8_kernels();

}  // namespace lmpress
