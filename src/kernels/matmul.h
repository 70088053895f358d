// y = x · Wᵀ for a stored weight W[out, in] and a batch of activations
// x[n, in] (row-major), giving y[n, out]. The weight's dtype decides the path.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace lmpress {

void matmul(const Tensor& w, const float* x, int64_t n, float* y);
// From this many tokens matmul takes its batched kernels (the packed GEMM, the
// interleaved layouts' 4-token kernels); below, one-token kernels per row.
constexpr int64_t kMatmulBatchMin = 4;
// The same with every row of y bit for bit what matmul(w, x_t, 1) gives for
// its token alone: the one-token kernels (int8 and f16 row dots, the
// interleaved layouts' kernels), still one pass over the weight for all n
// tokens; f32 weights take one sgemv per token. matmul's batched kernels for
// n >= 4 (the packed f32 GEMM) sum in another order or, for int8 types not
// repacked, on f32 rather than quantized activations, so a batched engine
// that must give a decoding token what a lone decoding step gives uses this.
void matmul_decode(const Tensor& w, const float* x, int64_t n, float* y);
// Whether matmul's rows for any n already equal its one-token rows: the
// interleaved layouts with a 4-token kernel (integer dots on per-token
// quantized activations, the same float epilogue as their one-token kernel).
bool matmul_rows_batch_invariant(const Tensor& w);

// Thread count for OpenMP regions and OpenBLAS: n, at most the cores (0 = all
// cores).
void set_num_threads(int n);
int num_threads();

// One thread for OpenMP and OpenBLAS while it lives, the count before after:
// for LAPACK's eigen and SVD solvers, whose many small parallel BLAS calls
// spend more time in OpenMP barriers than in arithmetic on small matrices
// (and far more on a busy machine).
class SingleThreadScope {
 public:
  SingleThreadScope() : saved_(num_threads()) { set_num_threads(1); }
  ~SingleThreadScope() { set_num_threads(saved_); }
  SingleThreadScope(const SingleThreadScope&) = delete;
  SingleThreadScope& operator=(const SingleThreadScope&) = delete;

 private:
  int saved_;
};

}  // namespace lmpress
