// Dot products of quantized weight rows with int8-quantized activations, as
// llama.cpp's ggml_vec_dot_*_q8_* compute them: the activation row is
// quantized once per matmul (to ggml's Q8_0 blocks for the 32-element
// formats, Q8_K for the k-quants), each block's integer dot product is exact,
// and the blocks' scales weight it. A scalar reference per format, and AVX2
// (x86-64) or NEON (aarch64, kernels/qdot_neon.h) versions chosen at run time
// when the CPU and the OS support them (never assumed at build time).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/dtype.h"
#include "kernels/blocks.h"

namespace lmpress {

// 32 int8 values, the first 16 under scale d[0], the last 16 under d[1] (equal
// where the format has one scale per 32): a decoded chunk of weights (kernels/int_panels.h).
struct ChunkQ8 {
  float d[2];
  int8_t qs[32];
};

// ggml's block_q8_K: activations for the k-quant dots.
struct BlockQ8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];  // sums of each 16 qs
};

// I8_TOKEN: one f32 scale for the row, then its values as unsigned bytes
// (kernels/i8x8.h, quantize_i8_token). Q8_K_HADAMARD: Q8_K blocks of the row
// rotated as lmp2 stores its weights (kernels/lmp2.h).
enum class ActFormat { Q8_0, Q8_K, I8_TOKEN, Q8_K_HADAMARD };
// Bytes of the quantized activations of an n-element row.
size_t activation_bytes(ActFormat f, int64_t n);
// The unit kernels step activations in: a Q8_0 or Q8_K block, or a byte.
size_t activation_unit_bytes(ActFormat f);
// x[n] (n a multiple of the block) into ggml's Q8_0 (quantize_row_q8_0) or
// Q8_K (quantize_row_q8_K_ref) blocks, or I8_TOKEN.
void quantize_activations(ActFormat f, const float* x, int64_t n, void* out);

// Σ over n elements of weight row w times the quantized activations a.
using QDotFn = float (*)(int64_t n, const void* w, const void* a);
// The same for 1..4 tokens at once (activations act_bytes apart), the row
// unpacked once for all: out[t] equals fn(n, w, a + t·act_bytes) bit for bit.
using QDotMultiFn = void (*)(int64_t n, const void* w, const void* a, size_t act_bytes, int64_t tokens, float* out);
struct QDotKernel {
  ActFormat act = ActFormat::Q8_0;
  QDotFn fn = nullptr;         // null: no int8 kernel for the type
  QDotMultiFn multi = nullptr;  // null: one fn call per token
};

// The scalar reference for t (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K..Q6_K, the
// kernels/int_blocks.h types; null for other types).
QDotKernel qdot_reference(DType t);
// The fastest implementation for this CPU.
QDotKernel qdot(DType t);
// Whether qdot() and the other dispatched kernels use their SIMD versions
// (AVX2 on x86-64, NEON on aarch64).
bool qdot_simd_active();
// The vpdpbusd encodings the 4-token Q4_0_x8 / Q8_0_x8 / Q4_K_x8 kernels have
// (kernels/x8_vnni.h): none means AVX2's maddubs; emulated runs the VNNI
// kernels' source with vpdpbusd done by AVX2 instructions (tests only: never
// chosen unless pinned).
enum class Vnni { none, avx, avx512, emulated };
// The one they use: AVX-VNNI where the CPU has it, else AVX512-VNNI, else
// none (also when SIMD is off).
Vnni qdot_vnni();
// Whether the CPU and OS have v (none: always; emulated: with AVX2).
bool qdot_vnni_available(Vnni v);
// The best instruction set the kernels use: "avx-vnni", "avx512-vnni",
// "vnni-emulated", "avx2", "neon-dotprod", "neon" or "scalar".
const char* qdot_target();
// Tests: force the scalar path (false) or the best available (true).
void qdot_use_simd(bool enabled);
// Tests: use v (which must be available) until called again; nullopt goes
// back to the best available.
void qdot_pin_vnni(std::optional<Vnni> v);

// Float weights (F16, BF16) against f32 activations: the weight converted
// in registers, products summed in f32.
using FDotFn = float (*)(int64_t n, const void* w, const float* x);
FDotFn fdot_reference(DType t);  // F16, BF16, F16_2OF4 or F16_BITMAP (sparse F16), else null
FDotFn fdot(DType t);

namespace simd_avx2 {
bool available();
float dot_f16_f32(int64_t n, const void* w, const float* x);
float dot_bf16_f32(int64_t n, const void* w, const float* x);  // the CPU has AVX2 and FMA and the OS saves YMM state
float dot_q4_0_q8_0(int64_t n, const void* w, const void* a);
float dot_q8_0_q8_0(int64_t n, const void* w, const void* a);
float dot_q5_0_q8_0(int64_t n, const void* w, const void* a);
float dot_q4_1_q8_0(int64_t n, const void* w, const void* a);
float dot_q5_1_q8_0(int64_t n, const void* w, const void* a);
float dot_iq4_nl_q8_0(int64_t n, const void* w, const void* a);
float dot_q2_K_q8_K(int64_t n, const void* w, const void* a);
float dot_q3_K_q8_K(int64_t n, const void* w, const void* a);
float dot_q4_K_q8_K(int64_t n, const void* w, const void* a);
float dot_q5_K_q8_K(int64_t n, const void* w, const void* a);
float dot_q6_K_q8_K(int64_t n, const void* w, const void* a);
void dot_q6_K_q8_K_multi(int64_t n, const void* w, const void* a, size_t act_bytes, int64_t tokens, float* out);
// The integer-unpacked types (kernels/int_blocks.h; int_blocks_avx2.cc).
float dot_iq4_xs_q8_K(int64_t n, const void* w, const void* a);
float dot_iq3_xxs_q8_K(int64_t n, const void* w, const void* a);
float dot_iq3_s_q8_K(int64_t n, const void* w, const void* a);
float dot_iq2_xxs_q8_K(int64_t n, const void* w, const void* a);
float dot_iq2_xs_q8_K(int64_t n, const void* w, const void* a);
float dot_iq2_s_q8_K(int64_t n, const void* w, const void* a);
float dot_iq1_s_q8_K(int64_t n, const void* w, const void* a);
float dot_iq1_m_q8_K(int64_t n, const void* w, const void* a);
float dot_tq1_0_q8_K(int64_t n, const void* w, const void* a);
float dot_tq2_0_q8_K(int64_t n, const void* w, const void* a);
float dot_mxfp4_q8_0(int64_t n, const void* w, const void* a);
float dot_lmp2_q8_K(int64_t n, const void* w, const void* a);
// nblocks 256-value blocks of an integer-unpacked type as 32-value chunks of
// int8 values under f32 scales, exactly as kernels/int_panels.cc's scalar
// decoder makes them; null for types without one (TQ1_0, MXFP4).
using PanelDecodeFn = void (*)(const uint8_t* blocks, int64_t nblocks, ChunkQ8* out);
PanelDecodeFn panel_decoder(DType t);
void quantize_q8_0(const float* x, int64_t n, BlockQ8_0* y);
}  // namespace simd_avx2

// Dots on AVX-512 (int_blocks_avx512.cc: F/BW/VL/DQ, with VNNI, or with
// VBMI's byte permutes): chosen where cpu_isa() has those, each equal to its
// AVX2 dot bit for bit.
namespace simd_avx512 {
float dot_iq2_xs_q8_K(int64_t n, const void* w, const void* a);
}  // namespace simd_avx512
namespace simd_avx512vnni {
float dot_iq4_xs_q8_K(int64_t n, const void* w, const void* a);
}  // namespace simd_avx512vnni
namespace simd_avx512_vbmi {
float dot_iq3_xxs_q8_K(int64_t n, const void* w, const void* a);
}  // namespace simd_avx512_vbmi

}  // namespace lmpress
