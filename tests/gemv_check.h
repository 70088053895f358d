// Shared checks for the 8-row interleaved layouts (Q4_0_X8, Q8_0_X8,
// Q8_0_2OF4_X8): lossless repacking, and gemv kernels against the plain
// row dot of the scalar reference.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/tensor.h"

#include "kernels/qdot.h"
#include "quant/blocks.h"

namespace lmpress::test {

// A [rows, cols] matrix of type t over `bytes`, which the caller keeps alive.
inline Tensor borrowed_matrix(DType t, int64_t rows, int64_t cols, const std::vector<uint8_t>& bytes) {
  Tensor m;
  m.name = "w";
  m.dtype = t;
  m.shape = {rows, cols};
  m.data = const_cast<uint8_t*>(bytes.data());
  m.nbytes = bytes.size();
  return m;
}

// x8, repacked from plain, unpacks to plain's bytes, and to_f32 reads the same
// values from it, whole and for row 13 (inside the second group).
inline void expect_lossless_repack(const Tensor& plain, const Tensor& x8, const std::vector<uint8_t>& unpacked) {
  EXPECT_EQ(unpacked, std::vector<uint8_t>(plain.data, plain.data + plain.nbytes));
  const auto all = to_f32(plain);
  EXPECT_EQ(to_f32(x8), all);
  const int64_t cols = plain.cols();
  std::vector<float> row(static_cast<size_t>(cols));
  to_f32(x8, 13 * cols, cols, row.data());
  EXPECT_EQ(row, std::vector<float>(all.begin() + 13 * cols, all.begin() + 14 * cols));
}

// Each output of the reference and the dispatched gemv of an interleaved
// layout built on Q8_0 weights equals the plain Q8_0 · Q8_0 dot of its row.

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
