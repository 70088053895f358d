// Shared check for the 8-row interleaved decode kernels built on Q8_0 weights
// (Q8_0_X8, Q8_0_2OF4_X8): each output of the reference and the dispatched
// gemv equals the plain Q8_0 · Q8_0 dot of its row (the scalar reference).
#pragma once
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/qdot.h"
#include "quant/blocks.h"

namespace lmpress::test {

// q8_rows: the matrix as plain Q8_0 rows; groups: the same repacked; the
// first n_groups groups are checked.
template <class Group, class Gemv>
void expect_group_dots(int64_t cols, const uint8_t* q8_rows, const Group* groups, int64_t n_groups,
                       const BlockQ8_0* a, Gemv ref, Gemv best) {
  const uint64_t rb = row_bytes(DType::Q8_0, uint64_t(cols));
  for (int64_t g = 0; g < n_groups; g++) {
    float r_out[8], b_out[8];
    ref(cols, groups + g * (cols / 32), a, r_out);
    best(cols, groups + g * (cols / 32), a, b_out);
    for (int r = 0; r < 8; r++) {
      const float want = qdot_reference(DType::Q8_0).fn(cols, q8_rows + size_t(8 * g + r) * rb, a);
      EXPECT_NEAR(r_out[r], want, 1e-4f * (std::fabs(want) + 1)) << "row " << 8 * g + r;
      EXPECT_NEAR(b_out[r], want, 1e-4f * (std::fabs(want) + 1)) << "row " << 8 * g + r;
    }
  }
}

}  // namespace lmpress::test
