// Quantizers of the ggml types that take no search: MXFP4 (a shared power of
// two per 32 values) and the ternary TQ1_0 / TQ2_0 (one scale per 256 values,
// meant for models trained ternary). Rows of quant/quantize.cc's table; ggml
// ignores importance weights for all three, and so do these.
#pragma once
#include <cstdint>

#include "kernels/blocks.h"

namespace lmpress {

void quantize_row_mxfp4(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_tq1_0(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_tq2_0(const float* x, int64_t n, uint8_t* out, const float* importance);
// The 256 levels (0, 1, 2 for −d, 0, d) of a ternary block into its bytes, keeping d.
void pack_tq1_0(const uint8_t* levels, BlockTQ1_0& block);
void pack_tq2_0(const uint8_t* levels, BlockTQ2_0& block);
// MXFP4's 15 distinct levels in increasing order (doubled E2M1), and each one's nibble.
extern const int8_t kFp4Sorted[15];
extern const uint8_t kFp4SortedNibble[15];

}  // namespace lmpress
