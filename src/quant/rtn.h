// Round-to-nearest quantization into ggml's block formats, bit-exact with
// ggml's quantize_row_*_ref (what llama-quantize writes without an imatrix).
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace lmpress {

// Quantizes n values (a multiple of the block size) into out; false for a
// type without an RTN quantizer yet.
bool quantize_row_rtn(DType t, const float* x, int64_t n, uint8_t* out);
bool has_rtn_quantizer(DType t);

}  // namespace lmpress
