// The register-tile microkernels of gemm_packed (kernels/gemm_packed.h),
// written once with Highway and compiled for every x86 target it knows
// (AVX-512, AVX2, SSE4 and its 128-bit emulation), or for NEON on aarch64; the
// widest one the CPU and OS support runs. Without AVX2 or NEON (or under the
// scalar cap) plain C++ tiles of 8 rows run instead. A tile is `tokens` activations x two
// vectors of weight rows (16 with AVX2, 32 with AVX-512, 8 with NEON),
// accumulated over kc columns:
//   c[i][j] (+)= Σ_k a[k·panel + i] · b[k·nr + j]
// with a the token panel (panel floats per k) and b the weight panel (nr
// floats per k, aligned to 64 bytes).
#pragma once
#include <cstdint>
#include <vector>

namespace lmpress {

using GemmMicrokernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate);

// The two token-panel sizes kernels exist for: 6 tokens x 2 vectors is 12
// accumulators + 3 more registers (AVX2 has 16); 12 tokens fill AVX-512's
// (and aarch64's) 32.
constexpr int kPanelSmall = 6, kPanelLarge = 12;

struct GemmMicrokernels {
  int nr = 0;                // weight rows per tile: two vectors
  int panel = 0;             // the token-panel size that suits this target's registers
  const char* target = "";   // Highway's name for it ("AVX3", "AVX2", ...)
  GemmMicrokernel small[kPanelSmall + 1] = {};  // [tokens], panels of kPanelSmall
  GemmMicrokernel large[kPanelLarge + 1] = {};  // [tokens], panels of kPanelLarge
};

// The kernels of the best target this machine runs.
GemmMicrokernels gemm_microkernels();

// Tests: the Highway targets compiled in and runnable here, best first, and
// pinning dispatch to one of them (0 lifts the pin).
std::vector<int64_t> gemm_microkernel_targets();
void gemm_microkernel_pin_target(int64_t target);

}  // namespace lmpress
