// Prompt batches of the integer-unpacked types (kernels/int_blocks.h: the
// IQ codebook types, IQ4_XS, TQ1_0, TQ2_0): their blocks have no int8 GEMM
// kernel of their own, and decoding a block per token (the one-token dots)
// costs more than the dot. Each group of 8 weight rows is decoded once per
// call into the Q8_0_X8 layout (kernels/q8_0x8.h) and the 4-token VNNI/AVX2
// kernels of that layout take every token of the batch, as llama.cpp's IQ
// panel GEMM does with its own layout. The panel's values are the weights'
// where a 32-value chunk has one group scale (the chunk scale d·ls rounded to
// f16, subnormal below 6e-5), rounded to int8 where its 16-value halves have
// two (IQ2_XS, IQ2_S, IQ1_M); the activations are Q8_0 blocks.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace lmpress {

// y[n, out] = x[n, in] · Wᵀ through decoded panels; false (y untouched) where
// this path does not apply (another type, rows not a multiple of 8, no
// 4-token kernel on this CPU): the caller then takes its general path.
bool matmul_int_panels(const Tensor& w, const float* x, int64_t n, float* y);

// Tests: one 8-row group of w (rows 8g..8g+7) decoded as matmul_int_panels
// decodes it, as Q8_0 blocks row by row (8 · in / 32 blocks). Returns false
// where a chunk's scale has no f16 (the panel path then computes that group in f32).
bool decode_int_panel_rows(const Tensor& w, int64_t g, uint8_t* q8_0_rows);

}  // namespace lmpress
