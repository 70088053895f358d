#if defined(__x86_64__)  // x86 only: on other architectures this file is empty
#include "kernels/x8_vnni.h"

#include <immintrin.h>

#include <cstring>

#include "core/cpu_isa.h"
#include "kernels/avx2_helpers.h"
#include "kernels/q4_kx8_avx2.h"
#include "kernels/qdot.h"

namespace lmpress {

namespace simd_avxvnni {

bool available() { return cpu_isa().avx_vnni; }

#define LMPRESS_VNNI_TARGET "avx2,fma,f16c,avxvnni"
#define LMPRESS_DPBUSD _mm256_dpbusd_avx_epi32
#include "kernels/x8_vnni_kernels.inc"
#undef LMPRESS_VNNI_TARGET
#undef LMPRESS_DPBUSD

}  // namespace simd_avxvnni

namespace simd_avx512vnni {

bool available() { return cpu_isa().avx512_vnni; }

#define LMPRESS_VNNI_TARGET "avx2,fma,f16c,avx512f,avx512vl,avx512vnni"
#define LMPRESS_DPBUSD _mm256_dpbusd_epi32
#include "kernels/x8_vnni_kernels.inc"
#undef LMPRESS_VNNI_TARGET
#undef LMPRESS_DPBUSD

}  // namespace simd_avx512vnni

namespace simd_vnni_emulated {

// vpdpbusd's exact result from AVX2 instructions: acc + Σ of each lane's 4
// unsigned-by-signed byte products. Even and odd bytes widened to 16 bits,
// then madd: every product (≤ 255·128) and pair sum fits, nothing saturates
// (maddubs would).
__attribute__((target("avx2"))) inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
  const __m256i mask = _mm256_set1_epi16(0x00FF);
  const __m256i u_even = _mm256_and_si256(u, mask), u_odd = _mm256_srli_epi16(u, 8);
  const __m256i s_even = _mm256_srai_epi16(_mm256_slli_epi16(s, 8), 8), s_odd = _mm256_srai_epi16(s, 8);
  return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(u_even, s_even), _mm256_madd_epi16(u_odd, s_odd)));
}

#define LMPRESS_VNNI_TARGET "avx2,fma,f16c"
#define LMPRESS_DPBUSD dpbusd
#include "kernels/x8_vnni_kernels.inc"
#undef LMPRESS_VNNI_TARGET
#undef LMPRESS_DPBUSD

}  // namespace simd_vnni_emulated

}  // namespace lmpress
#endif  // defined(__x86_64__)
