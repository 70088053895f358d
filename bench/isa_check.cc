// The kernels written for instruction sets the development and CI machines
// lack, checked and timed where the CPU has them:
//  - the 4-token x8 kernels on each VNNI encoding (AVX-VNNI, AVX512-VNNI)
//    against the AVX2 and scalar gemv on random blocks, then their speed per
//    target, AVX2 included;
//  - gemm_packed on every Highway target (AVX-512's 12x32 tiles) and both
//    token panels against a double-precision reference, then its speed per
//    target.
// Run through bench/isa-check.sh (needs only g++, libfmt and Highway).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include "core/fp16.h"
#include "core/tensor.h"
#include "kernels/gemm_microkernel.h"
#include "kernels/gemm_packed.h"
#include "kernels/q4_0x8.h"
#include "kernels/q4_kx8.h"
#include "kernels/q8_0x8.h"
#include "kernels/qdot.h"
using namespace lmpress;
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Tensor f16_matrix(int64_t out, int64_t in, std::vector<uint16_t>& bits, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  bits.resize(size_t(out * in));
  for (auto& b : bits) b = f32_to_f16(nd(rng));
  Tensor w;
  w.dtype = DType::F16;
  w.shape = {out, in};
  w.data = reinterpret_cast<const uint8_t*>(bits.data());
  w.nbytes = bits.size() * 2;
  return w;
}

int check_gemm_packed() {
  int bad = 0;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  struct Shape { int64_t n, out, in; };
  for (int64_t target : gemm_microkernel_targets()) {
    gemm_microkernel_pin_target(target);
    for (int panel : {kPanelSmall, kPanelLarge})
      for (Shape s : {Shape{1, 1, 5}, Shape{13, 35, 72}, Shape{25, 70, 1100}, Shape{7, 33, 768}, Shape{40, 64, 256}}) {
        std::vector<uint16_t> bits;
        const Tensor w = f16_matrix(s.out, s.in, bits, rng);
        std::vector<float> x(size_t(s.n * s.in)), y(size_t(s.n * s.out));
        for (auto& v : x) v = nd(rng);
        gemm_packed_with_panel(w, x.data(), s.n, y.data(), panel);
        for (int64_t t = 0; t < s.n; t++)
          for (int64_t r = 0; r < s.out; r++) {
            double want = 0, mag = 0;
            for (int64_t k = 0; k < s.in; k++) {
              const double p = double(f16_to_f32(bits[size_t(r * s.in + k)])) * x[size_t(t * s.in + k)];
              want += p, mag += std::fabs(p);
            }
            if (std::fabs(y[size_t(t * s.out + r)] - want) > 1e-5 * mag + 1e-6 && bad++ < 20)
              std::printf("MISMATCH gemm_packed %s panel %d n %ld out %ld in %ld: token %ld row %ld got %g want %g\n",
                          gemm_packed_target(), panel, long(s.n), long(s.out), long(s.in), long(t), long(r),
                          y[size_t(t * s.out + r)], want);
          }
      }
  }
  // Speed: 512 tokens x 2048 x 2048 F16, all threads, each target and panel.
  std::vector<uint16_t> bits;
  const Tensor w = f16_matrix(2048, 2048, bits, rng);
  std::vector<float> x(512 * 2048), y(512 * 2048);
  for (auto& v : x) v = nd(rng);
  for (int64_t target : gemm_microkernel_targets()) {
    gemm_microkernel_pin_target(target);
    for (int panel : {kPanelSmall, kPanelLarge}) {
      gemm_packed_with_panel(w, x.data(), 512, y.data(), panel);  // warm up
      const auto t0 = std::chrono::steady_clock::now();
      for (int rep = 0; rep < 5; rep++) gemm_packed_with_panel(w, x.data(), 512, y.data(), panel);
      std::printf("gemm_packed F16 512x2048x2048 %s panel %d: %.1f GFLOP/s\n", gemm_packed_target(), panel,
                  5 * 2.0 * 512 * 2048 * 2048 / seconds_since(t0) / 1e9);
    }
  }
  gemm_microkernel_pin_target(0);
  return bad;
}

// Q4_K_x8's 4-token kernel on each VNNI target against the AVX2 and scalar
// gemv, then its speed per target (AVX2 included), one thread in cache.
int check_q4_kx8(const std::vector<Vnni>& targets) {
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> nd;
  const auto random_groups = [&](int64_t n) {
    std::vector<BlockQ4_Kx8> g(static_cast<size_t>(n));
    for (auto& b : g) {
      for (int r = 0; r < 8; r++)
        b.d[r] = f32_to_f16(0.01f * (1 + std::fabs(nd(rng)))), b.dmin[r] = f32_to_f16(0.005f * std::fabs(nd(rng)));
      for (int j = 0; j < 8; j++)
        for (int r = 0; r < 8; r++) b.sc[j][r] = uint8_t(byte(rng) % 64), b.m[j][r] = uint8_t(byte(rng) % 64);
      for (auto& c : b.qs) for (auto& v : c) for (auto& q : v) q = uint8_t(byte(rng));
    }
    return g;
  };
  const auto random_acts = [&](int64_t n) {
    std::vector<BlockQ8_K> a(static_cast<size_t>(n));
    for (auto& x : a) {
      x.d = 0.02f * (1 + std::fabs(nd(rng)));
      for (auto& q : x.qs) q = int8_t(byte(rng) % 255 - 127);
      for (int j = 0; j < QK_K / 16; j++) {
        int sum = 0;
        for (int i = 0; i < 16; i++) sum += x.qs[16 * j + i];
        x.bsums[j] = int16_t(sum);
      }
    }
    return a;
  };
  int bad = 0;
  for (int64_t cols : {256, 2816}) {
    const int64_t nb = cols / QK_K;
    const auto g = random_groups(nb);
    const auto acts = random_acts(4 * nb);
    for (Vnni v : targets) {
      if (v == Vnni::none) continue;
      qdot_pin_vnni(v);
      float got[4 * 10], want[8];
      gemm4_q4_kx8(cols, g.data(), acts.data(), nb, got, 10);
      for (int simd = 0; simd < 2; simd++) {
        qdot_use_simd(simd);
        for (int t = 0; t < 4; t++) {
          gemv_q4_kx8(cols, g.data(), acts.data() + t * nb, want);
          for (int r = 0; r < 8; r++)
            if (std::fabs(got[10 * t + r] - want[r]) > 1e-4f * (std::fabs(want[r]) + 1) && bad++ < 20)
              std::printf("MISMATCH Q4_K_x8 %s cols %ld t %d r %d got %g want %g\n", qdot_target(), long(cols), t, r,
                          got[10 * t + r], want[r]);
        }
      }
      qdot_use_simd(true);
    }
  }
  const int64_t cols = 2048, nb = cols / QK_K, groups = 64;
  const auto w = random_groups(groups * nb);
  const auto x = random_acts(4 * nb);
  float o[4 * 8];
  for (Vnni v : targets) {
    qdot_pin_vnni(v);
    const auto t0 = std::chrono::steady_clock::now();
    for (int rep = 0; rep < 200; rep++)
      for (int64_t gi = 0; gi < groups; gi++) gemm4_q4_kx8(cols, w.data() + gi * nb, x.data(), nb, o, 8);
    std::printf("Q4_K_x8 gemm4 %s: %.1f GOP/s\n", qdot_target(), 200.0 * groups * 8 * cols * 4 * 2 / seconds_since(t0) / 1e9);
  }
  qdot_pin_vnni(std::nullopt);
  return bad;
}

int check_vnni() {
  std::printf("avx2 %d avx-vnni %d avx512-vnni %d best %s\n", int(qdot_simd_active()),
              int(qdot_vnni_available(Vnni::avx)), int(qdot_vnni_available(Vnni::avx512)), qdot_target());
  std::vector<Vnni> targets;
  for (Vnni v : {Vnni::avx, Vnni::avx512, Vnni::emulated, Vnni::none})
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
      const double s = seconds_since(t0);
      std::printf("%s gemm4 %s: %.1f GOP/s\n", kind ? "Q4_0_x8" : "Q8_0_x8", qdot_target(), 200.0 * groups * 8 * cols * 4 * 2 / s / 1e9);
    }
  qdot_pin_vnni(std::nullopt);
  return bad + check_q4_kx8(targets);
}
}  // namespace

int main() {
  const int bad = check_vnni() + check_gemm_packed();
  std::printf("%s (%d mismatches)\n", bad ? "FAIL" : "PASS", bad);
  return bad != 0;
}
