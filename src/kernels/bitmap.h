// Bitmap-sparse storage for F16 weights (DType::F16_BITMAP), for high
// unstructured sparsity: per row, one bit per weight says whether it is kept,
// then only the kept values follow. At 70% sparsity that is 0.125 + 0.6 bytes
// per weight instead of 2; decoding at batch 1 reads that much less memory.
// Rows differ in length, so a tensor in this layout starts with a row index
// (see row_data in core/tensor.h). Like F16_2OF4 it exists only in memory:
// pruned F16 files are repacked at load (repack_sparse) and stay plain F16.
#pragma once
#include <cstdint>
#include <vector>

namespace lmpress {

// Row layout, n a multiple of 8: n/8 mask bytes (bit j of byte k: weight
// 8k+j is kept), then the kept values in order (f16).
//
// Tensor layout: uint64 offsets[rows + 1] (byte offset of each row from the
// start of the tensor; offsets[rows] is where the rows end), the rows, then
// kBitmapTailPad bytes, because the SIMD kernel loads 8 values at a time and
// may read past the end of the last row.
constexpr uint64_t kBitmapTailPad = 32;

// Bytes of the packed f16 row w[n].
uint64_t bitmap_row_bytes(const uint16_t* w, int64_t n);
// Packs the row into out; returns the end of what it wrote.
uint8_t* pack_bitmap_f16(const uint16_t* w, int64_t n, uint8_t* out);
void dequantize_bitmap_f16(const uint8_t* row, int64_t n, float* y);
// Scalar reference dot product with f32 activations.
float dot_bitmap_f16_ref(int64_t n, const void* row, const float* x);

// The whole [rows, cols] f16 matrix in the tensor layout.
std::vector<uint8_t> pack_bitmap_matrix(const uint16_t* w, int64_t rows, int64_t cols);

namespace simd_avx2 {
float dot_bitmap_f16_f32(int64_t n, const void* row, const float* x);
}

}  // namespace lmpress
