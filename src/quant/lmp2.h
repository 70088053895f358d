// The encoder of lmp2, lmpress's 2-bit format (kernels/lmp2.h): each
// 256-value block of a row rotated, its f16 scale searched, and each 8 values
// rounded to the nearest of the 2¹⁶ E8P points — alone (RTN) or with GPTQ's
// error feedback over the rotated Hessian (BlockLDLQ: 8 columns at a time).
#pragma once
#include <cstdint>
#include <vector>

#include "quant/gptq.h"

namespace lmpress {

// The code of the point nearest to z (8 values in units of scale / 4) in
// Euclidean distance; q gets the point's 8 values (odd integers).
uint16_t lmp2_nearest(const float* z, int8_t* q);

// The block scale d for 256 rotated values (v[e · stride]): of a few
// multiples of their RMS, the one whose rounding leaves the least squared
// error, refined by least squares on the codes it gave; rounded to f16.
float lmp2_block_scale(const float* v, int64_t stride);

// Into LMP2 without calibration. Without importance, RTN: each block's
// nearest points under its searched scale. With importance (an imatrix row),
// the error Σ importance·(ŵ − w)² is what counts, which in the rotated basis
// is a full 256 × 256 form per block (T·diag(importance)·Tᵀ): each block's
// columns of all rows go through GPTQ's loop on that Hessian (rows at once in
// quantize_rows_lmp2; a single row alone in quantize_row_lmp2).
void quantize_row_lmp2(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_rows_lmp2(const float* x, int64_t rows, int64_t cols, uint8_t* out, const float* importance);

// GPTQ onto LMP2: W rotated as stored, H rotated alike (T·H·Tᵀ per block
// pair), scales chosen when GPTQ reaches a block, every 8 columns rounded
// together and their error spread through the inverse Hessian's factor.
void gptq_quantize_lmp2(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                        const GptqOptions& o, uint8_t* out);

}  // namespace lmpress
