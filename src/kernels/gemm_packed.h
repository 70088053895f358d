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

// Whether gemm_packed can run here (AVX2+FMA+F16C, or NEON) for weights of type t:
// types whose element ranges on kc boundaries convert with to_f32.
bool gemm_packed_supports(DType t);
// y[n, out] = x[n, in] · W[out, in]ᵀ (row-major); multi-threaded (OpenMP).
void gemm_packed(const Tensor& w, const float* x, int64_t n, float* y);
// The same with token panels of `panel` (kPanelSmall or kPanelLarge; 0: the
// one that suits the target), so tests run the AVX-512 panel size anywhere.
void gemm_packed_with_panel(const Tensor& w, const float* x, int64_t n, float* y, int panel);
// Highway's name of the target whose microkernels run ("AVX3", "AVX2", "NEON").
const char* gemm_packed_target();

}  // namespace lmpress
