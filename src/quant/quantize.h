// Quantization of one row into ggml's block formats, bit-exact with
// ggml_quantize_chunk (what llama-quantize writes): without importance
// weights the reference quantizers, with them (an imatrix row: the mean
// squared activation of each input column) the importance-weighted searches.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace lmpress {

// Quantizes one row of n values (a multiple of the block size) into out.
// importance: n weights or null. False for a type lmpress cannot write.
bool quantize_row(DType t, const float* x, int64_t n, uint8_t* out, const float* importance = nullptr);
bool has_quantizer(DType t);

}  // namespace lmpress
