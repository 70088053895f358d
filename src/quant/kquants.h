// Super-block (Q2_K..Q6_K), IQ4_NL and IQ4_XS quantizers, rows of quant/quantize.cc's
// table; use quantize_row() from quant/quantize.h.
#pragma once
#include <cstdint>

#include "kernels/blocks.h"

namespace lmpress {

// One row of n values (a multiple of the block size); importance (n values, or
// null) as in quantize_row.
void quantize_row_q2_k(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_q3_k(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_q4_k(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_q5_k(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_q6_k(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_iq4_nl(const float* x, int64_t n, uint8_t* out, const float* importance);
void quantize_row_iq4_xs(const float* x, int64_t n, uint8_t* out, const float* importance);

}  // namespace lmpress
