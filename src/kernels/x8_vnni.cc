#include "kernels/x8_vnni.h"

#include <cpuid.h>
#include <immintrin.h>

#include <cstring>

#include "kernels/avx2_helpers.h"
#include "kernels/qdot.h"

namespace lmpress {

namespace simd_avxvnni {

bool available() {
  if (!simd_avx2::available() || __get_cpuid_max(0, nullptr) < 7) return false;
  unsigned a, b, c, d;
  __cpuid_count(7, 1, a, b, c, d);
  return a & (1u << 4);
}

#define LMPRESS_VNNI_TARGET "avx2,fma,f16c,avxvnni"
#define LMPRESS_DPBUSD _mm256_dpbusd_avx_epi32
#include "kernels/x8_vnni_kernels.inc"
#undef LMPRESS_VNNI_TARGET
#undef LMPRESS_DPBUSD

}  // namespace simd_avxvnni

namespace simd_avx512vnni {

bool available() {
  if (!simd_avx2::available() || __get_cpuid_max(0, nullptr) < 7) return false;
  unsigned a, b, c, d;
  __cpuid_count(7, 0, a, b, c, d);
  const bool f = b & (1u << 16), vl = b & (1u << 31), vnni = c & (1u << 11);
  if (!(f && vl && vnni)) return false;
  // The OS must save the opmask and ZMM state (XCR0 bits 5-7) for any EVEX
  // instruction, 256-bit ones included.
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 0xE6u) == 0xE6u;
}

#define LMPRESS_VNNI_TARGET "avx2,fma,f16c,avx512f,avx512vl,avx512vnni"
#define LMPRESS_DPBUSD _mm256_dpbusd_epi32
#include "kernels/x8_vnni_kernels.inc"
#undef LMPRESS_VNNI_TARGET
#undef LMPRESS_DPBUSD

}  // namespace simd_avx512vnni

}  // namespace lmpress
