// aarch64 Advanced SIMD versions of the qdot kernels (kernels/qdot.h), chosen
// at run time by qdot()/fdot() when cpu_isa() allows them. Two builds of the
// int8 dots from one source (qdot_neon_kernels.inc): simd_neon for every
// Armv8-A CPU, its 4-byte dot products made of widening multiplies and
// pairwise adds, and simd_neon_dotprod, compiled for Armv8.2-A+dotprod, on
// SDOT. The float dots and the Q8_0 activation quantizer need nothing past
// Armv8-A and exist once. Declared on every architecture, defined on aarch64.
#pragma once
#include <cstdint>

#include "kernels/qdot.h"

#define LMPRESS_QDOT_NEON_INT8_KERNELS                                 \
  float dot_q4_0_q8_0(int64_t n, const void* w, const void* a);      \
  float dot_q8_0_q8_0(int64_t n, const void* w, const void* a);      \
  float dot_q5_0_q8_0(int64_t n, const void* w, const void* a);      \
  float dot_q4_K_q8_K(int64_t n, const void* w, const void* a);      \
  float dot_q6_K_q8_K(int64_t n, const void* w, const void* a);

namespace lmpress::simd_neon {
LMPRESS_QDOT_NEON_INT8_KERNELS
float dot_f16_f32(int64_t n, const void* w, const float* x);
float dot_bf16_f32(int64_t n, const void* w, const float* x);
// x[n] into Q8_0 blocks, the bytes of the scalar quantizer (ties to even).
void quantize_q8_0(const float* x, int64_t n, BlockQ8_0* y);
}  // namespace lmpress::simd_neon

namespace lmpress::simd_neon_dotprod {
LMPRESS_QDOT_NEON_INT8_KERNELS
}  // namespace lmpress::simd_neon_dotprod

#undef LMPRESS_QDOT_NEON_INT8_KERNELS
