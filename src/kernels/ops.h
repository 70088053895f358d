// Element-wise and normalization operations of the transformer block.
// Scalar reference code; vectorized versions are checked against these.
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace lmpress {

// out = x / sqrt(mean(x²) + eps) * w   (n elements)
void rmsnorm(const float* x, const float* w, int64_t n, float eps, float* out);
// Rotates `n_heads` heads of `head_dim` in place for position `pos`; only the
// first inv_freqs.size()*2 dimensions of each head are rotated.
void rope(float* v, int64_t n_heads, int64_t head_dim, int64_t pos, const std::vector<float>& inv_freqs,
          RopeLayout layout);
// gate[i] = silu(gate[i]) * up[i]
void silu_mul(float* gate, const float* up, int64_t n);
// In-place softmax over n values.
void softmax(float* x, int64_t n);

}  // namespace lmpress
