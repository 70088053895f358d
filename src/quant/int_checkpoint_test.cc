#include "quant/int_checkpoint.h"

#include <gtest/gtest.h>

#include <random>

#include "core/error.h"

namespace lmpress {
namespace {

IntGroupTensor random_levels(const IntGroupSpec& s, int64_t rows, int64_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  IntGroupTensor t(s, rows, cols);
  for (auto& q : t.q) q = uint8_t(rng() % (s.max_level() + 1));
  for (auto& z : t.zero) z = s.sym ? uint16_t((s.max_level() + 1) / 2) : uint16_t(rng() % (s.max_level() + 1));
  for (auto& v : t.scale) v = float(rng() % 1000 + 1) / 4096.0f;
  return t;
}

void expect_same(const IntGroupTensor& a, const IntGroupTensor& b) {
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.zero, b.zero);
  EXPECT_EQ(a.scale, b.scale);
  EXPECT_EQ(a.g_idx, b.g_idx);
}

// docs/awq-format.md's worked example: output columns 0..7 of one input row
// with levels 1..8 pack to 0x86427531 (nibble i holds column AWQ_ORDER[i]).
TEST(IntCheckpoint, AwqPacksInAutoAwqsOrder) {
  IntGroupSpec s{4, 32, false, false};
  IntGroupTensor t(s, 8, 32);
  for (int r = 0; r < 8; r++) t.q[size_t(r * 32)] = uint8_t(r + 1);
  for (auto& z : t.zero) z = 8;
  const AwqPacked p = pack_awq(t);
  ASSERT_EQ(p.qweight.size(), 32u);  // [cols 32, rows/8 = 1]
  EXPECT_EQ(uint32_t(p.qweight[0]), 0x86427531u);
  EXPECT_EQ(uint32_t(p.qzeros[0]), 0x88888888u);
  for (const bool sym : {false, true}) {
    const IntGroupSpec rs{4, 64, sym, false};
    const IntGroupTensor r = random_levels(rs, 24, 128, 7);
    expect_same(unpack_awq(pack_awq(r), rs, 24, 128, "t"), r);
  }
  EXPECT_THROW(pack_awq(random_levels({8, 32, true, false}, 8, 32, 1)), Error);
  EXPECT_THROW(pack_awq(random_levels({4, 32, true, true}, 8, 32, 1)), Error);
}

// docs/compressed-tensors-format.md's example: signed values [-8, -1, 0, 7, 3, -3, 1, 2]
// are stored + 8 (lmpress's levels), little-endian along the row: 0xA95BF870.
TEST(IntCheckpoint, CompressedTensorsPacksLittleEndianWithTheOffset) {
  IntGroupSpec s{4, 8, true, false};
  IntGroupTensor t(s, 1, 8);
  const int v[8] = {-8, -1, 0, 7, 3, -3, 1, 2};
  for (int i = 0; i < 8; i++) t.q[size_t(i)] = uint8_t(v[i] + 8);
  t.zero[0] = 8;
  const CtPacked p = pack_compressed_tensors(t);
  ASSERT_EQ(p.weight_packed.size(), 1u);
  EXPECT_EQ(uint32_t(p.weight_packed[0]), 0xA95BF870u);
  EXPECT_TRUE(p.zero_point.empty());
  // Every shape and kind round-trips: rows not a multiple of 8 (zero points padded), 8 bits, act-order.
  for (const IntGroupSpec& rs : {IntGroupSpec{4, 32, false, false}, IntGroupSpec{8, -1, false, false},
                                 IntGroupSpec{8, 16, true, false}, IntGroupSpec{4, 16, false, true}}) {
    IntGroupTensor r = random_levels(rs, 13, 64, 11);
    if (rs.act_order) std::shuffle(r.g_idx.begin(), r.g_idx.end(), std::mt19937(3));
    const CtPacked rp = pack_compressed_tensors(r);
    EXPECT_EQ(rp.zero_point.size(), rs.sym ? 0u : size_t((13 + 32 / rs.bits - 1) / (32 / rs.bits) * r.n_groups));
    expect_same(unpack_compressed_tensors(rp, rs, 13, 64, "t"), r);
  }
  EXPECT_THROW(pack_compressed_tensors(random_levels({3, 32, true, false}, 8, 32, 1)), Error);
  // A weight_shape that claims far more than the data holds is refused before anything of its size is allocated.
  CtPacked tiny;
  tiny.weight_packed = {0};
  tiny.scale = {1.0f};
  const IntGroupSpec ch{4, -1, true, false};
  EXPECT_THROW(unpack_compressed_tensors(tiny, ch, int64_t(1) << 32, int64_t(1) << 32, "t"), Error);
  EXPECT_THROW(unpack_compressed_tensors(tiny, ch, 1 << 18, 1 << 18, "t"), Error);
  EXPECT_THROW(parse_int_checkpoint("exl2", "--format"), Error);
}

}  // namespace
}  // namespace lmpress
