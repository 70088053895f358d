#include "kernels/qdot.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/cpu_isa.h"
#include "core/fp16.h"
#include "kernels/bitmap.h"
#include "kernels/i8x8.h"
#include "kernels/int_blocks.h"
#include "kernels/lmp2.h"
#include "kernels/qdot_ref.h"
#include "kernels/sparse24.h"
#include "kernels/x8_vnni.h"

// The SIMD columns of the tables below: each architecture's kernels, null on the other.
#if defined(__x86_64__)
#define LMPRESS_AVX2(f) simd_avx2::f
#define LMPRESS_AVX512(f) simd_avx512::f
#define LMPRESS_AVX512_VNNI(f) simd_avx512vnni::f
#define LMPRESS_AVX512_VBMI(f) simd_avx512_vbmi::f
#else
#define LMPRESS_AVX512(f) nullptr
#define LMPRESS_AVX2(f) nullptr
#define LMPRESS_AVX512_VNNI(f) nullptr
#define LMPRESS_AVX512_VBMI(f) nullptr
#endif
#if defined(__aarch64__)
#include "kernels/qdot_neon.h"
#define LMPRESS_NEON(f) simd_neon::f
#define LMPRESS_NEON_DOTPROD(f) simd_neon_dotprod::f
#else
#define LMPRESS_NEON(f) nullptr
#define LMPRESS_NEON_DOTPROD(f) nullptr
#endif

namespace lmpress {

size_t activation_bytes(ActFormat f, int64_t n) {
  if (f == ActFormat::I8_TOKEN) return sizeof(float) + size_t(n);
  return f == ActFormat::Q8_0 ? size_t(n / 32) * sizeof(BlockQ8_0) : size_t(n / QK_K) * sizeof(BlockQ8_K);
}

size_t activation_unit_bytes(ActFormat f) {
  return f == ActFormat::I8_TOKEN ? 1 : f == ActFormat::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ8_K);
}

void quantize_activations(ActFormat f, const float* x, int64_t n, void* out) {
  if (f == ActFormat::I8_TOKEN) return quantize_i8_token(x, n, static_cast<uint8_t*>(out));
  if (f == ActFormat::Q8_0) {
    auto* y = static_cast<BlockQ8_0*>(out);
#if defined(__x86_64__)
    if (qdot_simd_active()) return simd_avx2::quantize_q8_0(x, n, y);
#elif defined(__aarch64__)
    if (qdot_simd_active()) return simd_neon::quantize_q8_0(x, n, y);
#endif
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
  if (f == ActFormat::Q8_K_HADAMARD) return quantize_activations(ActFormat::Q8_K, lmp2_rotated(x, n), n, out);
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
// scalar reference and the SIMD versions: x86-64 AVX2, aarch64 NEON (Armv8-A)
// and NEON with SDOT (null: the next one down serves, down to the reference).
struct DotRow {
  DType type;
  ActFormat act;
  QDotFn ref, avx2, neon, neon_dotprod;
  QDotMultiFn avx2_multi = nullptr;  // several tokens per row unpacking, with the AVX2 dot's arithmetic
  // AVX-512 with VNNI, with VBMI (and VNNI), without either: preferred to avx2 where the CPU has them, their
  // bits avx2's.
  QDotFn avx512_vnni = nullptr, avx512_vbmi = nullptr, avx512 = nullptr;
};
const DotRow kQDots[] = {
    {DType::Q4_0, ActFormat::Q8_0, qdot_ref::q4_0, LMPRESS_AVX2(dot_q4_0_q8_0), LMPRESS_NEON(dot_q4_0_q8_0),
     LMPRESS_NEON_DOTPROD(dot_q4_0_q8_0)},
    {DType::Q5_0, ActFormat::Q8_0, qdot_ref::q5_0, LMPRESS_AVX2(dot_q5_0_q8_0), LMPRESS_NEON(dot_q5_0_q8_0),
     LMPRESS_NEON_DOTPROD(dot_q5_0_q8_0)},
    {DType::Q8_0, ActFormat::Q8_0, qdot_ref::q8_0, LMPRESS_AVX2(dot_q8_0_q8_0), LMPRESS_NEON(dot_q8_0_q8_0),
     LMPRESS_NEON_DOTPROD(dot_q8_0_q8_0)},
    {DType::Q8_0_2OF4, ActFormat::Q8_0, dot_2of4_q8_0_ref, LMPRESS_AVX2(dot_2of4_q8_0_q8_0), nullptr, nullptr},
    {DType::Q4_1, ActFormat::Q8_0, qdot_ref::q4_1, LMPRESS_AVX2(dot_q4_1_q8_0), nullptr, nullptr},
    {DType::Q5_1, ActFormat::Q8_0, qdot_ref::q5_1, LMPRESS_AVX2(dot_q5_1_q8_0), nullptr, nullptr},
    {DType::IQ4_NL, ActFormat::Q8_0, qdot_ref::iq4_nl, LMPRESS_AVX2(dot_iq4_nl_q8_0), nullptr, nullptr},
    {DType::Q2_K, ActFormat::Q8_K, qdot_ref::q2_K, LMPRESS_AVX2(dot_q2_K_q8_K), nullptr, nullptr},
    {DType::Q3_K, ActFormat::Q8_K, qdot_ref::q3_K, LMPRESS_AVX2(dot_q3_K_q8_K), nullptr, nullptr},
    {DType::Q4_K, ActFormat::Q8_K, qdot_ref::q4_K, LMPRESS_AVX2(dot_q4_K_q8_K), LMPRESS_NEON(dot_q4_K_q8_K),
     LMPRESS_NEON_DOTPROD(dot_q4_K_q8_K)},
    {DType::Q5_K, ActFormat::Q8_K, qdot_ref::q5_K, LMPRESS_AVX2(dot_q5_K_q8_K), nullptr, nullptr},
    {DType::Q6_K, ActFormat::Q8_K, qdot_ref::q6_K, LMPRESS_AVX2(dot_q6_K_q8_K), LMPRESS_NEON(dot_q6_K_q8_K),
     LMPRESS_NEON_DOTPROD(dot_q6_K_q8_K), LMPRESS_AVX2(dot_q6_K_q8_K_multi)},
    // The integer-unpacked types (kernels/int_blocks.h).
    {DType::IQ4_XS, ActFormat::Q8_K, int_blocks_dot_ref<DType::IQ4_XS>, LMPRESS_AVX2(dot_iq4_xs_q8_K), nullptr, nullptr,
     nullptr, LMPRESS_AVX512_VNNI(dot_iq4_xs_q8_K)},
    {DType::IQ3_XXS, ActFormat::Q8_K, int_blocks_dot_ref<DType::IQ3_XXS>, LMPRESS_AVX2(dot_iq3_xxs_q8_K), nullptr,
     nullptr, nullptr, nullptr, LMPRESS_AVX512_VBMI(dot_iq3_xxs_q8_K)},
    {DType::IQ3_S, ActFormat::Q8_K, int_blocks_dot_ref<DType::IQ3_S>, LMPRESS_AVX2(dot_iq3_s_q8_K), nullptr, nullptr},
    {DType::IQ2_XXS, ActFormat::Q8_K, int_blocks_dot_ref<DType::IQ2_XXS>, LMPRESS_AVX2(dot_iq2_xxs_q8_K), nullptr,
     nullptr},
    {DType::IQ2_XS, ActFormat::Q8_K, int_blocks_dot_ref<DType::IQ2_XS>, LMPRESS_AVX2(dot_iq2_xs_q8_K), nullptr, nullptr,
     nullptr, nullptr, nullptr, LMPRESS_AVX512(dot_iq2_xs_q8_K)},
    {DType::IQ2_S, ActFormat::Q8_K, int_blocks_dot_ref<DType::IQ2_S>, LMPRESS_AVX2(dot_iq2_s_q8_K), nullptr, nullptr},
    {DType::IQ1_S, ActFormat::Q8_K, int_blocks_dot_ref<DType::IQ1_S>, LMPRESS_AVX2(dot_iq1_s_q8_K), nullptr, nullptr},
    {DType::IQ1_M, ActFormat::Q8_K, int_blocks_dot_ref<DType::IQ1_M>, LMPRESS_AVX2(dot_iq1_m_q8_K), nullptr, nullptr},
    {DType::TQ1_0, ActFormat::Q8_K, int_blocks_dot_ref<DType::TQ1_0>, LMPRESS_AVX2(dot_tq1_0_q8_K), nullptr, nullptr},
    {DType::TQ2_0, ActFormat::Q8_K, int_blocks_dot_ref<DType::TQ2_0>, LMPRESS_AVX2(dot_tq2_0_q8_K), nullptr, nullptr},
    {DType::MXFP4, ActFormat::Q8_0, int_blocks_dot_ref<DType::MXFP4>, LMPRESS_AVX2(dot_mxfp4_q8_0), nullptr, nullptr},
    {DType::LMP2, ActFormat::Q8_K_HADAMARD, int_blocks_dot_ref<DType::LMP2>, LMPRESS_AVX2(dot_lmp2_q8_K), nullptr,
     nullptr},
};

struct FDotRow {
  DType type;
  FDotFn ref, avx2, neon;  // no NEON dotprod column: the float dots do not use SDOT
};
const FDotRow kFDots[] = {
    {DType::F16, qdot_ref::f16, LMPRESS_AVX2(dot_f16_f32), LMPRESS_NEON(dot_f16_f32)},
    {DType::BF16, qdot_ref::bf16, LMPRESS_AVX2(dot_bf16_f32), LMPRESS_NEON(dot_bf16_f32)},
    {DType::F16_2OF4, dot_2of4_f16_ref, LMPRESS_AVX2(dot_2of4_f16_f32), nullptr},
    {DType::F16_BITMAP, dot_bitmap_f16_ref, LMPRESS_AVX2(dot_bitmap_f16_f32), nullptr},
};

// The best of a row's versions that cpu_isa() allows.
template <class Fn>
Fn best_of(Fn ref, Fn avx2, Fn neon, Fn neon_dotprod) {
  if (!qdot_simd_active()) return ref;
  const CpuFeatures& cap = cpu_isa();
  if (cap.avx2 && avx2) return avx2;
  if (cap.dotprod && neon_dotprod) return neon_dotprod;
  if (cap.neon && neon) return neon;
  return ref;
}

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
  return best_of<FDotFn>(r->ref, r->avx2, r->neon, nullptr);
}

QDotKernel qdot_reference(DType t) {
  const DotRow* r = find_row(kQDots, t);
  return r ? QDotKernel{r->act, r->ref} : QDotKernel{};
}

QDotKernel qdot(DType t) {
  const DotRow* r = find_row(kQDots, t);
  if (!r) return {};
  const QDotFn fn = best_of(r->ref, r->avx2, r->neon, r->neon_dotprod);
  if (fn == r->avx2 && r->avx512_vbmi && cpu_isa().avx512_vbmi) return {r->act, r->avx512_vbmi, nullptr};
  if (fn == r->avx2 && r->avx512_vnni && cpu_isa().avx512_vnni) return {r->act, r->avx512_vnni, nullptr};
  if (fn == r->avx2 && r->avx512 && cpu_isa().avx512) return {r->act, r->avx512, nullptr};
  return {r->act, fn, fn == r->avx2 ? r->avx2_multi : nullptr};
}

bool qdot_simd_active() { return g_use_simd && (cpu_isa().avx2 || cpu_isa().neon); }

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
  if (cpu_isa().neon) return cpu_isa().dotprod ? "neon-dotprod" : "neon";
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
