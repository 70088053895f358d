// The Armv8-A build of the NEON qdot kernels (kernels/qdot_neon.h): int8
// dots whose 4-byte sums are widening multiplies and pairwise adds (what SDOT
// does in one instruction on Armv8.2+dotprod), the F16/BF16 float dots and the
// Q8_0 activation quantizer. Compiled for the baseline, so it runs on every
// aarch64 CPU.
#if defined(__aarch64__)  // aarch64 only: on other architectures this file is empty
#include "kernels/qdot_neon.h"

#include <arm_neon.h>

#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/blocks.h"

namespace lmpress::simd_neon {

namespace {

// SDOT's result from Armv8-A instructions: products of byte pairs (at most
// 128·128, exact in int16), then two pairwise widening adds give each lane
// its 4 consecutive products.
inline int32x4_t sdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
  const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
  const int16x8_t hi = vmull_high_s8(a, b);
  return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
}

}  // namespace

#define LMPRESS_SDOT sdot
#include "kernels/qdot_neon_kernels.inc"
#undef LMPRESS_SDOT

float dot_f16_f32(int64_t n, const void* w, const float* x) {
  const auto* h = static_cast<const uint16_t*>(w);
  float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const float16x8_t h0 = vreinterpretq_f16_u16(vld1q_u16(h + i)), h1 = vreinterpretq_f16_u16(vld1q_u16(h + i + 8));
    acc0 = vfmaq_f32(acc0, vcvt_f32_f16(vget_low_f16(h0)), vld1q_f32(x + i));
    acc1 = vfmaq_f32(acc1, vcvt_high_f32_f16(h0), vld1q_f32(x + i + 4));
    acc2 = vfmaq_f32(acc2, vcvt_f32_f16(vget_low_f16(h1)), vld1q_f32(x + i + 8));
    acc3 = vfmaq_f32(acc3, vcvt_high_f32_f16(h1), vld1q_f32(x + i + 12));
  }
  for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + i))), vld1q_f32(x + i));
  float s = vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
  for (; i < n; i++) s += f16_to_f32(h[i]) * x[i];
  return s;
}

float dot_bf16_f32(int64_t n, const void* w, const float* x) {
  const auto* h = static_cast<const uint16_t*>(w);
  // bf16 is the top half of an f32: widening by a 16-bit shift converts it.
  const auto load4 = [h](int64_t i) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(h + i), 16)); };
  float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = vfmaq_f32(acc0, load4(i), vld1q_f32(x + i));
    acc1 = vfmaq_f32(acc1, load4(i + 4), vld1q_f32(x + i + 4));
    acc2 = vfmaq_f32(acc2, load4(i + 8), vld1q_f32(x + i + 8));
    acc3 = vfmaq_f32(acc3, load4(i + 12), vld1q_f32(x + i + 12));
  }
  for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, load4(i), vld1q_f32(x + i));
  float s = vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
  for (; i < n; i++) s += bf16_to_f32(h[i]) * x[i];
  return s;
}

void quantize_q8_0(const float* x, int64_t n, BlockQ8_0* y) {
  for (int64_t b = 0; b < n / 32; b++) {
    const float* v = x + b * 32;
    float32x4_t q[8];
    float32x4_t amax = vdupq_n_f32(0.0f);
    for (int i = 0; i < 8; i++) {
      q[i] = vld1q_f32(v + 4 * i);
      amax = vmaxq_f32(amax, vabsq_f32(q[i]));
    }
    // The scalar quantizer's float operations, in the same order: the same bytes.
    const float d = vmaxvq_f32(amax) / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int i = 0; i < 8; i += 2) {
      // FCVTNS rounds to nearest, ties to even, as nearbyint does by default.
      const int32x4_t i0 = vcvtnq_s32_f32(vmulq_n_f32(q[i], id)), i1 = vcvtnq_s32_f32(vmulq_n_f32(q[i + 1], id));
      const int16x8_t s16 = vcombine_s16(vmovn_s32(i0), vmovn_s32(i1));
      vst1_s8(y[b].qs + 4 * i, vmovn_s16(s16));
    }
  }
}

}  // namespace lmpress::simd_neon
#endif  // defined(__aarch64__)
