// Shared checks for the 8-row interleaved layouts (Q4_0_X8, Q8_0_X8,
// Q8_0_2OF4_X8, Q4_K_X8): lossless repacking, gemv kernels against the plain
// row dot of the scalar reference, 4-token kernels against the gemv.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "core/tensor.h"

#include "kernels/qdot.h"
#include "kernels/blocks.h"
#include "kernels/to_f32.h"
#include "quant/quantize.h"

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

// Random rows of a plain type t (32-value blocks) and Q8_0 activations with
// one block reaching ±127: the interleaved layouts' test matrices. `extremes`
// may then set weight blocks to the type's limits (it gets the first row's bytes).
struct X8Case {
  int64_t rows, cols;
  std::vector<uint8_t> w, a;  // plain rows; one token's activations
};
inline X8Case random_x8_case(DType t, int64_t rows, int64_t cols, unsigned seed,
                             const std::function<void(uint8_t*)>& extremes) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  const uint64_t rb = row_bytes(t, uint64_t(cols));
  X8Case c{rows, cols, std::vector<uint8_t>(size_t(rows) * rb), std::vector<uint8_t>(row_bytes(DType::Q8_0, uint64_t(cols)))};
  std::vector<float> v(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; r++) {
    for (auto& x : v) x = nd(rng);
    quantize_row(t, v.data(), cols, c.w.data() + size_t(r) * rb);
  }
  extremes(c.w.data());
  for (auto& x : v) x = nd(rng) * 3;
  v[0] = 40;  // one activation block saturates at ±127
  quantize_row(DType::Q8_0, v.data(), cols, c.a.data());
  return c;
}
// The activations of 4 tokens, cols / 32 blocks each, from cases seeded seed + t.
inline std::vector<BlockQ8_0> four_token_acts(DType t, int64_t cols, unsigned seed) {
  std::vector<BlockQ8_0> acts;
  for (unsigned k = 0; k < 4; k++) {
    const X8Case c = random_x8_case(t, 8, cols, seed + k, [](uint8_t*) {});
    const auto* a = reinterpret_cast<const BlockQ8_0*>(c.a.data());
    acts.insert(acts.end(), a, a + cols / 32);
  }
  return acts;
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
// layout equals the scalar reference dot (qdot_reference) of its plain row.

// rows: the matrix as plain rows of type `plain`; groups: the same repacked;
// a: the activations the plain type's dot takes; the first n_groups groups
// are checked.
template <class Group, class Act, class Gemv>
void expect_group_dots(DType plain, int64_t cols, const uint8_t* rows, const Group* groups, int64_t n_groups,
                       const Act* a, Gemv ref, Gemv best) {
  const uint64_t rb = row_bytes(plain, uint64_t(cols));
  const int64_t nb = cols / int64_t(dtype_info(plain).block_elems);  // Groups per group of rows
  for (int64_t g = 0; g < n_groups; g++) {
    float r_out[8], b_out[8];
    ref(cols, groups + g * nb, a, r_out);
    best(cols, groups + g * nb, a, b_out);
    for (int r = 0; r < 8; r++) {
      const float want = qdot_reference(plain).fn(cols, rows + size_t(8 * g + r) * rb, a);
      EXPECT_NEAR(r_out[r], want, 1e-4f * (std::fabs(want) + 1)) << "row " << 8 * g + r;
      EXPECT_NEAR(b_out[r], want, 1e-4f * (std::fabs(want) + 1)) << "row " << 8 * g + r;
    }
  }
}

// A 4-token kernel: gemm4(out, out_stride) writes the 8 rows of each of 4
// tokens; gemv(t, out) is the one-token reference for token t. Each token's
// outputs match, and the output stride is kept (rows 8 and 9 of a stride of
// 10 stay untouched).
template <class Gemm4, class Gemv>
void expect_gemm4_matches_gemv(Gemm4 gemm4, Gemv gemv) {
  std::vector<float> got(4 * 10, -1.0f);
  gemm4(got.data(), int64_t(10));
  for (int t = 0; t < 4; t++) {
    float want[8];
    gemv(t, want);
    for (int r = 0; r < 8; r++) EXPECT_NEAR(got[size_t(10 * t + r)], want[r], 1e-4f * (std::fabs(want[r]) + 1));
    EXPECT_EQ(got[size_t(10 * t + 8)], -1.0f);
    EXPECT_EQ(got[size_t(10 * t + 9)], -1.0f);
  }
}

}  // namespace lmpress::test
