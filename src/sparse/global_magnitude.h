// Global magnitude pruning: one threshold on |w| across many matrices instead
// of the same sparsity in each (Han et al. 2015's global variant; layers whose
// weights are small lose more). The threshold is found exactly without
// holding all weights at once: a histogram over the upper 16 bits of |w|'s
// float bits (monotonic in |w| for non-negative floats), then one over the
// lower 16 bits inside the bin the threshold falls in, then counts.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace lmpress {

// How many weights to zero in each of n matrices so that together exactly
// llround(sparsity · total) are zeroed and no zeroed |w| exceeds a kept one
// (ties at the threshold go to the earlier matrices). `load(i)` returns
// matrix i's weights; it is called three times per matrix.
std::vector<int64_t> global_magnitude_zeros(int64_t n, const std::function<std::vector<float>(int64_t)>& load,
                                            double sparsity);

}  // namespace lmpress
