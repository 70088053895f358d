#include "kernels/qdot.h"

#include <algorithm>
#include <cmath>

#include "core/fp16.h"
#include "quant/scale_search.h"
#include "sparse/bitmap.h"
#include "sparse/sparse24.h"

namespace lmpress {

size_t activation_bytes(ActFormat f, int64_t n) {
  return f == ActFormat::Q8_0 ? size_t(n / 32) * sizeof(BlockQ8_0) : size_t(n / QK_K) * sizeof(BlockQ8_K);
}

void quantize_activations(ActFormat f, const float* x, int64_t n, void* out) {
  if (f == ActFormat::Q8_0) {
    auto* y = static_cast<BlockQ8_0*>(out);
    if (qdot_simd_active()) return simd_avx2::quantize_q8_0(x, n, y);
    for (int64_t b = 0; b < n / 32; b++) {
      const float* v = x + b * 32;
      float amax = 0;
      for (int i = 0; i < 32; i++) amax = std::max(amax, std::fabs(v[i]));
      const float d = amax / 127.0f;
      const float id = d != 0 ? 1.0f / d : 0.0f;
      y[b].d = f32_to_f16(d);
      for (int i = 0; i < 32; i++) y[b].qs[i] = int8_t(std::nearbyint(v[i] * id));
    }
    return;
  }
  auto* y = static_cast<BlockQ8_K*>(out);
  for (int64_t b = 0; b < n / QK_K; b++) {
    const float* v = x + b * QK_K;
    float amax = 0, max = 0;
    for (int j = 0; j < QK_K; j++)
      if (std::fabs(v[j]) > amax) amax = std::fabs(v[j]), max = v[j];
    BlockQ8_K& o = y[b];
    if (amax == 0) {
      o = BlockQ8_K{};
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < QK_K; j++) o.qs[j] = int8_t(std::min(127, ggml_search::nearest_int(iscale * v[j])));
    for (int j = 0; j < QK_K / 16; j++) {
      int sum = 0;
      for (int i = 0; i < 16; i++) sum += o.qs[j * 16 + i];
      o.bsums[j] = int16_t(sum);
    }
    o.d = 1 / iscale;
  }
}

namespace {

float ref_q4_0(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ4_0*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
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

float ref_q5_0(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ5_0*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; b++) {
    const uint32_t qh = uint32_t(bw[b].qh[0]) | uint32_t(bw[b].qh[1]) << 8 | uint32_t(bw[b].qh[2]) << 16 |
                        uint32_t(bw[b].qh[3]) << 24;
    int32_t s = 0;
    for (int i = 0; i < 16; i++) {
      const int32_t lo = int32_t((bw[b].qs[i] & 0x0F) | (((qh >> i) & 1) << 4)) - 16;
      const int32_t hi = int32_t((bw[b].qs[i] >> 4) | (((qh >> (i + 16)) & 1) << 4)) - 16;
      s += lo * a[b].qs[i] + hi * a[b].qs[i + 16];
    }
    sum += float(s) * f16_to_f32(bw[b].d) * f16_to_f32(a[b].d);
  }
  return sum;
}

float ref_q8_0(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ8_0*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; b++) {
    int32_t s = 0;
    for (int i = 0; i < 32; i++) s += int32_t(bw[b].qs[i]) * a[b].qs[i];
    sum += float(s) * f16_to_f32(bw[b].d) * f16_to_f32(a[b].d);
  }
  return sum;
}

// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins; the mins meet the
// activations through Q8_K's 16-element sums.
float ref_q4_K(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ4_K*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int32_t dot = 0, mins = 0;
    for (int j = 0; j < 4; j++) {
      uint8_t sc1, m1, sc2, m2;
      scale_min_k4(2 * j, bw[b].scales, sc1, m1);
      scale_min_k4(2 * j + 1, bw[b].scales, sc2, m2);
      const uint8_t* q = bw[b].qs + 32 * j;
      const int8_t* y = a[b].qs + 64 * j;
      int32_t s1 = 0, s2 = 0;
      for (int l = 0; l < 32; l++) {
        s1 += int32_t(q[l] & 0x0F) * y[l];
        s2 += int32_t(q[l] >> 4) * y[32 + l];
      }
      dot += int32_t(sc1) * s1 + int32_t(sc2) * s2;
      mins += int32_t(m1) * (a[b].bsums[4 * j] + a[b].bsums[4 * j + 1]) +
              int32_t(m2) * (a[b].bsums[4 * j + 2] + a[b].bsums[4 * j + 3]);
    }
    sum += a[b].d * (f16_to_f32(bw[b].d) * float(dot) - f16_to_f32(bw[b].dmin) * float(mins));
  }
  return sum;
}

// Q6_K: 16 groups of 16 with int8 scales; values (4 low bits in ql, 2 high in qh) − 32.
float ref_q6_K(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ6_K*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int8_t v[QK_K];
    const uint8_t* ql = bw[b].ql;
    const uint8_t* qh = bw[b].qh;
    for (int h = 0; h < 2; h++, ql += 64, qh += 32)
      for (int l = 0; l < 32; l++) {
        int8_t* o = v + 128 * h;
        o[l] = int8_t(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        o[l + 32] = int8_t(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        o[l + 64] = int8_t(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        o[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    int32_t dot = 0;
    for (int g = 0; g < 16; g++) {
      int32_t s = 0;
      for (int l = 0; l < 16; l++) s += int32_t(v[16 * g + l]) * a[b].qs[16 * g + l];
      dot += int32_t(bw[b].scales[g]) * s;
    }
    sum += a[b].d * f16_to_f32(bw[b].d) * float(dot);
  }
  return sum;
}

float ref_f16(int64_t n, const void* w, const float* x) {
  const auto* h = static_cast<const uint16_t*>(w);
  float s = 0;
  for (int64_t i = 0; i < n; i++) s += f16_to_f32(h[i]) * x[i];
  return s;
}

float ref_bf16(int64_t n, const void* w, const float* x) {
  const auto* h = static_cast<const uint16_t*>(w);
  float s = 0;
  for (int64_t i = 0; i < n; i++) s += bits_to_f32(uint32_t(h[i]) << 16) * x[i];
  return s;
}

bool g_use_simd = true;

}  // namespace

FDotFn fdot_reference(DType t) {
  if (t == DType::F16_2OF4) return dot_2of4_f16_ref;
  if (t == DType::F16_BITMAP) return dot_bitmap_f16_ref;
  return t == DType::F16 ? ref_f16 : t == DType::BF16 ? ref_bf16 : nullptr;
}

FDotFn fdot(DType t) {
  static const bool avx2 = simd_avx2::available();
  if (g_use_simd && avx2) {
    if (t == DType::F16) return simd_avx2::dot_f16_f32;
    if (t == DType::BF16) return simd_avx2::dot_bf16_f32;
    if (t == DType::F16_2OF4) return simd_avx2::dot_2of4_f16_f32;
    if (t == DType::F16_BITMAP) return simd_avx2::dot_bitmap_f16_f32;
  }
  return fdot_reference(t);
}

QDotKernel qdot_reference(DType t) {
  switch (t) {
    case DType::Q4_0: return {ActFormat::Q8_0, ref_q4_0};
    case DType::Q5_0: return {ActFormat::Q8_0, ref_q5_0};
    case DType::Q8_0: return {ActFormat::Q8_0, ref_q8_0};
    case DType::Q8_0_2OF4: return {ActFormat::Q8_0, dot_2of4_q8_0_ref};
    case DType::Q4_K: return {ActFormat::Q8_K, ref_q4_K};
    case DType::Q6_K: return {ActFormat::Q8_K, ref_q6_K};
    default: return {};
  }
}

QDotKernel qdot(DType t) {
  static const bool avx2 = simd_avx2::available();
  if (g_use_simd && avx2) {
    switch (t) {
      case DType::Q4_0: return {ActFormat::Q8_0, simd_avx2::dot_q4_0_q8_0};
      case DType::Q5_0: return {ActFormat::Q8_0, simd_avx2::dot_q5_0_q8_0};
      case DType::Q8_0: return {ActFormat::Q8_0, simd_avx2::dot_q8_0_q8_0};
      case DType::Q8_0_2OF4: return {ActFormat::Q8_0, simd_avx2::dot_2of4_q8_0_q8_0};
      case DType::Q4_K: return {ActFormat::Q8_K, simd_avx2::dot_q4_K_q8_K};
      case DType::Q6_K: return {ActFormat::Q8_K, simd_avx2::dot_q6_K_q8_K};
      default: break;
    }
  }
  return qdot_reference(t);
}

bool qdot_simd_active() {
  static const bool avx2 = simd_avx2::available();  // CPUID traps to the hypervisor on VMs: ask once
  return g_use_simd && avx2;
}

const char* qdot_target() { return qdot_simd_active() ? "avx2" : "scalar"; }

void qdot_use_simd(bool enabled) { g_use_simd = enabled; }

}  // namespace lmpress
