// Quantizers of the ggml types that take no search: MXFP4 (a shared power of
// two per 32 values) and the ternary TQ1_0 / TQ2_0 (one scale per 256 values,
// meant for models trained ternary). Rows of quant/quantize.cc's table; ggml
// ignores importance weights for all three, and so do these.
#pragma once
#include <cstdint>

namespace lmpress {

void quantize_row_mxfp4(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_tq1_0(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_tq2_0(const float* x, int64_t n, uint8_t* out, const float* importance);

}  // namespace lmpress
