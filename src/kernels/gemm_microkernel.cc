// Highway compiles this file once per target (foreach_target.h re-includes
// it); the code between HWY_BEFORE_NAMESPACE and HWY_AFTER_NAMESPACE is
// generic in the vector width, the rest (HWY_ONCE) is compiled once.
#include "kernels/gemm_microkernel.h"

#include <atomic>
#include <utility>

#include "core/cpu_isa.h"
#include "kernels/qdot.h"

// SSSE3 adds nothing over SSE4 here: one 128-bit target is enough to test the
// width-generic code at 4 lanes. (The baseline target, 1-lane SCALAR, cannot
// be left out; it is never offered: its tile is 2 rows, the packing's unit 8.)
// On aarch64 NEON is the one target: Highway's SVE targets are left out
// because cpu_isa() has no SVE target for LMPRESS_ISA to cap, and an SVE
// vector's length is known only at run time (128 to 2048 bits) where the
// packing holds at most 2 x 16 floats per tile row (gemm_packed.cc, kMaxNR).
#ifndef HWY_DISABLED_TARGETS
#if defined(__aarch64__)
#define HWY_DISABLED_TARGETS (HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128)
#else
#define HWY_DISABLED_TARGETS HWY_SSSE3
#endif
#endif
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/gemm_microkernel.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target.h first, then highway.h: Highway's required order.
#include <hwy/cache_control.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace lmpress {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// One row of the tile: token i's activation broadcast against both weight
// vectors. Named accumulators (c<i>a, c<i>b) rather than an array: GCC keeps
// an array of vectors in registers but also stores it to the stack on every
// iteration.
#define LMPRESS_TILE_ROW(i)                   \
  if constexpr (T > i) {                      \
    const auto ai = hn::Set(d, a[i]);         \
    c##i##a = hn::MulAdd(ai, b0, c##i##a);    \
    c##i##b = hn::MulAdd(ai, b1, c##i##b);    \
  }
#define LMPRESS_TILE_STORE(i)                                      \
  if constexpr (T > i) {                                           \
    float* ci = c + i * ldc;                                       \
    if (accumulate) {                                              \
      c##i##a = hn::Add(c##i##a, hn::LoadU(d, ci));                \
      c##i##b = hn::Add(c##i##b, hn::LoadU(d, ci + N));            \
    }                                                              \
    hn::StoreU(c##i##a, d, ci);                                    \
    hn::StoreU(c##i##b, d, ci + N);                                \
  }

// T tokens of a panel of P (T < P only for the last, partial panel).
template <int P, int T>
void Microkernel(int64_t kc, const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, float* HWY_RESTRICT c,
                 int64_t ldc, bool accumulate) {
  static_assert(T >= 1 && T <= P && P <= 12);
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  auto c0a = hn::Zero(d), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a, c3b = c0a, c4a = c0a,
       c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a, c8a = c0a, c8b = c0a,
       c9a = c0a, c9b = c0a, c10a = c0a, c10b = c0a, c11a = c0a, c11b = c0a;
  // The tile's rows of y are far apart and rarely cached: ask for them while
  // the k loop runs rather than stall on them at the end.
  for (int i = 0; accumulate && i < T; i++) {
    hwy::Prefetch(c + i * ldc);
    hwy::Prefetch(c + i * ldc + 2 * N - 1);
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++, a += P, b += 2 * N) {
    const auto b0 = hn::Load(d, b), b1 = hn::Load(d, b + N);
    LMPRESS_TILE_ROW(0) LMPRESS_TILE_ROW(1) LMPRESS_TILE_ROW(2) LMPRESS_TILE_ROW(3)
    LMPRESS_TILE_ROW(4) LMPRESS_TILE_ROW(5) LMPRESS_TILE_ROW(6) LMPRESS_TILE_ROW(7)
    LMPRESS_TILE_ROW(8) LMPRESS_TILE_ROW(9) LMPRESS_TILE_ROW(10) LMPRESS_TILE_ROW(11)
  }
  LMPRESS_TILE_STORE(0) LMPRESS_TILE_STORE(1) LMPRESS_TILE_STORE(2) LMPRESS_TILE_STORE(3)
  LMPRESS_TILE_STORE(4) LMPRESS_TILE_STORE(5) LMPRESS_TILE_STORE(6) LMPRESS_TILE_STORE(7)
  LMPRESS_TILE_STORE(8) LMPRESS_TILE_STORE(9) LMPRESS_TILE_STORE(10) LMPRESS_TILE_STORE(11)
}
#undef LMPRESS_TILE_ROW
#undef LMPRESS_TILE_STORE

template <int P, int... T>
void fill(GemmMicrokernel* table, std::integer_sequence<int, T...>) {
  ((table[T + 1] = &Microkernel<P, T + 1>), ...);
}

GemmMicrokernels Microkernels() {
  GemmMicrokernels m;
  const size_t lanes = hn::Lanes(hn::ScalableTag<float>());
  m.nr = int(2 * lanes);
  // The panel whose accumulators (2 per token) fill the register file: 16
  // registers on AVX2, 32 on AVX-512 and on every aarch64 target.
  m.panel = lanes >= 16 || HWY_ARCH_ARM_A64 ? kPanelLarge : kPanelSmall;
  m.target = hwy::TargetName(HWY_TARGET);
  fill<kPanelSmall>(m.small, std::make_integer_sequence<int, kPanelSmall>());
  fill<kPanelLarge>(m.large, std::make_integer_sequence<int, kPanelLarge>());
  return m;
}

}  // namespace HWY_NAMESPACE
}  // namespace lmpress
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lmpress {

HWY_EXPORT(Microkernels);

namespace {
std::atomic<uint64_t> g_cap_applied{~uint64_t(0)};

// Plain C++ tiles of T tokens x 8 rows, for CPUs without AVX2 or NEON and the
// scalar cap (Highway's 1-lane target would make 2-row tiles; the packing's
// unit is 8). Each c[i][j] is summed over k in order, as Highway's kernels
// do, so its value does not depend on T or on the tile it falls in.
constexpr int kPortableNR = 8;

template <int P, int T>
void PortableMicrokernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  float acc[T][kPortableNR] = {};
  for (int64_t k = 0; k < kc; k++, a += P, b += kPortableNR)
    for (int i = 0; i < T; i++)
      for (int j = 0; j < kPortableNR; j++) acc[i][j] += a[i] * b[j];
  for (int i = 0; i < T; i++)
    for (int j = 0; j < kPortableNR; j++) c[i * ldc + j] = accumulate ? acc[i][j] + c[i * ldc + j] : acc[i][j];
}

template <int P, int... T>
void fill_portable(GemmMicrokernel* table, std::integer_sequence<int, T...>) {
  ((table[T + 1] = &PortableMicrokernel<P, T + 1>), ...);
}

GemmMicrokernels portable_microkernels() {
  GemmMicrokernels m;
  m.nr = kPortableNR;
  m.panel = kPanelSmall;
  m.target = "portable";
  fill_portable<kPanelSmall>(m.small, std::make_integer_sequence<int, kPanelSmall>());
  fill_portable<kPanelLarge>(m.large, std::make_integer_sequence<int, kPanelLarge>());
  return m;
}

}  // namespace

GemmMicrokernels gemm_microkernels() {
  // cpu_isa()'s cap reaches Highway's own dispatch: without avx512 no AVX3
  // target (in Highway a smaller bit is a better target).
  const uint64_t gen = cpu_isa_generation();
  if (g_cap_applied.exchange(gen) != gen) {
    // On aarch64 nothing to cap: NEON, the one target, is in every aarch64
    // CPU (a scalar cap takes the portable kernels, here as on x86).
    int64_t mask = 0;  // 0: no restriction
#if HWY_ARCH_X86
    if (!cpu_isa().avx512) {
      for (int64_t t : gemm_microkernel_targets())
        if (t >= int64_t(HWY_AVX2)) mask |= t;
      mask |= HWY_SCALAR;
    }
#endif
    hwy::SetSupportedTargetsForTest(mask);
  }
  if (!qdot_simd_active()) return portable_microkernels();
  return HWY_DYNAMIC_DISPATCH(Microkernels)();
}

std::vector<int64_t> gemm_microkernel_targets() {
  // Taken once, before any pin: Highway's list reflects the pin.
  static const std::vector<int64_t> targets = [] {
    std::vector<int64_t> t = hwy::SupportedAndGeneratedTargets();
    std::erase_if(t, [](int64_t x) { return x == HWY_SCALAR; });
    return t;
  }();
  return targets;
}

void gemm_microkernel_pin_target(int64_t target) {
  gemm_microkernel_targets();
  g_cap_applied = cpu_isa_generation();  // the test's pin stands until the cap changes
  hwy::SetSupportedTargetsForTest(target);
}

}  // namespace lmpress
#endif  // HWY_ONCE
