// Prompt batches against weights that have no int8 kernel (F16, BF16, F32 and
// the block formats without one), BLIS style: the activations are packed once
// per matmul into panels of 6 tokens, each 16-row group of the weight is
// converted to f32 straight into a k-major panel of kc columns that stays in
// L1, and a 6x16 register-tile microkernel (12 accumulators, 2 weight loads and
// 6 broadcasts per k) runs over every token panel. The weight is read and
// converted exactly once, nothing is copied twice (the earlier path converted
// 256-row tiles to f32 and handed them to OpenBLAS, which packed both operands
// again per tile).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace lmpress {

// Whether gemm_packed can run here (AVX2+FMA+F16C) for weights of type t:
// types whose element ranges on kc boundaries convert with to_f32.
bool gemm_packed_supports(DType t);
// y[n, out] = x[n, in] · W[out, in]ᵀ (row-major); multi-threaded (OpenMP).
void gemm_packed(const Tensor& w, const float* x, int64_t n, float* y);

}  // namespace lmpress
