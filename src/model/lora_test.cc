// LoRA adapter files: llama.cpp's GGUF layout and PEFT directories written and
// read back (q/k rows re-paired between layouts), merging by hand, bad files.
#include "model/lora.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "kernels/to_f32.h"
#include "model/export.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

LoraAdapter random_adapter(const Model& m, int64_t rank, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.5f);
  LoraAdapter a;
  a.rank = rank, a.alpha = 3.0;
  for (const char* w : {"blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.1.ffn_down.weight"}) {
    const Tensor& t = m.tensor(w);
    LoraAdapter::Pair p;
    p.weight = w, p.in = t.cols(), p.out = t.rows();
    p.a.resize(size_t(rank * p.in)), p.b.resize(size_t(p.out * rank));
    for (auto& x : p.a) x = nd(rng);
    for (auto& x : p.b) x = nd(rng);
    a.pairs.push_back(std::move(p));
  }
  return a;
}

void expect_same(const LoraAdapter& x, const LoraAdapter& y) {
  ASSERT_EQ(x.rank, y.rank);
  EXPECT_DOUBLE_EQ(x.alpha, y.alpha);
  ASSERT_EQ(x.pairs.size(), y.pairs.size());
  for (const auto& p : x.pairs) {
    const auto it = std::find_if(y.pairs.begin(), y.pairs.end(), [&](const auto& q) { return q.weight == p.weight; });
    ASSERT_NE(it, y.pairs.end()) << p.weight;
    EXPECT_EQ(p.a, it->a) << p.weight;
    EXPECT_EQ(p.b, it->b) << p.weight;
  }
}

TEST(Lora, GgufAndPeftRoundTrip) {
  const std::string d = test::temp_dir();
  std::filesystem::create_directories(d + "/hf");
  test::write_synthetic_hf(d + "/hf", {});
  auto hf = load_model(d + "/hf");  // RoPE in halves
  const LoraAdapter a = random_adapter(*hf, 2, 1);
  write_lora_gguf(*hf, a, d + "/a.gguf");
  write_lora_peft(*hf, a, d + "/peft");
  expect_same(a, read_lora(*hf, d + "/a.gguf"));
  expect_same(a, read_lora(*hf, d + "/peft"));
  // llama.cpp's layout: llama pairs (2i, 2i+1), so the q rows of B are permuted in the file.
  const GGUFFile f = GGUFFile::open(d + "/a.gguf");
  EXPECT_EQ(f.get_string("general.type").value_or(""), "adapter");
  EXPECT_EQ(f.get_string("adapter.type").value_or(""), "lora");
  EXPECT_FLOAT_EQ(float(f.get_float("adapter.lora.alpha").value_or(0)), 3.0f);
  for (const auto& t : f.tensors())
    if (t.name == "blk.0.attn_q.weight.lora_b") { EXPECT_NE(to_f32(t), a.pairs[0].b); }
  // The same adapter read for the model converted to GGUF (pairs interleaved) merges to the same function.
  ASSERT_EQ(test::run_cli("convert " + d + "/hf " + d + "/m.gguf").status, 0);
  auto gg = load_model(d + "/m.gguf");
  const LoraAdapter b = read_lora(*gg, d + "/a.gguf");
  merge_lora(*gg, b, 0.5);
  merge_lora(*hf, a, 0.5);
  // q's rows of the HF model re-paired as GGUF pairs them equal the GGUF model's; ffn_down's are the same rows.
  for (const char* w : {"blk.0.attn_q.weight", "blk.1.ffn_down.weight"}) {
    const Tensor& t = hf->tensor(w);
    auto x = to_f32(t);
    if (std::string(w).find("attn_q") != std::string::npos) {
      const auto bytes = permute_rope_rows(reinterpret_cast<const uint8_t*>(x.data()), hf->cfg.n_heads, hf->cfg.head_dim,
                                           uint64_t(t.cols()) * 4, RopeLayout::Halves, RopeLayout::Interleaved);
      std::memcpy(x.data(), bytes.data(), bytes.size());
    }
    const auto y = to_f32(gg->tensor(w));
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); i++) ASSERT_NEAR(x[i], y[i], 1e-5) << w << " " << i;
  }
}

TEST(Lora, MergesByHand) {
  const std::string d = test::temp_dir();
  test::write_synthetic_hf(d, {});
  auto m = load_model(d);
  const auto before = to_f32(m->tensor("blk.1.ffn_down.weight"));
  const LoraAdapter a = random_adapter(*m, 2, 2);
  merge_lora(*m, a, 2.0);
  const auto after = to_f32(m->tensor("blk.1.ffn_down.weight"));
  const auto& p = a.pairs[2];
  for (int64_t o : {int64_t(0), p.out - 1})
    for (int64_t i : {int64_t(0), p.in - 1}) {
      double want = before[size_t(o * p.in + i)];
      for (int64_t k = 0; k < 2; k++) want += 2.0 * 3.0 / 2.0 * p.b[size_t(o * 2 + k)] * p.a[size_t(k * p.in + i)];
      EXPECT_NEAR(after[size_t(o * p.in + i)], want, 1e-5);
    }
}

TEST(Lora, BadAdaptersAreClearErrors) {
  const std::string d = test::temp_dir();
  std::filesystem::create_directories(d + "/hf");
  test::write_synthetic_hf(d + "/hf", {});
  auto m = load_model(d + "/hf");
  test::expect_error([&] { read_lora(*m, d + "/hf/config.json"); }, "not a GGUF file");
  ASSERT_EQ(test::run_cli("convert " + d + "/hf " + d + "/m.gguf").status, 0);
  test::expect_error([&] { read_lora(*m, d + "/m.gguf"); }, "not a LoRA adapter");
  // An adapter for another shape.
  test::SyntheticSpec wide;
  wide.dim = 48, wide.n_heads = 4, wide.ffn = 64;
  std::filesystem::create_directories(d + "/wide");
  test::write_synthetic_hf(d + "/wide", wide);
  auto w = load_model(d + "/wide");
  write_lora_gguf(*w, random_adapter(*w, 2, 3), d + "/wide.gguf");
  test::expect_error([&] { read_lora(*m, d + "/wide.gguf"); }, "the model's weight is");
  test::expect_error([&] { apply_lora(*m, d + "/wide.gguf:abc"); }, "FILE[:SCALE]");
  // PEFT variants whose scale or form differ are refused, not merged wrongly.
  write_lora_peft(*m, random_adapter(*m, 2, 4), d + "/peft");
  const std::string cfg = d + "/peft/adapter_config.json";
  auto j = nlohmann::json::parse(std::ifstream(cfg));
  j["use_rslora"] = true;
  std::ofstream(cfg) << j.dump();
  test::expect_error([&] { read_lora(*m, d + "/peft"); }, "use_rslora adapters are not supported");
  j["use_rslora"] = false, j["lora_alpha"] = -1.0;
  std::ofstream(cfg) << j.dump();
  test::expect_error([&] { read_lora(*m, d + "/peft"); }, "not a finite positive number");
}

}  // namespace
}  // namespace lmpress
