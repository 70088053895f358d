#include "compress/owl.h"

#include <gtest/gtest.h>


#include "kernels/to_f32.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

// By hand: ratios 0.1/0.2/0.3 span densities 0, 2λ/2, 2λ (mean λ) around 1 − target.
TEST(Owl, SparsitiesFromRatios) {
  const auto s = owl_sparsities({0.1, 0.2, 0.3}, 0.5, 0.1);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_NEAR(s[0], 0.6, 1e-12);
  EXPECT_NEAR(s[1], 0.5, 1e-12);
  EXPECT_NEAR(s[2], 0.4, 1e-12);
  EXPECT_EQ(owl_sparsities({0.2, 0.2}, 0.7, 0.08), (std::vector<double>{0.7, 0.7}));  // nothing stands out
  const auto c = owl_sparsities({0.0, 1.0}, 0.98, 0.1);                             // clamped below 1
  EXPECT_NEAR(c[0], 0.99, 1e-12);
  EXPECT_NEAR(c[1], 0.88, 1e-12);
}

// A block with planted outlier weights (100× the others) has the highest
// outlier ratio, at least the planted share; with a threshold above every
// score no block has outliers.
TEST(Owl, PlantedOutliersRaiseTheBlockRatio) {
  const std::string dir = test::temp_dir();
  test::SyntheticSpec spec;
  spec.n_layers = 3;
  test::write_synthetic_hf(dir, spec);
  auto m = load_model(dir);
  int64_t n_block = 0;
  for (const auto& t : m->tensors)
    if (layer_of(t.name) == 1 && t.shape.size() == 2) n_block += t.numel();
  for (auto& t : m->tensors)
    if (t.name == "blk.1.ffn_up.weight") {
      auto v = to_f32(t);
      for (size_t i = 0; i < 40; i++) v[i * 7] *= 100;
      t = make_f32_tensor(t.name, t.shape, std::move(v));
    }
  m->bind();
  const CalibrationOptions co =
      test::tiny_calibration(dir, "Calibration text for outliers: a few windows of bytes are plenty here.");
  const auto r = owl_outlier_ratios(*m, co, OwlOptions{});
  ASSERT_EQ(r.size(), 3u);
  EXPECT_GE(r[1], 40.0 / double(n_block));
  EXPECT_GT(r[1], r[0]);
  EXPECT_GT(r[1], r[2]);
  OwlOptions huge;
  huge.m = 1e6;
  EXPECT_EQ(owl_outlier_ratios(*m, co, huge), (std::vector<double>{0, 0, 0}));
}

}  // namespace
}  // namespace lmpress
