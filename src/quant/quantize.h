// Quantization of one row into ggml's block formats, bit-exact with
// ggml_quantize_chunk (what llama-quantize writes): without importance
// weights the reference quantizers, with them (an imatrix row: the mean
// squared activation of each input column) the importance-weighted searches.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace lmpress {

// Quantizes one row of n values (a multiple of the block size) into out.
// importance: n weights or null. False for a type lmpress cannot write.
bool quantize_row(DType t, const float* x, int64_t n, uint8_t* out, const float* importance = nullptr);
bool has_quantizer(DType t);
// `rows` rows of `cols` values x[rows, cols] into out (row_bytes(t, cols)
// apart), rows side by side on the threads, each with the same importance
// (cols weights or null). Fails for a type without a quantizer; an error
// inside the loop (a type that needs an importance, given none) is rethrown
// after it, as an exception may not leave an OpenMP region.
void quantize_rows(DType t, const float* x, int64_t rows, int64_t cols, uint8_t* out,
                   const float* importance = nullptr);

// A matrix already encoded: its rows in block type `type`, row_bytes(type, cols) apart.
struct EncodedTensor {
  DType type = DType::F32;
  std::vector<uint8_t> bytes;
};

}  // namespace lmpress
