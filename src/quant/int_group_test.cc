#include "quant/int_group.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "core/fp16.h"

namespace lmpress {
namespace {

TEST(IntGroup, ParsesTypeNames) {
  auto s = parse_int_group_type("int4-g128");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->bits, 4);
  EXPECT_EQ(s->group, 128);
  EXPECT_TRUE(s->sym);
  s = parse_int_group_type("INT3-g64-asym");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->bits, 3);
  EXPECT_FALSE(s->sym);
  EXPECT_EQ(s->name(), "int3-g64-asym");
  s = parse_int_group_type("int8-ch");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->group, -1);
  EXPECT_EQ(s->group_size(288), 288);
  EXPECT_FALSE(parse_int_group_type("q4_k_m"));
  EXPECT_FALSE(parse_int_group_type("int4"));
  EXPECT_THROW(parse_int_group_type("int5-g128"), Error);
  EXPECT_THROW(parse_int_group_type("int4-g4"), Error);
  EXPECT_THROW(parse_int_group_type("int4-g99999999999"), Error);
  EXPECT_THROW(parse_int_group_type("int99999999999-g32"), Error);  // past int: no std::out_of_range
}

TEST(IntGroup, RejectsShapesThatDoNotFit) {
  const IntGroupSpec s = *parse_int_group_type("int4-g128");
  EXPECT_THROW(s.check_shape("w", 64, 288), std::exception);  // 288 is not a multiple of 128
  EXPECT_NO_THROW(s.check_shape("w", 64, 256));
  const IntGroupSpec s3 = *parse_int_group_type("int3-ch");
  EXPECT_THROW(s3.check_shape("w", 48, 64), std::exception);  // 3-bit packing needs multiples of 32
  EXPECT_NO_THROW(s3.check_shape("w", 96, 288));
}

// AutoGPTQ's find_params, by hand: x = {-1, 0.5, 2, 0.25}.
TEST(IntGroup, MinMaxGridByHand) {
  const float x[4] = {-1.0f, 0.5f, 2.0f, 0.25f};
  IntGroupSpec asym = *parse_int_group_type("int4-g32-asym");
  GroupGrid g = int_group_grid(asym, x, 4);
  EXPECT_FLOAT_EQ(g.scale, f16_to_f32(f32_to_f16(3.0f / 15)));
  EXPECT_EQ(g.zero, 5);
  EXPECT_EQ(g.level(2.0f, 15), 15);
  EXPECT_EQ(g.level(-1.0f, 15), 0);
  IntGroupSpec sym = *parse_int_group_type("int4-g32");
  g = int_group_grid(sym, x, 4);
  EXPECT_FLOAT_EQ(g.scale, f16_to_f32(f32_to_f16(4.0f / 15)));
  EXPECT_EQ(g.zero, 8);
  EXPECT_EQ(g.level(2.0f, 15), 15);  // 2 / (4/15) = 7.5 -> 8 + 8 = 16, clamped
  // No negative values: zero 1 (zero − 1 must be storable), maximum still reached.
  const float pos[2] = {0.5f, 1.4f};
  g = int_group_grid(asym, pos, 2);
  EXPECT_EQ(g.zero, 1);
  EXPECT_NEAR(g.scale * float(g.level(1.4f, 15) - g.zero), 1.4f, 1e-3f);
}

// The packing as AutoGPTQ's pack() writes it for 3 bits: 32 values in 3 words,
// 10 per word with the 11th and 22nd straddling word boundaries.
void autogptq_pack3(const uint32_t* v, uint32_t* w) {
  int i = 0;
  w[0] = w[1] = w[2] = 0;
  for (int j = i; j < i + 10; j++) w[0] |= v[j] << (3 * (j - i));
  i += 10;
  w[0] |= v[i] << 30;
  w[1] |= (v[i] >> 2) & 1;
  i += 1;
  for (int j = i; j < i + 10; j++) w[1] |= v[j] << (3 * (j - i) + 1);
  i += 10;
  w[1] |= v[i] << 31;
  w[2] |= (v[i] >> 1) & 0x3;
  i += 1;
  for (int j = i; j < i + 10; j++) w[2] |= v[j] << (3 * (j - i) + 2);
}

TEST(IntGroup, BitPackingMatchesAutoGptq) {
  uint32_t v[32], got[3], want[3], back[32];
  std::mt19937 rng(5);
  for (int trial = 0; trial < 20; trial++) {
    for (auto& x : v) x = rng() % 8;
    pack_bits(v, 32, 3, got);
    autogptq_pack3(v, want);
    EXPECT_EQ(got[0], want[0]);
    EXPECT_EQ(got[1], want[1]);
    EXPECT_EQ(got[2], want[2]);
    unpack_bits(got, 32, 3, back);
    for (int i = 0; i < 32; i++) EXPECT_EQ(back[i], v[i]);
  }
  const uint32_t nib[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  uint32_t w4;
  pack_bits(nib, 8, 4, &w4);
  EXPECT_EQ(w4, 0x76543210u);
  const uint32_t two[16] = {3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  uint32_t w2;
  pack_bits(two, 16, 2, &w2);
  EXPECT_EQ(w2, 0x40000000u | 0x1Bu);
}

// pack_gptq lays the tensors out as AutoGPTQ does, and unpack_gptq inverts it,
// also with an act-order g_idx.
TEST(IntGroup, GptqTensorsRoundTrip) {
  const int64_t rows = 64, cols = 96;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> W(size_t(rows * cols));
  for (auto& w : W) w = nd(rng);
  for (const char* type : {"int4-g32", "int3-g32-asym", "int2-ch", "int8-g32-asym"}) {
    SCOPED_TRACE(type);
    const IntGroupSpec s = *parse_int_group_type(type);
    IntGroupTensor t = int_group_rtn(W.data(), rows, cols, s, nullptr, {});
    if (s.group > 0) std::shuffle(t.g_idx.begin(), t.g_idx.end(), rng);  // groups as act-order makes them
    const GptqPacked p = pack_gptq(t);
    ASSERT_EQ(p.qweight.size(), size_t(cols * s.bits / 32 * rows));
    ASSERT_EQ(p.qzeros.size(), size_t(t.n_groups * rows * s.bits / 32));
    // qweight[k][r] holds column c = k·32/bits + i of row r for 2/4/8 bits.
    if (s.bits == 4) {
      const int64_t r = 5, c = 19;
      EXPECT_EQ((uint32_t(p.qweight[size_t(c / 8 * rows + r)]) >> (4 * (c % 8))) & 15, t.q[size_t(r * cols + c)]);
      EXPECT_EQ(uint32_t(p.qzeros[0]) & 15, t.zero[0] - 1u);
      EXPECT_EQ(p.scales[size_t(1 * rows + 3)], t.scale[size_t(3 * t.n_groups + 1)]);
    }
    const IntGroupTensor u = unpack_gptq(p, s, rows, cols);
    EXPECT_EQ(u.q, t.q);
    EXPECT_EQ(u.zero, t.zero);
    EXPECT_EQ(u.scale, t.scale);
    EXPECT_EQ(u.g_idx, t.g_idx);
    EXPECT_EQ(u.dequantize(), t.dequantize());
  }
  const IntGroupSpec s = *parse_int_group_type("int4-g32");
  GptqPacked p = pack_gptq(int_group_rtn(W.data(), rows, cols, s, nullptr, {}));
  p.qweight.pop_back();
  EXPECT_THROW(unpack_gptq(p, s, rows, cols), std::exception);
}

// Min-max RTN is within half a step of every weight (plus the scale's f16
// rounding, up to 2^-11 per level); the clipping search never
// does worse on its own criterion and does better on heavy-tailed rows.
TEST(IntGroup, RoundToNearestAndClipSearch) {
  const int64_t rows = 16, cols = 128;
  std::mt19937 rng(9);
  std::student_t_distribution<float> td(2.0f);
  std::vector<float> W(size_t(rows * cols));
  for (auto& w : W) w = td(rng);
  for (const char* type : {"int4-g32", "int3-g64-asym", "int8-ch"}) {
    SCOPED_TRACE(type);
    const IntGroupSpec s = *parse_int_group_type(type);
    const auto t = int_group_rtn(W.data(), rows, cols, s, nullptr, {});
    const auto y = t.dequantize();
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++) {
        const float step = t.scale[size_t(r * t.n_groups + t.g_idx[size_t(c)])];
        ASSERT_LE(std::fabs(y[size_t(r * cols + c)] - W[size_t(r * cols + c)]), step * (0.5f + 128 * 4.9e-4f) + 1e-6f);
      }
    IntGroupRtnOptions o;
    o.clip_search = true;
    const auto yc = int_group_rtn(W.data(), rows, cols, s, nullptr, o).dequantize();
    double e = 0, ec = 0;
    for (size_t i = 0; i < W.size(); i++) {
      e += double(y[i] - W[i]) * (y[i] - W[i]);
      ec += double(yc[i] - W[i]) * (yc[i] - W[i]);
    }
    EXPECT_LE(ec, e);
    if (s.bits <= 4) { EXPECT_LT(ec, 0.9 * e); }
  }
}

// Zeros are levels at their own group's zero point (through g_idx, as act-order files store it).
TEST(IntGroup, TwoOfFourZerosByHand) {
  IntGroupSpec s;
  s.group = 4;
  IntGroupTensor t(s, 2, 8);
  t.zero = {8, 3, 8, 3};  // rows x groups
  t.g_idx = {1, 1, 1, 1, 0, 0, 0, 0};
  // Row 0: columns 0-3 in group 1 (zero 3), 4-7 in group 0 (zero 8).
  t.q = {3, 5, 3, 9, 1, 8, 8, 8,
         // Row 1: 2 non-zeros in the first four, 1 in the last four.
         3, 3, 0, 15, 8, 8, 2, 8};
  EXPECT_EQ(two_of_four_zeros(t), std::optional<int64_t>(2 + 3 + 2 + 3));
  t.q[2] = 4;  // row 0's first four now has 3 non-zeros
  EXPECT_EQ(two_of_four_zeros(t), std::nullopt);
  // Rows that do not split into fours.
  EXPECT_EQ(two_of_four_zeros(IntGroupTensor(IntGroupSpec{4, -1, true, false}, 1, 6)), std::nullopt);
}

}  // namespace
}  // namespace lmpress
