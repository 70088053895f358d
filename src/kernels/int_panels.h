// Prompt batches of the integer-unpacked types (kernels/int_blocks.h: the
// IQ codebook types, IQ4_XS, TQ1_0, TQ2_0, and Q6_K and Q3_K where the kernels keep
// their two scales per 32 values exact): their blocks have no int8 GEMM
// kernel of their own, and decoding a block per token (the one-token dots)
// costs more than the dot. Each group of 8 weight rows is decoded once per
// call into 32-value chunks of int8 values (the weights' own integers) under
// the f32 scale of each 16-value half, interleaved as a panel, and 4-token
// kernels take every token of the batch (as llama.cpp's IQ panel GEMM does
// with its own layout). The activations are Q8_0 blocks.
//
// With VNNI (AVX-VNNI or AVX512-VNNI) the panel is BlockPanelx8: the weights
// exact, the activations fed unsigned to vpdpbusd (value + 128, taken off
// through the panel's row sums), one sum per block, or per half-block for
// the formats with a scale per 16 values (IQ2_XS, IQ2_S, IQ1_M, Q6_K, Q3_K).
// With AVX2 alone, the same panels and kernels with maddubs + madd for
// vpdpbusd where the format's values stay within ±64 (IntBlockFormat::max_abs:
// no pair of products then passes int16, so the sums are exact); for the rest
// (IQ4_XS, IQ4_NL) the Q8_0_X8 layout and its kernels (kernels/q8_0x8.h):
// chunk scales rounded to f16, the two-scale chunks' values rounded to int8
// under one, a group whose scale has no f16 computed in f32.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "kernels/qdot.h"

namespace lmpress {

// A 32-column block of an 8-row panel.
struct BlockPanelx8 {
  float d[2][8];        // d[h][row]: the scale of values 16h..16h+15 of each row
  int32_t bias[2][8];   // 128 · Σ of those 16 values
  int8_t qs[8][32];     // qs[v][4·row + i] = value 4v + i of `row` (as BlockQ8_0x8)
};

// Rows [0, 8) of decoded chunks (cols / 32 per row) as a panel.
void pack_panel_x8(const ChunkQ8* rows, int64_t cols, BlockPanelx8* out);
// out[0..8) = the panel's 8 rows · activations stored unsigned (Q8_0 blocks whose
// values are value + 128, as bytes): the scalar reference of the VNNI kernels
// (both halves' scales applied; the one-sum kernels need them equal).
void gemv_panel_x8_ref(int64_t cols, const BlockPanelx8* panel, const BlockQ8_0* act_u8, float* out);

// y[n, out] = x[n, in] · Wᵀ through decoded panels; false (y untouched) where
// this path does not apply (another type, rows not a multiple of 8, no AVX2):
// the caller then takes its general path.
bool matmul_int_panels(const Tensor& w, const float* x, int64_t n, float* y);

// Rows 8g..8g+7 of w decoded as matmul_int_panels decodes them (8 · in / 32
// chunks); w of a panel type, or of a layout with panel_chunks (kernels/interleaved.h).
void decode_int_panel_rows(const Tensor& w, int64_t g, ChunkQ8* out);

}  // namespace lmpress
