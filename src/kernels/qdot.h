// Dot products of quantized weight rows with int8-quantized activations, as
// llama.cpp's vec_dot_q4_0_q8_0 / vec_dot_q8_0_q8_0 compute them: the
// activation row is cut into ggml Q8_0 blocks (32 int8 values, f16 scale),
// each block's integer dot product is exact, and the block's two scales
// weight it. A scalar reference per format, and an AVX2 version chosen at
// run time when the CPU and the OS support it (never assumed at build time).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "quant/blocks.h"

namespace lmpress {

// x[n] (n a multiple of 32) into n/32 Q8_0 blocks (ggml's quantize_row_q8_0).
void quantize_activations_q8_0(const float* x, int64_t n, BlockQ8_0* out);

// Σ over n elements of weight row w (blocks of type t) times the activations.
using QDotFn = float (*)(int64_t n, const void* w, const BlockQ8_0* a);

// The scalar reference for t (Q4_0 or Q8_0); nullptr for other types.
QDotFn qdot_reference(DType t);
// The fastest implementation for this CPU; nullptr when t has none.
QDotFn qdot(DType t);
// The instruction set qdot() uses: "avx2" or "scalar".
const char* qdot_target();
// Tests: force the scalar path (false) or the best available (true).
void qdot_use_simd(bool enabled);

namespace simd_avx2 {
bool available();  // the CPU has AVX2+FMA+F16C and the OS saves YMM state
float dot_q4_0_q8_0(int64_t n, const void* w, const BlockQ8_0* a);
float dot_q8_0_q8_0(int64_t n, const void* w, const BlockQ8_0* a);
}  // namespace simd_avx2

}  // namespace lmpress
