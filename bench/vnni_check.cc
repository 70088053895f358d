// The 4-token x8 kernels on each VNNI encoding the CPU has (AVX-VNNI,
// AVX512-VNNI) against the AVX2 and scalar gemv on random blocks, then their
// speed per target, AVX2 included.
// Run through bench/vnni-check.sh (needs only g++ and libfmt).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include "core/fp16.h"
#include "kernels/q4_0x8.h"
#include "kernels/q8_0x8.h"
#include "kernels/qdot.h"
using namespace lmpress;
int main() {
  std::printf("avx2 %d avx-vnni %d avx512-vnni %d best %s\n", int(qdot_simd_active()),
              int(qdot_vnni_available(Vnni::avx)), int(qdot_vnni_available(Vnni::avx512)), qdot_target());
  std::vector<Vnni> targets;
  for (Vnni v : {Vnni::avx, Vnni::avx512, Vnni::none})
    if (qdot_vnni_available(v)) targets.push_back(v);
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> nd;
  int bad = 0;
  for (int64_t cols : {32, 288, 2080}) {
    const int64_t nb = cols / 32;
    std::vector<BlockQ8_0x8> g8(nb);
    std::vector<BlockQ4_0x8> g4(nb);
    std::vector<BlockQ8_0> acts(4 * nb);
    std::vector<int32_t> sums(4 * nb);
    for (auto& b : g8) { for (auto& d : b.d) d = f32_to_f16(0.01f * (1 + std::fabs(nd(rng)))); for (auto& v : b.qs) for (auto& q : v) q = int8_t(byte(rng) - 128); }
    for (auto& b : g4) { for (auto& d : b.d) d = f32_to_f16(0.01f * (1 + std::fabs(nd(rng)))); for (auto& q : b.qs) q = uint8_t(byte(rng)); }
    for (int64_t i = 0; i < 4 * nb; i++) {
      acts[i].d = f32_to_f16(0.02f); int s = 0;
      for (auto& q : acts[i].qs) { q = int8_t(byte(rng) % 255 - 127); s += q; }
      sums[i] = s;
    }
    for (int kind = 0; kind < 2; kind++)
    for (Vnni v : targets) {
      if (v == Vnni::none) continue;
      float got[4 * 10], want[8];
      qdot_pin_vnni(v);
      if (kind == 0) gemm4_q8_0x8(cols, g8.data(), acts.data(), nb, got, 10);
      else gemm4_q4_0x8(cols, g4.data(), acts.data(), sums.data(), nb, got, 10);
      for (int simd = 0; simd < 2; simd++) {
        qdot_use_simd(simd);
        for (int t = 0; t < 4; t++) {
          if (kind == 0) gemv_q8_0x8(cols, g8.data(), acts.data() + t * nb, want);
          else gemv_q4_0x8(cols, g4.data(), acts.data() + t * nb, sums.data() + t * nb, want);
          for (int r = 0; r < 8; r++) {
            const float e = std::fabs(got[10 * t + r] - want[r]);
            if (e > 1e-4f * (std::fabs(want[r]) + 1)) { bad++; std::printf("MISMATCH %s kind %d cols %ld t %d r %d got %g want %g\n", qdot_target(), kind, (long)cols, t, r, got[10*t+r], want[r]); }
          }
        }
      }
      qdot_use_simd(true);
    }
  }
  qdot_pin_vnni(std::nullopt);
  // Speed, one thread, in cache: 4 tokens x 256 groups of 8 rows x 2048 columns, each target in this process.
  const int64_t cols = 2048, nb = cols / 32, groups = 64;
  std::vector<BlockQ8_0x8> w8(size_t(groups * nb));
  std::vector<BlockQ4_0x8> w4(size_t(groups * nb));
  std::vector<BlockQ8_0> xa(size_t(4 * nb));
  std::vector<int32_t> xs(size_t(4 * nb));
  float o[4 * 8];
  for (int kind = 0; kind < 2; kind++)
    for (Vnni v : targets) {
      qdot_pin_vnni(v);
      const auto t0 = std::chrono::steady_clock::now();
      for (int rep = 0; rep < 200; rep++)
        for (int64_t gi = 0; gi < groups; gi++)
          if (kind == 0) gemm4_q8_0x8(cols, w8.data() + gi * nb, xa.data(), nb, o, 8);
          else gemm4_q4_0x8(cols, w4.data() + gi * nb, xa.data(), xs.data(), nb, o, 8);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%s gemm4 %s: %.1f GOP/s\n", kind ? "Q4_0_x8" : "Q8_0_x8", qdot_target(), 200.0 * groups * 8 * cols * 4 * 2 / s / 1e9);
    }
  qdot_pin_vnni(std::nullopt);
  std::printf("%s (%d mismatches)\n", bad ? "FAIL" : "PASS", bad);
  return bad != 0;
}
