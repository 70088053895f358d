// IQ4_NL (and MXFP4) weights repacked at load into groups of 8 interleaved rows. An
// IQ4_NL block has Q4_0's bytes (an f16 scale and 32 nibbles), its nibbles
// indexing IQ4_NL's 16 non-linear levels instead of standing for value + 8,
// so the groups are Q4_0_x8's (kernels/q4_0x8.h) byte for byte and only the
// kernels differ: a byte shuffle turns 32 nibbles into 32 signed levels, then
// Q8_0_x8's signed arithmetic (|w| against each activation byte taking w's
// sign: maddubs + madd, or one vpdpbusd where the CPU has VNNI; the same
// integers either way). Lossless.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "kernels/interleaved.h"
#include "kernels/q4_0x8.h"

namespace lmpress {

// An IQ4_NL matrix as IQ4_NL_X8 (rows must be a multiple of 8), and back.
Tensor repack_iq4_nlx8(const Tensor& iq4_nl);
std::vector<uint8_t> unpack_iq4_nlx8(const Tensor& x8);
// Row r (0..7) of a group as floats (what dequantizing its IQ4_NL blocks gives).
void dequantize_iq4_nlx8_row(const BlockQ4_0x8* group, int64_t cols, int r, float* out);

// The 8 rows of a group as int8 chunks (kernels/int_panels.h): row r's
// cols / 32 chunks from out + r · cols / 32, each the block's levels under its scale.
void decode_iq4_nlx8_chunks(const BlockQ4_0x8* group, int64_t cols, ChunkQ8* out);

// out[0..8) = the 8 rows of `group` · activations a (Q8_0 blocks).
void gemv_iq4_nlx8_ref(int64_t cols, const BlockQ4_0x8* group, const BlockQ8_0* a, float* out);
// The kernels as cpu_isa() allows them (kernels/interleaved.h).
X8Kernels iq4_nlx8_kernels();

// MXFP4 (gpt-oss's experts) in the same groups: its blocks are 32 nibbles indexing the doubled E2M1 levels
// (kFp4Values) under a power-of-two scale, which f16 holds exactly for exponents 2^-24 .. 2^15; a matrix with a
// scale outside that range is returned as it is (not repacked). Lossless both ways. Prompt batches take the
// layout's multi-token kernels (Q8_0 activations, as llama.cpp's MXFP4 kernels), which beat the int8 panels on
// the few rows a mixture's expert gets per batch.
Tensor repack_mxfp4x8(const Tensor& mxfp4);
std::vector<uint8_t> unpack_mxfp4x8(const Tensor& x8);
void dequantize_mxfp4x8_row(const BlockQ4_0x8* group, int64_t cols, int r, float* out);
void gemv_mxfp4x8_ref(int64_t cols, const BlockQ4_0x8* group, const BlockQ8_0* a, float* out);
X8Kernels mxfp4x8_kernels();

}  // namespace lmpress
