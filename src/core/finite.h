// The one scan for values no result may be computed from: NaN, Inf, or
// (for a narrower target such as f16) a magnitude above `limit`.
#pragma once
#include <cstdint>
#include <limits>

namespace lmpress {

// Index of the first x[i] that is NaN or has |x[i]| > limit, or -1. Parallel
// over the elements; the lowest bad index wins.
int64_t first_out_of_range(const float* x, int64_t n, float limit = std::numeric_limits<float>::max());

}  // namespace lmpress
