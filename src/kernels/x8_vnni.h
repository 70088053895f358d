// VNNI versions of the 4-token kernels of the 8-row interleaved layouts
// (Q4_0_x8, Q8_0_x8, Q4_K_x8): vpdpbusd multiplies unsigned by signed bytes and adds
// groups of 4 into int32 lanes in one instruction, where AVX2 needs maddubs,
// madd and an add. Two encodings of the same 256-bit instruction, one source
// (x8_vnni_kernels.inc): AVX-VNNI (VEX; Alder Lake, Sapphire Rapids, Zen 5) and
// AVX512-VNNI with AVX512VL (EVEX; Cascade/Ice Lake, Zen 4). Same arguments and
// results as gemm4_q4_0x8 / gemm4_q8_0x8 / gemm4_q4_kx8, which call these by
// qdot_vnni(); gemmn_* take 1..3 tokens in one pass over the weights, their
// rows equal to the one-token kernels' (decoding steps of several sequences,
// speculative verification). gemm4/gemmn_panel_x8 (one scale per 32 values)
// and _panel16_x8 (one per 16): the decoded IQ panels of kernels/int_panels.h
// against unsigned (value + 128) Q8_0 activations.
#pragma once
#include <cstdint>

#include "kernels/int_panels.h"
#include "kernels/q4_0x8.h"
#include "kernels/q4_kx8.h"
#include "kernels/q5_0x8.h"
#include "kernels/q8_0x8.h"

#define LMPRESS_X8_VNNI_KERNELS                                                                                \
  void gemm4_q8_0x8(int64_t cols, const BlockQ8_0x8* g, const BlockQ8_0* a, int64_t stride, float* out,      \
                    int64_t out_stride);                                                                     \
  void gemm4_q4_0x8(int64_t cols, const BlockQ4_0x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride, \
                    float* out, int64_t out_stride);                                                         \
  void gemm4_q4_kx8(int64_t cols, const BlockQ4_Kx8* g, const BlockQ8_K* a, int64_t stride, float* out,      \
                    int64_t out_stride);                                                                     \
  void gemmn_q8_0x8(int64_t n, int64_t cols, const BlockQ8_0x8* g, const BlockQ8_0* a, int64_t stride,       \
                    float* out, int64_t out_stride);                                                         \
  void gemmn_q4_0x8(int64_t n, int64_t cols, const BlockQ4_0x8* g, const BlockQ8_0* a, const int32_t* sums,  \
                    int64_t stride, float* out, int64_t out_stride);                                         \
  void gemmn_q4_kx8(int64_t n, int64_t cols, const BlockQ4_Kx8* g, const BlockQ8_K* a, int64_t stride,       \
                    float* out, int64_t out_stride);                                                         \
  void gemm4_panel_x8(int64_t cols, const BlockPanelx8* g, const BlockQ8_0* a_u8, int64_t stride, float* out, \
                      int64_t out_stride);                                                                   \
  void gemmn_panel_x8(int64_t n, int64_t cols, const BlockPanelx8* g, const BlockQ8_0* a_u8, int64_t stride,  \
                      float* out, int64_t out_stride);                                                       \
  void gemm4_panel16_x8(int64_t cols, const BlockPanelx8* g, const BlockQ8_0* a_u8, int64_t stride, float* out, \
                        int64_t out_stride);                                                                 \
  void gemmn_panel16_x8(int64_t n, int64_t cols, const BlockPanelx8* g, const BlockQ8_0* a_u8, int64_t stride, \
                        float* out, int64_t out_stride);

namespace lmpress::simd_avxvnni {
// The CPU has AVX-VNNI (CPUID.(7,1):EAX[4]) besides what simd_avx2 needs.
bool available();
LMPRESS_X8_VNNI_KERNELS
}  // namespace lmpress::simd_avxvnni

namespace lmpress::simd_avx512vnni {
// The CPU has AVX512F, AVX512VL and AVX512-VNNI and the OS saves the AVX-512
// state, besides what simd_avx2 needs.
bool available();
LMPRESS_X8_VNNI_KERNELS
// gemm4_q4_kx8, gemm4_q4_0x8 and the Q4_1_x8 / Q5_0_x8 / Q5_1_x8 gemm4 on two consecutive groups (16 rows: g, then
// the group cols / block-width blocks later) in 512-bit registers.
void gemm4x2_q4_kx8(int64_t cols, const BlockQ4_Kx8* g, const BlockQ8_K* a, int64_t stride, float* out,
                    int64_t out_stride);
void gemm4x2_q4_0x8(int64_t cols, const BlockQ4_0x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                    float* out, int64_t out_stride);
void gemm4x2_q4_1x8(int64_t cols, const BlockQ4_1x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                    float* out, int64_t out_stride);
void gemm4x2_q5_0x8(int64_t cols, const BlockQ5_0x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                    float* out, int64_t out_stride);
void gemm4x2_q5_1x8(int64_t cols, const BlockQ5_1x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                    float* out, int64_t out_stride);
// gemm4_panel_x8 / gemm4_panel16_x8 on two consecutive panels (16 rows: g, then the panel cols / 32 blocks later).
void gemm4x2_panel_x8(int64_t cols, const BlockPanelx8* g, const BlockQ8_0* a_u8, int64_t stride, float* out,
                      int64_t out_stride);
void gemm4x2_panel16_x8(int64_t cols, const BlockPanelx8* g, const BlockQ8_0* a_u8, int64_t stride, float* out,
                        int64_t out_stride);
}  // namespace lmpress::simd_avx512vnni

// The same source on AVX2 alone with vpdpbusd as maddubs + madd
// (simd_avx2::dpbusd_small): exact only for weights of magnitude ≤ 64, so
// dispatch takes just its panel kernels, for the formats whose values stay
// within that (IntBlockFormat::max_abs) — the IQ codebook and ternary types,
// Q6_K, Q3_K, lmp2 — on CPUs without VNNI.
namespace lmpress::simd_avx2_small {
LMPRESS_X8_VNNI_KERNELS
}  // namespace lmpress::simd_avx2_small

// The same source with vpdpbusd's result computed by AVX2 instructions: for
// tests (qdot_pin_vnni(Vnni::emulated)), so the kernels' arithmetic is checked
// on every machine with AVX2, VNNI or not. Never chosen by dispatch.
namespace lmpress::simd_vnni_emulated {
LMPRESS_X8_VNNI_KERNELS
}  // namespace lmpress::simd_vnni_emulated

#undef LMPRESS_X8_VNNI_KERNELS
