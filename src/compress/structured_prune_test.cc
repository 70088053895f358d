#include "compress/structured_prune.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "core/error.h"
#include "model/forward.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

TEST(Structured, ParseSpec) {
  const auto o = parse_structured("heads=0.25,ffn=0.3,layers=2");
  EXPECT_DOUBLE_EQ(o.heads, 0.25);
  EXPECT_DOUBLE_EQ(o.ffn, 0.3);
  EXPECT_EQ(o.layers, 2);
  EXPECT_EQ(parse_structured("layers=1").layers, 1);
  for (const char* bad : {"", "heads", "heads=1.0", "ffn=-0.1", "layers=1.5", "depth=2", "ffn=abc", "heads=0.2x"})
    EXPECT_THROW(parse_structured(bad), Error) << bad;
}

std::vector<float> logits_of(const Model& m, const std::vector<int32_t>& toks) {
  InferenceState st(m, int64_t(toks.size()), 64);
  std::vector<float> out(toks.size() * size_t(m.cfg.n_vocab));
  st.eval(toks.data(), int64_t(toks.size()), out.data(), true);
  return out;
}

void zero_cols(Model& m, const std::string& name, int64_t from, int64_t to) {
  for (auto& t : m.tensors)
    if (t.name == name) {
      auto v = to_f32(t);
      for (int64_t r = 0; r < t.rows(); r++)
        for (int64_t c = from; c < to; c++) v[size_t(r * t.cols() + c)] = 0;
      t = make_f32_tensor(t.name, t.shape, std::move(v));
    }
}

// Channels, head groups and a block that contribute nothing (their output
// weights zeroed) carry no output energy / no angular change, so they are the
// ones removed — and the smaller model computes exactly what the zeroed one did.
TEST(Structured, RemovesDeadStructuresAndKeepsTheFunction) {
  const std::string dir = test::temp_dir();
  test::SyntheticSpec spec;
  spec.n_layers = 3;
  test::write_synthetic_hf(dir, spec);
  auto m = load_model(dir);
  const ModelConfig c = m->cfg;  // a copy: pruning changes m->cfg
  ASSERT_EQ(c.n_kv_heads, 2);
  ASSERT_EQ(c.ffn_dim, 48);
  const int64_t group_cols = c.head_dim * (c.n_heads / c.n_kv_heads);
  for (int64_t l = 0; l < 3; l++) {
    const std::string b = "blk." + std::to_string(l) + ".";
    zero_cols(*m, b + "attn_output.weight", group_cols, 2 * group_cols);  // KV group 1 is dead
    zero_cols(*m, b + "ffn_down.weight", 3 * l, 3 * l + 12);              // 12 dead channels, different per layer
  }
  zero_cols(*m, "blk.1.attn_output.weight", 0, c.q_dim());  // block 1 is the identity
  zero_cols(*m, "blk.1.ffn_down.weight", 0, c.ffn_dim);
  m->bind();
  std::ofstream(dir + "/calib.txt") << "Calibration text for a tiny model, long enough for a few windows of tokens. "
                                       "It does not matter what it says, only that it exercises every channel.";
  const std::vector<int32_t> toks{1, 70, 80, 90, 100, 33, 44, 55, 66, 77};
  const auto want = logits_of(*m, toks);
  const int64_t params = m->n_params();
  StructuredOptions so;
  so.heads = 0.5, so.ffn = 0.25, so.layers = 1;
  CalibrationOptions co;
  co.file = dir + "/calib.txt";
  co.samples = 2;
  co.ctx = 32;
  const auto r = structured_prune(*m, so, co);
  EXPECT_EQ(r.removed_blocks, std::vector<int64_t>{1});
  EXPECT_NEAR(r.block_distance[1], 0.0, 1e-6);
  EXPECT_EQ(m->cfg.n_kv_heads, 1);
  EXPECT_EQ(m->cfg.n_heads, 2);
  EXPECT_EQ(m->cfg.ffn_dim, 36);
  EXPECT_EQ(m->cfg.n_layers, 2);
  // By hand: per remaining block, q/o lose dim·group_cols each, k/v dim·head_dim each, gate/up/down dim·12 each.
  const int64_t D = c.dim, per_block_removed = 2 * D * group_cols + 2 * D * c.head_dim + 3 * D * 12;
  const int64_t block_params = 2 * D * c.q_dim() + 2 * D * 2 * c.head_dim + 3 * D * 48 + 2 * D;
  EXPECT_EQ(r.params_before, params);
  EXPECT_EQ(r.params_after, params - block_params - 2 * per_block_removed);
  const auto got = logits_of(*m, toks);
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); i++) worst = std::max(worst, double(std::fabs(got[i] - want[i])));
  EXPECT_LT(worst, 1e-4);
  EXPECT_THROW(structured_prune(*m, StructuredOptions{0, 0, 2}, co), Error);  // every block
}

}  // namespace
}  // namespace lmpress
