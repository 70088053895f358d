#include "core/low_rank_tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/matmul.h"
#include "kernels/to_f32.h"
#include "test_util.h"

namespace lmpress {
namespace {

std::vector<float> random_values(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// A [5, 64] and B [40, 5] as one [40, 64] tensor.
Tensor composite(unsigned seed) {
  return make_low_rank_tensor("blk.0.attn_q.weight", make_f32_tensor("blk.0.attn_q.lr_a", {5, 64}, random_values(320, seed)),
                              make_f32_tensor("blk.0.attn_q.lr_b", {40, 5}, random_values(200, seed + 1)));
}

// Its rows are those of B·A, computed here in double; matmul runs it as x·Aᵀ·Bᵀ,
// and each token's row is what the token alone gets.
TEST(LowRankTensor, RowsAndMatmulAreTheProduct) {
  const Tensor t = composite(1);
  EXPECT_EQ(t.dtype, DType::LOW_RANK);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{40, 64}));
  EXPECT_EQ(t.nbytes, uint64_t(320 + 200) * 4);
  EXPECT_EQ(low_rank_rank(t), 5);
  const LowRankPair& p = low_rank_parts(t);
  const std::vector<float> a = to_f32(p.a), b = to_f32(p.b), w = to_f32(t);
  std::vector<double> want(40 * 64, 0.0);
  for (int r = 0; r < 40; r++)
    for (int c = 0; c < 64; c++) {
      for (int k = 0; k < 5; k++) want[size_t(r * 64 + c)] += double(b[size_t(r * 5 + k)]) * a[size_t(k * 64 + c)];
      ASSERT_NEAR(w[size_t(r * 64 + c)], want[size_t(r * 64 + c)], 1e-5) << r << " " << c;
    }
  const int64_t n = 7;
  const std::vector<float> x = random_values(size_t(n * 64), 9);
  std::vector<float> y(size_t(n * 40)), one(40);
  matmul(t, x.data(), n, y.data());
  for (int64_t s = 0; s < n; s++) {
    for (int r = 0; r < 40; r++) {
      double d = 0;
      for (int c = 0; c < 64; c++) d += want[size_t(r * 64 + c)] * x[size_t(s * 64 + c)];
      ASSERT_NEAR(y[size_t(s * 40 + r)], d, 1e-4 * (std::fabs(d) + 1)) << s << " " << r;
    }
    matmul_decode(t, x.data() + s * 64, 1, one.data());
    std::vector<float> rows(size_t(n * 40));
    matmul_decode(t, x.data(), n, rows.data());
    for (int r = 0; r < 40; r++) ASSERT_EQ(one[size_t(r)], rows[size_t(s * 40 + r)]);
  }
  test::expect_error([] { make_low_rank_tensor("w", make_f32_tensor("a", {5, 64}, random_values(320, 1)),
                                               make_f32_tensor("b", {40, 4}, random_values(160, 1))); },
                     "are not A [rank, in] and B [out, rank]");
}

// A file's factors become one tensor in A's place; a factor alone, or beside the whole weight, is refused.
TEST(LowRankTensor, FileFactorsJoin) {
  const LowRankPair p = low_rank_parts(composite(3));
  const Tensor norm = make_f32_tensor("blk.0.attn_norm.weight", {64}, random_values(64, 4));
  std::vector<Tensor> ts{norm, p.a, p.b};
  join_low_rank_parts(ts, "f.gguf");
  ASSERT_EQ(ts.size(), 2u);
  EXPECT_EQ(ts[0].name, "blk.0.attn_norm.weight");
  EXPECT_EQ(ts[1].name, "blk.0.attn_q.weight");
  EXPECT_EQ(ts[1].dtype, DType::LOW_RANK);
  std::vector<Tensor> lone_b{norm, p.b};
  test::expect_error([&] { join_low_rank_parts(lone_b, "f.gguf"); },
                     "f.gguf: tensor blk.0.attn_q.lr_b has no blk.0.attn_q.lr_a beside it");
  std::vector<Tensor> lone_a{p.a};
  test::expect_error([&] { join_low_rank_parts(lone_a, "f.gguf"); }, "has no blk.0.attn_q.lr_b beside it");
  std::vector<Tensor> both{p.a, p.b, make_f32_tensor("blk.0.attn_q.weight", {40, 64}, random_values(2560, 5))};
  test::expect_error([&] { join_low_rank_parts(both, "f.gguf"); }, "blk.0.attn_q.weight is there beside its factors");
  EXPECT_EQ(low_rank_part_names("blk.3.ffn_up.weight"),
            (std::pair<std::string, std::string>{"blk.3.ffn_up.lr_a", "blk.3.ffn_up.lr_b"}));
}

}  // namespace
}  // namespace lmpress
