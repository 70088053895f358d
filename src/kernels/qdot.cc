#include "kernels/qdot.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/cpu_isa.h"
#include "core/fp16.h"
#include "kernels/bitmap.h"
#include "kernels/qdot_ref.h"
#include "kernels/sparse24.h"
#include "kernels/x8_vnni.h"

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
    for (int j = 0; j < QK_K; j++) o.qs[j] = int8_t(std::min(127, nearest_int(iscale * v[j])));
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

// One row per weight type with a dot kernel: its activation format, the
// scalar reference and the AVX2 version (null: the reference serves every ISA).
struct DotRow {
  DType type;
  ActFormat act;
  QDotFn ref, avx2;
};
const DotRow kQDots[] = {
    {DType::Q4_0, ActFormat::Q8_0, qdot_ref::q4_0, simd_avx2::dot_q4_0_q8_0},
    {DType::Q5_0, ActFormat::Q8_0, qdot_ref::q5_0, simd_avx2::dot_q5_0_q8_0},
    {DType::Q8_0, ActFormat::Q8_0, qdot_ref::q8_0, simd_avx2::dot_q8_0_q8_0},
    {DType::Q8_0_2OF4, ActFormat::Q8_0, dot_2of4_q8_0_ref, simd_avx2::dot_2of4_q8_0_q8_0},
    {DType::Q4_1, ActFormat::Q8_0, qdot_ref::q4_1, simd_avx2::dot_q4_1_q8_0},
    {DType::Q5_1, ActFormat::Q8_0, qdot_ref::q5_1, simd_avx2::dot_q5_1_q8_0},
    {DType::IQ4_NL, ActFormat::Q8_0, qdot_ref::iq4_nl, simd_avx2::dot_iq4_nl_q8_0},
    {DType::Q2_K, ActFormat::Q8_K, qdot_ref::q2_K, simd_avx2::dot_q2_K_q8_K},
    {DType::Q3_K, ActFormat::Q8_K, qdot_ref::q3_K, simd_avx2::dot_q3_K_q8_K},
    {DType::Q4_K, ActFormat::Q8_K, qdot_ref::q4_K, simd_avx2::dot_q4_K_q8_K},
    {DType::Q5_K, ActFormat::Q8_K, qdot_ref::q5_K, simd_avx2::dot_q5_K_q8_K},
    {DType::Q6_K, ActFormat::Q8_K, qdot_ref::q6_K, simd_avx2::dot_q6_K_q8_K},
};

struct FDotRow {
  DType type;
  FDotFn ref, avx2;
};
const FDotRow kFDots[] = {
    {DType::F16, qdot_ref::f16, simd_avx2::dot_f16_f32},
    {DType::BF16, qdot_ref::bf16, simd_avx2::dot_bf16_f32},
    {DType::F16_2OF4, dot_2of4_f16_ref, simd_avx2::dot_2of4_f16_f32},
    {DType::F16_BITMAP, dot_bitmap_f16_ref, simd_avx2::dot_bitmap_f16_f32},
};

template <class Row, size_t N>
const Row* find_row(const Row (&rows)[N], DType t) {
  for (const Row& r : rows)
    if (r.type == t) return &r;
  return nullptr;
}

}  // namespace

FDotFn fdot_reference(DType t) {
  const FDotRow* r = find_row(kFDots, t);
  return r ? r->ref : nullptr;
}

FDotFn fdot(DType t) {
  const FDotRow* r = find_row(kFDots, t);
  if (!r) return nullptr;
  return qdot_simd_active() && r->avx2 ? r->avx2 : r->ref;
}

QDotKernel qdot_reference(DType t) {
  const DotRow* r = find_row(kQDots, t);
  return r ? QDotKernel{r->act, r->ref} : QDotKernel{};
}

QDotKernel qdot(DType t) {
  const DotRow* r = find_row(kQDots, t);
  if (!r) return {};
  return {r->act, qdot_simd_active() && r->avx2 ? r->avx2 : r->ref};
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
