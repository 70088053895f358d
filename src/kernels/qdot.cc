#include "kernels/qdot.h"

#include <algorithm>
#include <cmath>

#include "core/fp16.h"

namespace lmpress {

void quantize_activations_q8_0(const float* x, int64_t n, BlockQ8_0* out) {
  for (int64_t b = 0; b < n / 32; b++) {
    const float* v = x + b * 32;
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = std::max(amax, std::fabs(v[i]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    out[b].d = f32_to_f16(d);
    for (int i = 0; i < 32; i++) out[b].qs[i] = int8_t(std::nearbyint(v[i] * id));
  }
}

namespace {

float ref_q4_0(int64_t n, const void* w, const BlockQ8_0* a) {
  const auto* bw = static_cast<const BlockQ4_0*>(w);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; b++) {
    int32_t s = 0;
    for (int i = 0; i < 16; i++) {
      s += (int32_t(bw[b].qs[i] & 0x0F) - 8) * a[b].qs[i];
      s += (int32_t(bw[b].qs[i] >> 4) - 8) * a[b].qs[i + 16];
    }
    sum += float(s) * f16_to_f32(bw[b].d) * f16_to_f32(a[b].d);
  }
  return sum;
}

float ref_q8_0(int64_t n, const void* w, const BlockQ8_0* a) {
  const auto* bw = static_cast<const BlockQ8_0*>(w);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; b++) {
    int32_t s = 0;
    for (int i = 0; i < 32; i++) s += int32_t(bw[b].qs[i]) * a[b].qs[i];
    sum += float(s) * f16_to_f32(bw[b].d) * f16_to_f32(a[b].d);
  }
  return sum;
}

bool g_use_simd = true;

}  // namespace

QDotFn qdot_reference(DType t) {
  switch (t) {
    case DType::Q4_0: return ref_q4_0;
    case DType::Q8_0: return ref_q8_0;
    default: return nullptr;
  }
}

QDotFn qdot(DType t) {
  static const bool avx2 = simd_avx2::available();
  if (g_use_simd && avx2) {
    switch (t) {
      case DType::Q4_0: return simd_avx2::dot_q4_0_q8_0;
      case DType::Q8_0: return simd_avx2::dot_q8_0_q8_0;
      default: break;
    }
  }
  return qdot_reference(t);
}

const char* qdot_target() { return g_use_simd && simd_avx2::available() ? "avx2" : "scalar"; }

void qdot_use_simd(bool enabled) { g_use_simd = enabled; }

}  // namespace lmpress
