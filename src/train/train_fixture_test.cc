// Whole-model gradients against PyTorch's autograd: tests/data/train_fixture
// holds a tiny Llama, fixed sequences and the gradients of their mean
// cross-entropy that tests/data/make_train_fixture.py computed with torch in
// float64 (a forward written from transformers' modeling_llama).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "io/safetensors.h"
#include "kernels/to_f32.h"
#include "train/train_model.h"

namespace lmpress::train {
namespace {

TEST(TrainFixture, GradientsEqualPyTorchAutograd) {
  const std::string dir = std::string(LMPRESS_SOURCE_DIR) + "/tests/data/train_fixture";
  auto m = load_model(dir);
  const auto fx = nlohmann::json::parse(read_text_file(dir + "/fixture.json"));
  std::vector<int32_t> tokens, targets;
  for (const auto& row : fx["tokens"])
    for (int32_t t : row) tokens.push_back(t);
  for (const auto& row : fx["targets"])
    for (int32_t t : row) targets.push_back(t);
  const int64_t B = int64_t(fx["tokens"].size()), n = int64_t(tokens.size()) / B;

  TrainModel<double> tm(*m);
  const double scale = 1.0 / double(B * n);
  const double loss = tm.step(tokens.data(), targets.data(), B, n, Loss{}, nullptr, scale, nullptr) * scale;
  EXPECT_NEAR(loss, fx["loss"].get<double>(), 1e-6);

  const auto grads = SafetensorsFile::open(dir + "/grads.safetensors");
  std::map<std::string, std::vector<float>> want;
  for (const auto& t : grads.tensors) want[t.name] = to_f32(t);
  ASSERT_EQ(want.size(), tm.params().size());
  for (const auto& p : tm.params()) {
    const std::string hf = canonical_to_hf(p.name, m->cfg);
    ASSERT_TRUE(want.count(hf)) << p.name << " as " << hf;
    const auto& w = want[hf];
    ASSERT_EQ(int64_t(w.size()), p.size()) << hf;
    double worst = 0, mag = 0;
    for (int64_t i = 0; i < p.size(); i++) {
      worst = std::max(worst, std::abs(tm.grad[p.offset + size_t(i)] - double(w[size_t(i)])));
      mag = std::max(mag, std::abs(double(w[size_t(i)])));
    }
    // f32 storage of the fixture's gradients: about 1e-7 of their largest.
    EXPECT_LT(worst, 1e-6 * std::max(mag, 1e-3)) << hf << " (largest gradient " << mag << ")";
  }
}

}  // namespace
}  // namespace lmpress::train
