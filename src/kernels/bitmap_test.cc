#include "kernels/bitmap.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "core/fp16.h"
#include "core/tensor.h"
#include "kernels/qdot.h"
#include "kernels/to_f32.h"

namespace lmpress {
namespace {

// A random f16 matrix where each weight is kept with probability `density` (some zeros are -0.0).
std::vector<uint16_t> sparse_matrix(int64_t rows, int64_t cols, double density, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<double> u;
  std::vector<uint16_t> w(static_cast<size_t>(rows * cols));
  for (auto& h : w) h = u(rng) < density ? f32_to_f16(nd(rng)) : (rng() % 4 ? uint16_t(0) : uint16_t(0x8000));
  return w;
}

Tensor bitmap_tensor(const std::vector<uint16_t>& w, int64_t rows, int64_t cols) {
  auto buf = std::make_shared<std::vector<uint8_t>>(pack_bitmap_matrix(w.data(), rows, cols));
  Tensor t;
  t.name = "w";
  t.dtype = DType::F16_BITMAP;
  t.shape = {rows, cols};
  t.data = buf->data();
  t.nbytes = buf->size();
  t.owner = buf;
  return t;
}

// The layout by hand: 16 weights, kept at 1, 3 (byte 0) and 8, 15 (byte 1).
TEST(Bitmap, LayoutByHand) {
  std::vector<uint16_t> w(16, 0);
  w[1] = f32_to_f16(1.5f);
  w[3] = f32_to_f16(-2.0f);
  w[8] = f32_to_f16(0.25f);
  w[15] = f32_to_f16(4.0f);
  w[5] = 0x8000;  // -0.0 is not kept
  ASSERT_EQ(bitmap_row_bytes(w.data(), 16), 2u + 4 * 2);
  std::vector<uint8_t> row(10 + kBitmapTailPad);
  EXPECT_EQ(pack_bitmap_f16(w.data(), 16, row.data()), row.data() + 10);
  EXPECT_EQ(row[0], 0b00001010);
  EXPECT_EQ(row[1], 0b10000001);
  const uint16_t want[4] = {w[1], w[3], w[8], w[15]};
  EXPECT_EQ(std::memcmp(row.data() + 2, want, 8), 0);
  std::vector<float> x(16);
  for (int i = 0; i < 16; i++) x[size_t(i)] = float(i + 1);
  const float dot = 1.5f * 2 - 2.0f * 4 + 0.25f * 9 + 4.0f * 16;
  EXPECT_EQ(dot_bitmap_f16_ref(16, row.data(), x.data()), dot);
  EXPECT_EQ(fdot(DType::F16_BITMAP)(16, row.data(), x.data()), dot);  // the SIMD kernel where there is one
}

// Round trip and dot products, scalar and SIMD, against a double-precision
// dense dot, on rows whose length is not a multiple of the 64-weight SIMD
// step and at densities from empty to full.
TEST(Bitmap, RoundTripAndDotsMatchDense) {
  std::mt19937 rng(3);
  for (int64_t cols : {8, 24, 64, 72, 520, 4096})
    for (double density : {0.0, 0.05, 0.3, 0.5, 1.0}) {
      const int64_t rows = 5;
      const auto w = sparse_matrix(rows, cols, density, rng);
      const Tensor t = bitmap_tensor(w, rows, cols);
      std::vector<float> all(static_cast<size_t>(rows * cols));
      to_f32(t, 0, rows * cols, all.data());
      for (size_t i = 0; i < w.size(); i++) ASSERT_EQ(all[i], f16_to_f32(w[i])) << cols << " " << density << " " << i;
      std::normal_distribution<float> nd;
      std::vector<float> x(static_cast<size_t>(cols));
      for (auto& v : x) v = nd(rng);
      const RowAddress row(t);
      for (int64_t r = 0; r < rows; r++) {
        double want = 0, mag = 1e-6;
        for (int64_t c = 0; c < cols; c++) {
          want += double(f16_to_f32(w[size_t(r * cols + c)])) * x[size_t(c)];
          mag += std::fabs(double(f16_to_f32(w[size_t(r * cols + c)])) * x[size_t(c)]);
        }
        EXPECT_NEAR(dot_bitmap_f16_ref(cols, row(r), x.data()), want, 1e-5 * mag);
        EXPECT_NEAR(fdot(DType::F16_BITMAP)(cols, row(r), x.data()), want, 1e-5 * mag) << qdot_target();
      }
    }
}

TEST(Bitmap, RowIndexedTensorsRejectFixedStridesAndPartialRows) {
  std::mt19937 rng(4);
  const Tensor t = bitmap_tensor(sparse_matrix(3, 16, 0.3, rng), 3, 16);
  std::vector<float> y(16);
  EXPECT_THROW(to_f32(t, 8, 16, y.data()), Error);  // not on a row boundary
  EXPECT_THROW(row_bytes(DType::F16_BITMAP, 16), Error);
  EXPECT_FALSE(dtype_from_name("f16_bitmap").has_value());  // internal: never from a file or the command line
  const auto w = sparse_matrix(1, 12, 0.3, rng);
  EXPECT_THROW(pack_bitmap_matrix(w.data(), 1, 12), Error);  // columns not a multiple of 8
}

}  // namespace
}  // namespace lmpress
