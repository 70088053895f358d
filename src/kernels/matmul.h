// y = x · Wᵀ for a stored weight W[out, in] and a batch of activations
// x[n, in] (row-major), giving y[n, out]. The weight's dtype decides the path.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace lmpress {

void matmul(const Tensor& w, const float* x, int64_t n, float* y);

// Thread count for OpenMP regions and OpenBLAS: n, at most the cores (0 = all
// cores).
void set_num_threads(int n);
int num_threads();

}  // namespace lmpress
