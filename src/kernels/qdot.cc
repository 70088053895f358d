#include "kernels/qdot.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/cpu_isa.h"
#include "core/fp16.h"
#include "kernels/qdot_ref.h"
#include "kernels/x8_vnni.h"
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

bool g_use_simd = true;
std::optional<Vnni> g_vnni_pin;

}  // namespace

FDotFn fdot_reference(DType t) {
  if (t == DType::F16_2OF4) return dot_2of4_f16_ref;
  if (t == DType::F16_BITMAP) return dot_bitmap_f16_ref;
  return t == DType::F16 ? qdot_ref::f16 : t == DType::BF16 ? qdot_ref::bf16 : nullptr;
}

FDotFn fdot(DType t) {
  if (qdot_simd_active()) {
    if (t == DType::F16) return simd_avx2::dot_f16_f32;
    if (t == DType::BF16) return simd_avx2::dot_bf16_f32;
    if (t == DType::F16_2OF4) return simd_avx2::dot_2of4_f16_f32;
    if (t == DType::F16_BITMAP) return simd_avx2::dot_bitmap_f16_f32;
  }
  return fdot_reference(t);
}

QDotKernel qdot_reference(DType t) {
  switch (t) {
    case DType::Q4_0: return {ActFormat::Q8_0, qdot_ref::q4_0};
    case DType::Q5_0: return {ActFormat::Q8_0, qdot_ref::q5_0};
    case DType::Q8_0: return {ActFormat::Q8_0, qdot_ref::q8_0};
    case DType::Q8_0_2OF4: return {ActFormat::Q8_0, dot_2of4_q8_0_ref};
    case DType::Q4_1: return {ActFormat::Q8_0, qdot_ref::q4_1};
    case DType::Q5_1: return {ActFormat::Q8_0, qdot_ref::q5_1};
    case DType::IQ4_NL: return {ActFormat::Q8_0, qdot_ref::iq4_nl};
    case DType::Q2_K: return {ActFormat::Q8_K, qdot_ref::q2_K};
    case DType::Q3_K: return {ActFormat::Q8_K, qdot_ref::q3_K};
    case DType::Q5_K: return {ActFormat::Q8_K, qdot_ref::q5_K};
    case DType::Q4_K: return {ActFormat::Q8_K, qdot_ref::q4_K};
    case DType::Q6_K: return {ActFormat::Q8_K, qdot_ref::q6_K};
    default: return {};
  }
}

QDotKernel qdot(DType t) {
  if (qdot_simd_active()) {
    switch (t) {
      case DType::Q4_0: return {ActFormat::Q8_0, simd_avx2::dot_q4_0_q8_0};
      case DType::Q5_0: return {ActFormat::Q8_0, simd_avx2::dot_q5_0_q8_0};
      case DType::Q8_0: return {ActFormat::Q8_0, simd_avx2::dot_q8_0_q8_0};
      case DType::Q8_0_2OF4: return {ActFormat::Q8_0, simd_avx2::dot_2of4_q8_0_q8_0};
      case DType::Q4_1: return {ActFormat::Q8_0, simd_avx2::dot_q4_1_q8_0};
      case DType::Q5_1: return {ActFormat::Q8_0, simd_avx2::dot_q5_1_q8_0};
      case DType::IQ4_NL: return {ActFormat::Q8_0, simd_avx2::dot_iq4_nl_q8_0};
      case DType::Q2_K: return {ActFormat::Q8_K, simd_avx2::dot_q2_K_q8_K};
      case DType::Q3_K: return {ActFormat::Q8_K, simd_avx2::dot_q3_K_q8_K};
      case DType::Q4_K: return {ActFormat::Q8_K, simd_avx2::dot_q4_K_q8_K};
      case DType::Q5_K: return {ActFormat::Q8_K, simd_avx2::dot_q5_K_q8_K};
      case DType::Q6_K: return {ActFormat::Q8_K, simd_avx2::dot_q6_K_q8_K};
      default: break;
    }
  }
  return qdot_reference(t);
}

bool qdot_simd_active() { return g_use_simd && cpu_isa().avx2; }

bool qdot_vnni_available(Vnni v) {
  switch (v) {
    case Vnni::none: return true;
    case Vnni::avx: return cpu_isa().avx_vnni;
    case Vnni::avx512: return cpu_isa().avx512_vnni;
    case Vnni::emulated: return cpu_isa().avx2;
  }
  return false;
}

Vnni qdot_vnni() {
  if (!qdot_simd_active()) return Vnni::none;
  if (g_vnni_pin) return *g_vnni_pin;
  if (qdot_vnni_available(Vnni::avx)) return Vnni::avx;
  return qdot_vnni_available(Vnni::avx512) ? Vnni::avx512 : Vnni::none;
}

const char* qdot_target() {
  if (!qdot_simd_active()) return "scalar";
  switch (qdot_vnni()) {
    case Vnni::avx: return "avx-vnni";
    case Vnni::avx512: return "avx512-vnni";
    case Vnni::emulated: return "vnni-emulated";
    case Vnni::none: break;
  }
  return "avx2";
}

void qdot_use_simd(bool enabled) { g_use_simd = enabled; }

void qdot_pin_vnni(std::optional<Vnni> v) {
  if (v && !qdot_vnni_available(*v)) throw std::invalid_argument("qdot_pin_vnni: not on this CPU");
  g_vnni_pin = v;
}

}  // namespace lmpress
