// Super-block (Q2_K..Q6_K) and IQ4_NL quantizers; use quantize_row() from
// quant/quantize.h, which dispatches here.
#pragma once
#include <cstdint>

#include "quant/blocks.h"

namespace lmpress {

// One row of n values; importance (n values, or null) as in quantize_row.
bool quantize_row_kquant(DType t, const float* x, int64_t n, uint8_t* out, const float* importance);

}  // namespace lmpress
