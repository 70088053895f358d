// Step for step as ggml-quants.c (quantize_row_mxfp4_ref, quantize_row_tq1_0_ref,
// quantize_row_tq2_0_ref), so the bytes match llama-quantize's.
#include "quant/simple_quants.h"

#include <algorithm>
#include <cmath>

#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/int_blocks.h"

namespace lmpress {

const int8_t kFp4Sorted[15] = {-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12};
const uint8_t kFp4SortedNibble[15] = {15, 14, 13, 12, 11, 10, 9, 0, 1, 2, 3, 4, 5, 6, 7};

void quantize_row_mxfp4(const float* x, int64_t n, uint8_t* out, const float*) {
  auto* y = reinterpret_cast<BlockMXFP4*>(out);
  for (int64_t b = 0; b < n / 32; b++, x += 32) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = std::max(amax, std::fabs(x[j]));
    // The exponent that puts amax in [4, 8) times 2^e (E2M1's top level is 6): ggml's floor(log2) − 2,
    // kept in E8M0's range (ggml's cast leaves values below 2^-125 undefined).
    const float e = amax > 0 ? std::floor(std::log2(amax)) - 2 + 127 : 0;
    y[b].e = uint8_t(std::clamp(e, 0.0f, 254.0f));
    const float d = e8m0_to_f32_half(y[b].e);
    const auto best = [&](float v) {
      int bi = 0;
      float be = std::fabs(kFp4Values[0] * d - v);
      for (int i = 1; i < 16; i++) {
        const float err = std::fabs(kFp4Values[i] * d - v);
        if (err < be) bi = i, be = err;
      }
      return bi;
    };
    for (int j = 0; j < 16; j++) y[b].qs[j] = uint8_t(best(x[j]) | best(x[j + 16]) << 4);
  }
}

namespace {
// Trit of v (−1, 0, 1 as 0, 1, 2) under 1/d, rounding half away from zero as lroundf.
inline uint8_t trit(float v, float id) { return uint8_t(std::lround(v * id) + 1); }
// Five (or four, then shifted) base-3 digits as a byte whose top bits read them back (ceil(q · 256 / 243)).
inline uint8_t trit_byte(int q) { return uint8_t((q * 256 + 242) / 243); }

// d = the block's absolute maximum; levels 0, 1, 2 for −d, 0, d.
float ternary_levels(const float* x, uint8_t* L) {
  float amax = 0;
  for (int j = 0; j < QK_K; j++) amax = std::max(amax, std::fabs(x[j]));
  const float id = amax ? 1.0f / amax : 0.0f;
  for (int j = 0; j < QK_K; j++) L[j] = trit(x[j], id);
  return amax;
}
}  // namespace

void pack_tq1_0(const uint8_t* L, BlockTQ1_0& y) {
  // 32 bytes of 5 values each (values m, m+32, ..., m+128), then 16 bytes (160 + m + 16k), then 4 values in each
  // of 4 bytes (240 + j + 4k), the first value the most significant digit.
  for (int m = 0; m < 32; m++) {
    int q = 0;
    for (int k = 0; k < 5; k++) q = q * 3 + L[m + 32 * k];
    y.qs[m] = trit_byte(q);
  }
  for (int m = 0; m < 16; m++) {
    int q = 0;
    for (int k = 0; k < 5; k++) q = q * 3 + L[160 + m + 16 * k];
    y.qs[32 + m] = trit_byte(q);
  }
  for (int j = 0; j < 4; j++) {
    int q = 0;
    for (int k = 0; k < 4; k++) q = q * 3 + L[240 + j + 4 * k];
    y.qh[j] = trit_byte(q * 3);
  }
}

void pack_tq2_0(const uint8_t* L, BlockTQ2_0& y) {
  for (int j = 0; j < QK_K / 4; j += 32)
    for (int m = 0; m < 32; m++) {
      int q = 0;
      for (int k = 0; k < 4; k++) q |= (L[4 * j + m + 32 * k] & 3) << (2 * k);
      y.qs[j + m] = uint8_t(q);
    }
}

namespace {
template <typename B, void (*Pack)(const uint8_t*, B&)>
void quantize_ternary(const float* x, int64_t n, uint8_t* out) {
  auto* y = reinterpret_cast<B*>(out);
  uint8_t L[QK_K];
  for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
    y[b].d = f32_to_f16(ternary_levels(x, L));
    Pack(L, y[b]);
  }
}
}  // namespace

void quantize_row_tq1_0(const float* x, int64_t n, uint8_t* out, const float*) {
  quantize_ternary<BlockTQ1_0, pack_tq1_0>(x, n, out);
}
void quantize_row_tq2_0(const float* x, int64_t n, uint8_t* out, const float*) {
  quantize_ternary<BlockTQ2_0, pack_tq2_0>(x, n, out);
}

}  // namespace lmpress
