#include "kernels/q8_0_2of4x8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/fp16.h"
#include "kernels/qdot.h"
#include "quant/quantize.h"
#include "gemv_check.h"
#include "test_util.h"
#include "kernels/sparse24.h"

namespace lmpress {
namespace {

// Random 2:4 Q8_0 rows: per group of 4, 0, 1 or 2 nonzero quants at random
// positions, including the extremes -128 and 127; and Q8_0 activations with
// one block saturated at ±127.
struct Case {
  int64_t rows, cols;
  std::vector<uint8_t> w, a;
};

Case make_case(int64_t rows, int64_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  Case c{rows, cols, std::vector<uint8_t>(size_t(rows * cols / 32) * sizeof(BlockQ8_0)),
         std::vector<uint8_t>(row_bytes(DType::Q8_0, uint64_t(cols)))};
  auto* b = reinterpret_cast<BlockQ8_0*>(c.w.data());
  for (int64_t i = 0; i < rows * cols / 32; i++) {
    b[i].d = f32_to_f16(0.01f + float(rng() % 100) / 1000);
    std::memset(b[i].qs, 0, 32);
    for (int g = 0; g < 32; g += 4) {
      const int keep = int(rng() % 3), p = int(rng() % 4), q = int(rng() % 4);
      if (keep >= 1) b[i].qs[g + p] = int8_t(int(rng() % 255) - 127);
      if (keep == 2) b[i].qs[g + q] = rng() % 8 ? int8_t(int(rng() % 255) - 127) : int8_t(-128);
    }
  }
  std::normal_distribution<float> nd;
  std::vector<float> v(static_cast<size_t>(cols));
  for (auto& x : v) x = nd(rng) * 3;
  v[0] = 40;
  quantize_row(DType::Q8_0, v.data(), cols, c.a.data());
  return c;
}

Tensor q8_0_tensor(const Case& c) { return test::borrowed_matrix(DType::Q8_0, c.rows, c.cols, c.w); }

// Repacked and unpacked, the Q8_0 bytes return exactly; to_f32 reads the same
// values from either layout, whole or one row from inside a group; the layout
// takes 22 bytes per 32 weights.
TEST(Q8_0_2of4x8, RepackRoundTripsExactly) {
  for (int64_t cols : {32, 96, 2080}) {
    const Case c = make_case(24, cols, unsigned(cols));
    const Tensor plain = q8_0_tensor(c);
    ASSERT_TRUE(is_2of4_q8_0(reinterpret_cast<const BlockQ8_0*>(c.w.data()), 24 * cols / 32));
    const Tensor x8 = repack_q8_0_2of4x8(plain);
    EXPECT_EQ(x8.dtype, DType::Q8_0_2OF4_X8);
    EXPECT_EQ(x8.nbytes, uint64_t(24 * cols / 32 * 22));
    test::expect_lossless_repack(plain, x8, unpack_q8_0_2of4x8(x8));
  }
  EXPECT_ANY_THROW(repack_q8_0_2of4x8(q8_0_tensor(make_case(12, 64, 1))));  // rows not a multiple of 8
  Case dense = make_case(8, 64, 2);
  reinterpret_cast<BlockQ8_0*>(dense.w.data())[3].qs[4] = 1;  // group 1 of block 3: make it 3 nonzeros
  reinterpret_cast<BlockQ8_0*>(dense.w.data())[3].qs[5] = 2;
  reinterpret_cast<BlockQ8_0*>(dense.w.data())[3].qs[6] = 3;
  EXPECT_ANY_THROW(repack_q8_0_2of4x8(q8_0_tensor(dense)));
}

// The layout by hand: row 5 keeps columns 1 and 3 in group 0 and column 6 in
// group 1 (with a zero filling the second slot at column 4).
TEST(Q8_0_2of4x8, LayoutByHand) {
  std::vector<BlockQ8_0> rows(8);
  for (auto& b : rows) {
    b.d = f32_to_f16(1.0f);
    std::memset(b.qs, 0, 32);
  }
  rows[5].qs[1] = 7;
  rows[5].qs[3] = -9;
  rows[5].qs[6] = 11;
  BlockQ8_0_2of4x8 g;
  ASSERT_TRUE(pack_q8_0_2of4x8(rows.data(), 32, &g));
  EXPECT_EQ(g.v[0][20], 7);
  EXPECT_EQ(g.v[0][21], -9);
  EXPECT_EQ(g.v[0][22], 0);
  EXPECT_EQ(g.v[0][23], 11);
  // Bytes 20..23 are byte b = 4..7 of 64-bit lane q = 2: bit pair 2 of bytes 4..7.
  EXPECT_EQ(g.pos[0] >> 36 & 3, 1u);
  EXPECT_EQ(g.pos[0] >> 44 & 3, 3u);
  EXPECT_EQ(g.pos[0] >> 52 & 3, 0u);
  EXPECT_EQ(g.pos[0] >> 60 & 3, 2u);
}

// Each of the 8 outputs equals the plain Q8_0 · Q8_0 dot of its row (the
// scalar reference kernel), for the reference gemv and the dispatched one, with
// SIMD on and forced off.
TEST(Q8_0_2of4x8, GemvMatchesRowDots) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t cols) {
    const Case c = make_case(16, cols, unsigned(cols) + 5);
    const Tensor x8 = repack_q8_0_2of4x8(q8_0_tensor(c));
    test::expect_group_dots(DType::Q8_0, cols, c.w.data(), reinterpret_cast<const BlockQ8_0_2of4x8*>(x8.data), 2,
                            reinterpret_cast<const BlockQ8_0*>(c.a.data()), gemv_q8_0_2of4x8_ref, gemv_q8_0_2of4x8);
  });
}

}  // namespace
}  // namespace lmpress
