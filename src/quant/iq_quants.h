// Quantizers of ggml's codebook types IQ1_S, IQ1_M (below), IQ2_XXS, IQ2_XS, IQ2_S (8 values per
// grid point, magnitudes 1, 3, 5 on 256/512/1024 points of the E8 lattice) and
// IQ3_XXS (4 values per point, magnitudes 1..15 on 256 points of the D4
// lattice): signs folded with even parity, a scale search that snaps each group
// of values to its nearest grid point (or the best of its precomputed
// neighbours), 4-bit group scales under one f16 scale. Step for step as
// ggml-quants.c, so the bytes match llama-quantize's. Rows of quant/quantize.cc's table.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace lmpress {

// importance: required for IQ2_XXS and IQ2_XS (as in ggml, which refuses them
// without an imatrix), optional for the others.
void quantize_row_iq2_xxs(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_iq2_xs(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_iq2_s(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_iq3_xxs(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_iq3_s(const float* x, int64_t n, uint8_t* out, const float* importance);
// IQ1_S (needs importance) and IQ1_M: levels −1, 0, 1 shifted by ±1/8, 8 at a time on a 2048-point grid.
void quantize_row_iq1_s(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_iq1_m(const float* x, int64_t n, uint8_t* out, const float* importance);

// The types whose quantizer needs importance weights (llama.cpp's
// ggml_quantize_requires_imatrix): IQ2_XXS, IQ2_XS, IQ1_S.
bool quantizer_needs_importance(DType t);

}  // namespace lmpress
