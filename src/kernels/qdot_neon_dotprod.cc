// The Armv8.2-A+dotprod build of the NEON int8 qdot kernels
// (kernels/qdot_neon.h): the same source as simd_neon's, each 4-byte dot one
// SDOT. Only this file is compiled with -march=armv8.2-a+dotprod (CMake), and
// qdot() calls it only when cpu_isa() reports dotprod.
#if defined(__aarch64__)  // aarch64 only: on other architectures this file is empty
#if !defined(__ARM_FEATURE_DOTPROD)
#error "qdot_neon_dotprod.cc must be compiled with -march=armv8.2-a+dotprod (see CMakeLists.txt)"
#endif
#include <arm_neon.h>

#include <cstring>

#include "kernels/qdot_neon.h"
#include "kernels/blocks.h"

namespace lmpress::simd_neon_dotprod {

#define LMPRESS_SDOT vdotq_s32
#include "kernels/qdot_neon_kernels.inc"
#undef LMPRESS_SDOT

}  // namespace lmpress::simd_neon_dotprod
#endif  // defined(__aarch64__)
