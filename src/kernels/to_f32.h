// Any tensor's values as f32: the plain float types widened, block and
// interleaved formats through their row dequantizers.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace lmpress {

std::vector<float> to_f32(const Tensor& t);
// Converts `n` elements starting at element `offset` of t into dst (whole rows
// for row-indexed and row-interleaved types; whole blocks for block types).
void to_f32(const Tensor& t, int64_t offset, int64_t n, float* dst);

}  // namespace lmpress
