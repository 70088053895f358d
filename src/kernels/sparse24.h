// 2:4-sparse storage for F16 weights (DType::F16_2OF4): in every 4
// consecutive weights of a row at most 2 are nonzero, so only those 2 values
// and their 2-bit positions are kept — 36 bytes per 32 weights instead of 64
// (9 bits per weight). Decoding at batch 1 reads 44% fewer weight bytes, which
// is what bounds its speed. Models pruned to 2:4 (`lmpress prune --nm 2:4`)
// and stored as F16 are repacked into it at load (repack_sparse), losslessly;
// files stay plain F16 GGUF that llama.cpp reads.
//
// Q8_0_2OF4 is the same for Q8_0 weights (pruned with `--quantize q8_0`, where
// zero is a grid level): per 32 weights the block scale, the 16 kept int8
// values and their positions, 22 bytes instead of 34.
#pragma once
#include <cstdint>

#include "kernels/blocks.h"

namespace lmpress {

struct BlockF16_2of4 {
  uint16_t v[16];  // group g (4 weights) keeps v[2g], v[2g+1] (f16)
  uint8_t idx[4];  // group 2j: low nibble of idx[j], group 2j+1: high nibble; bits 0-1 / 2-3: positions of v[2g] / v[2g+1]
};
static_assert(sizeof(BlockF16_2of4) == 36, "F16_2OF4 block layout");

// True when every group of 4 in the f16 row w[n] (n a multiple of 32) has at most 2 nonzero values.
bool is_2of4_f16(const uint16_t* w, int64_t n);
// Packs such a row; returns false (writing nothing useful) if it is not 2:4.
bool pack_2of4_f16(const uint16_t* w, int64_t n, BlockF16_2of4* out);
void dequantize_2of4_f16(const BlockF16_2of4* b, int64_t n, float* y);
// Scalar reference dot product with f32 activations.
float dot_2of4_f16_ref(int64_t n, const void* w, const float* x);

struct BlockQ8_0_2of4 {
  uint16_t d;      // f16 scale, as in Q8_0
  int8_t v[16];    // group g keeps v[2g], v[2g+1]
  uint8_t idx[4];  // positions, as in BlockF16_2of4
};
static_assert(sizeof(BlockQ8_0_2of4) == 22, "Q8_0_2OF4 block layout");

// True when every group of 4 of the Q8_0 blocks b[nblocks] has at most 2 nonzero quants.
bool is_2of4_q8_0(const BlockQ8_0* b, int64_t nblocks);
// Packs such blocks; returns false if they are not 2:4.
bool pack_2of4_q8_0(const BlockQ8_0* b, int64_t nblocks, BlockQ8_0_2of4* out);
void dequantize_2of4_q8_0(const BlockQ8_0_2of4* b, int64_t n, float* y);
// Scalar reference dot product with Q8_0-quantized activations a.
float dot_2of4_q8_0_ref(int64_t n, const void* w, const void* a);

// The two positions (ascending, 0..3) a group of 4 keeps: its nonzero ones,
// filled up with zero-valued positions when fewer than two are nonzero; the
// nibble is pos[0] | pos[1] << 2. False if more than two are nonzero.
bool two_of_four_positions(const bool nonzero[4], int pos[2], uint8_t& nibble);

namespace simd_avx2 {
float dot_2of4_f16_f32(int64_t n, const void* w, const float* x);
float dot_2of4_q8_0_q8_0(int64_t n, const void* w, const void* a);
}

}  // namespace lmpress
