// Scalar references of the int8 dot products (kernels/qdot.h), one per weight
// format, written from ggml's block layouts: each block's values decoded to
// integers, summed exactly, then scaled. The SIMD kernels are tested against
// these, and these against the dequantized float rows.
#pragma once
#include <cstdint>

namespace lmpress::qdot_ref {

// Q8_0 activations (32-element blocks).
float q4_0(int64_t n, const void* w, const void* a);
float q4_1(int64_t n, const void* w, const void* a);
float q5_0(int64_t n, const void* w, const void* a);
float q5_1(int64_t n, const void* w, const void* a);
float q8_0(int64_t n, const void* w, const void* a);
float iq4_nl(int64_t n, const void* w, const void* a);
// Q8_K activations (256-element super-blocks).
float q2_K(int64_t n, const void* w, const void* a);
float q3_K(int64_t n, const void* w, const void* a);
float q4_K(int64_t n, const void* w, const void* a);
float q5_K(int64_t n, const void* w, const void* a);
float q6_K(int64_t n, const void* w, const void* a);
// Float weights against f32 activations.
float f16(int64_t n, const void* w, const float* x);
float bf16(int64_t n, const void* w, const float* x);

}  // namespace lmpress::qdot_ref
