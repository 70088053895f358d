// Prompt batches against weights that have no int8 kernel (F16, BF16, F32 and
// the block formats without one), BLIS style: the activations are packed once
// per matmul into panels of 6 tokens (12 with AVX-512 and NEON), each group of
// two vectors of weight rows (16 rows with AVX2, 32 with AVX-512, 8 with NEON)
// is converted to f32 straight into a k-major 32 KB panel, and a register-tile
// microkernel (kernels/gemm_microkernel.h: 6x16 with AVX2, 12x32 with AVX-512,
// 12x8 with NEON) runs over every token panel. The weight is read and converted exactly once, nothing is
// copied twice (the earlier path converted 256-row tiles to f32 and handed
// them to OpenBLAS, which packed both operands again per tile).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace lmpress {

// Whether gemm_packed takes weights of type t: types whose element ranges on
// kc boundaries convert with to_f32 (not the row-indexed or interleaved ones).
// It runs on every CPU: Highway's microkernels where the CPU has AVX2 or NEON,
// plain C++ ones otherwise (and under LMPRESS_ISA=scalar). Each row of y is
// summed in one order whatever n and whatever the other rows: batch
// invariance rests on it.
bool gemm_packed_supports(DType t);
// y[n, out] = x[n, in] · W[out, in]ᵀ (row-major); multi-threaded (OpenMP).
void gemm_packed(const Tensor& w, const float* x, int64_t n, float* y);
// The same with token panels of `panel` (kPanelSmall or kPanelLarge; 0: the
// one that suits the target), so tests run the AVX-512 panel size anywhere.
void gemm_packed_with_panel(const Tensor& w, const float* x, int64_t n, float* y, int panel);
// The same with y's rows `ldy` floats apart (a column slice of a wider y).
void gemm_packed_to(const Tensor& w, const float* x, int64_t n, float* y, int64_t ldy, int panel = 0);
// Highway's name of the target whose microkernels run ("AVX3", "AVX2", "NEON"; "portable" for the plain C++ kernels).
const char* gemm_packed_target();

}  // namespace lmpress
