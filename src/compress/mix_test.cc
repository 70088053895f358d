#include "compress/mix.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace lmpress {
namespace {

// A model skeleton (names and shapes only) with 8 layers and 256-multiple rows.
Model skeleton(int64_t dim, int64_t ffn, int64_t heads, int64_t kv_heads, bool tied) {
  Model m;
  m.cfg.n_layers = 8;
  m.cfg.dim = dim;
  m.cfg.ffn_dim = ffn;
  m.cfg.n_heads = heads;
  m.cfg.n_kv_heads = kv_heads;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    Tensor t;
    t.name = std::move(name);
    t.shape = std::move(shape);
    m.tensors.push_back(t);
  };
  add("token_embd.weight", {1000, dim});
  if (!tied) add("output.weight", {1000, dim});
  add("output_norm.weight", {dim});
  const int64_t kv = dim / heads * kv_heads;
  for (int i = 0; i < 8; i++) {
    const std::string p = "blk." + std::to_string(i) + ".";
    add(p + "attn_norm.weight", {dim});
    add(p + "attn_q.weight", {dim, dim});
    add(p + "attn_k.weight", {kv, dim});
    add(p + "attn_v.weight", {kv, dim});
    add(p + "attn_output.weight", {dim, dim});
    add(p + "ffn_norm.weight", {dim});
    add(p + "ffn_gate.weight", {ffn, dim});
    add(p + "ffn_up.weight", {ffn, dim});
    add(p + "ffn_down.weight", {dim, ffn});
  }
  return m;
}

std::string layer(int i, const char* t) { return "blk." + std::to_string(i) + "." + t; }

// Expected types follow llama.cpp's llama_tensor_get_type, worked out by hand:
// use_more_bits(i, 8) holds for i = 0, 3, 6, 7.
TEST(Mix, Q4KMMatchesLlamaCppRules) {
  const Model m = skeleton(512, 1024, 8, 8, false);
  MixOptions o;
  o.preset = *find_preset("Q4_K_M");
  const auto plan = plan_tensor_types(m, o);
  for (int i = 0; i < 8; i++) {
    const bool more = i == 0 || i == 3 || i == 6 || i == 7;
    EXPECT_EQ(plan.at(layer(i, "attn_v.weight")), more ? DType::Q6_K : DType::Q4_K) << i;
    EXPECT_EQ(plan.at(layer(i, "ffn_down.weight")), more ? DType::Q6_K : DType::Q4_K) << i;
    EXPECT_EQ(plan.at(layer(i, "attn_q.weight")), DType::Q4_K);
    EXPECT_EQ(plan.at(layer(i, "attn_norm.weight")), DType::F32);
  }
  EXPECT_EQ(plan.at("output.weight"), DType::Q6_K);
  EXPECT_EQ(plan.at("token_embd.weight"), DType::Q4_K);
}

TEST(Mix, Q3KMAndQ2KAndFallbacks) {
  const Model m = skeleton(512, 1024, 8, 2, true);  // GQA 4, tied embeddings
  MixOptions o;
  o.preset = *find_preset("q3_k_m");
  auto plan = plan_tensor_types(m, o);
  EXPECT_EQ(plan.at(layer(0, "attn_v.weight")), DType::Q5_K);
  EXPECT_EQ(plan.at(layer(1, "attn_v.weight")), DType::Q5_K);
  EXPECT_EQ(plan.at(layer(2, "attn_v.weight")), DType::Q4_K);
  EXPECT_EQ(plan.at(layer(5, "ffn_down.weight")), DType::Q4_K);
  EXPECT_EQ(plan.at(layer(5, "attn_output.weight")), DType::Q4_K);
  EXPECT_EQ(plan.at(layer(5, "ffn_up.weight")), DType::Q3_K);
  EXPECT_EQ(plan.at("token_embd.weight"), DType::Q6_K);  // tied: treated as the output matrix
  o.preset = *find_preset("Q2_K");
  plan = plan_tensor_types(m, o);
  EXPECT_EQ(plan.at(layer(3, "attn_v.weight")), DType::Q4_K);  // GQA >= 4
  EXPECT_EQ(plan.at(layer(3, "ffn_down.weight")), DType::Q3_K);
  EXPECT_EQ(plan.at(layer(3, "ffn_gate.weight")), DType::Q2_K);
  // Rows of 288 do not fit 256-element blocks: llama.cpp's fallbacks.
  const Model odd = skeleton(288, 768, 6, 2, false);
  o.preset = *find_preset("q4_k_m");
  plan = plan_tensor_types(odd, o);
  EXPECT_EQ(plan.at(layer(1, "attn_q.weight")), DType::Q5_0);
  EXPECT_EQ(plan.at(layer(0, "attn_v.weight")), DType::Q8_0);  // Q6_K falls back to Q8_0
  EXPECT_EQ(plan.at(layer(1, "ffn_down.weight")), DType::Q4_K);
  EXPECT_EQ(plan.at("output.weight"), DType::Q8_0);
}

// IQ4_XS as IQ4_NL (attn_v in Q5_K at GQA >= 4, the first eighth of ffn_down in Q5_K without an imatrix);
// the ternary types keep token_embd in Q4_K and fall back to Q4_0, IQ4_XS to IQ4_NL.
TEST(Mix, Iq4XsAndTernaryMatchLlamaCppRules) {
  const Model m = skeleton(512, 1024, 8, 2, false);  // GQA 4
  MixOptions o;
  o.preset = *find_preset("IQ4_XS");
  auto plan = plan_tensor_types(m, o);
  EXPECT_EQ(plan.at(layer(3, "attn_v.weight")), DType::Q5_K);
  EXPECT_EQ(plan.at(layer(0, "ffn_down.weight")), DType::Q5_K);
  EXPECT_EQ(plan.at(layer(1, "ffn_down.weight")), DType::IQ4_XS);
  EXPECT_EQ(plan.at(layer(1, "attn_q.weight")), DType::IQ4_XS);
  EXPECT_EQ(plan.at("token_embd.weight"), DType::IQ4_XS);
  EXPECT_EQ(plan.at("output.weight"), DType::Q6_K);
  o.has_imatrix = true;
  EXPECT_EQ(plan_tensor_types(m, o).at(layer(0, "ffn_down.weight")), DType::IQ4_XS);
  const Model odd = skeleton(288, 768, 6, 6, false);
  o.has_imatrix = false;
  EXPECT_EQ(plan_tensor_types(odd, o).at(layer(1, "attn_q.weight")), DType::IQ4_NL);
  for (const char* t : {"tq1_0", "TQ2_0"}) {
    o.preset = *find_preset(t);
    plan = plan_tensor_types(m, o);
    EXPECT_EQ(plan.at(layer(1, "attn_v.weight")), o.preset.base);
    EXPECT_EQ(plan.at("token_embd.weight"), DType::Q4_K);
    EXPECT_EQ(plan.at("output.weight"), DType::Q6_K);
    EXPECT_EQ(plan_tensor_types(odd, o).at(layer(1, "ffn_up.weight")), DType::Q4_0);
  }
}

// The IQ2/IQ3 codebook file types, worked out by hand from llama_tensor_get_type (8 layers: n/8 = 1).
TEST(Mix, CodebookFileTypesMatchLlamaCppRules) {
  const Model gqa1 = skeleton(512, 1024, 8, 8, false), gqa4 = skeleton(512, 1024, 8, 2, false);
  MixOptions o;
  o.has_imatrix = true;
  o.preset = *find_preset("iq2_xxs");
  auto plan = plan_tensor_types(gqa1, o);
  EXPECT_EQ(plan.at(layer(2, "attn_v.weight")), DType::Q2_K);
  EXPECT_EQ(plan.at(layer(2, "attn_output.weight")), DType::IQ2_XXS);
  EXPECT_EQ(plan_tensor_types(gqa4, o).at(layer(2, "attn_v.weight")), DType::Q4_K);
  o.preset = *find_preset("IQ2_M");
  plan = plan_tensor_types(gqa1, o);
  EXPECT_EQ(plan.at(layer(3, "attn_q.weight")), DType::IQ2_S);
  EXPECT_EQ(plan.at(layer(3, "attn_v.weight")), DType::IQ3_S);
  EXPECT_EQ(plan.at(layer(0, "ffn_down.weight")), DType::IQ3_S);
  EXPECT_EQ(plan.at(layer(3, "ffn_down.weight")), DType::IQ2_S);
  EXPECT_EQ(plan.at(layer(3, "attn_output.weight")), DType::IQ3_S);
  EXPECT_EQ(plan.at("token_embd.weight"), DType::IQ3_S);
  EXPECT_EQ(plan.at("output.weight"), DType::Q5_K);
  o.preset = *find_preset("iq2_s");  // llama.cpp's IQ2_S file type is mostly IQ2_XS
  EXPECT_EQ(plan_tensor_types(gqa1, o).at(layer(3, "ffn_up.weight")), DType::IQ2_XS);
  o.preset = *find_preset("iq3_xxs");
  plan = plan_tensor_types(gqa1, o);
  EXPECT_EQ(plan.at(layer(3, "attn_q.weight")), DType::IQ2_S);
  EXPECT_EQ(plan.at(layer(3, "attn_k.weight")), DType::IQ2_S);
  EXPECT_EQ(plan.at(layer(3, "attn_v.weight")), DType::IQ3_XXS);
  EXPECT_EQ(plan.at(layer(3, "attn_output.weight")), DType::IQ3_S);
  EXPECT_EQ(plan.at(layer(0, "ffn_down.weight")), DType::IQ3_XXS);
  EXPECT_EQ(plan.at("token_embd.weight"), DType::IQ3_S);
  EXPECT_EQ(plan.at("output.weight"), DType::Q5_K);
  o.has_imatrix = false;
  plan = plan_tensor_types(gqa1, o);
  EXPECT_EQ(plan.at(layer(3, "attn_v.weight")), DType::IQ3_S);
  EXPECT_EQ(plan.at(layer(0, "ffn_down.weight")), DType::Q4_K);
  EXPECT_EQ(plan.at(layer(3, "ffn_down.weight")), DType::Q3_K);
  o.preset = *find_preset("iq3_xs");
  plan = plan_tensor_types(gqa4, o);
  EXPECT_EQ(plan.at(layer(3, "attn_q.weight")), DType::IQ3_XXS);
  EXPECT_EQ(plan.at(layer(3, "attn_v.weight")), DType::Q4_K);
  EXPECT_EQ(plan.at(layer(0, "ffn_up.weight")), DType::IQ3_S);
  EXPECT_EQ(plan.at(layer(3, "ffn_gate.weight")), DType::IQ3_XXS);
  EXPECT_EQ(plan.at(layer(7, "ffn_up.weight")), DType::IQ3_S);
  EXPECT_EQ(plan.at("output.weight"), DType::Q6_K);
  o.preset = *find_preset("iq3_m");
  plan = plan_tensor_types(gqa1, o);
  EXPECT_EQ(plan.at(layer(3, "attn_v.weight")), DType::Q4_K);
  EXPECT_EQ(plan.at(layer(0, "ffn_down.weight")), DType::Q4_K);
  EXPECT_EQ(plan.at(layer(3, "ffn_down.weight")), DType::IQ3_S);
  EXPECT_EQ(plan.at(layer(3, "attn_output.weight")), DType::Q4_K);
  EXPECT_EQ(plan.at(layer(3, "attn_q.weight")), DType::IQ3_S);
}

TEST(Mix, OverridesPureAndErrors) {
  const Model m = skeleton(512, 1024, 8, 8, false);
  MixOptions o;
  o.preset = *find_preset("q4_k_m");
  o.overrides.push_back(parse_tensor_type_override("ffn_down=q8_0"));
  o.overrides.push_back(parse_tensor_type_override(R"(blk\.[0-3]\.attn_q=f16)"));
  o.output_type = DType::Q8_0;
  auto plan = plan_tensor_types(m, o);
  EXPECT_EQ(plan.at(layer(1, "ffn_down.weight")), DType::Q8_0);
  EXPECT_EQ(plan.at(layer(2, "attn_q.weight")), DType::F16);
  EXPECT_EQ(plan.at(layer(5, "attn_q.weight")), DType::Q4_K);
  EXPECT_EQ(plan.at("output.weight"), DType::Q8_0);
  o = MixOptions{};
  o.preset = *find_preset("q4_k_m");
  o.pure = true;
  plan = plan_tensor_types(m, o);
  EXPECT_EQ(plan.at(layer(0, "attn_v.weight")), DType::Q4_K);
  EXPECT_FALSE(find_preset("q4_k_x"));
  EXPECT_THROW(parse_tensor_type_override("ffn_down"), std::exception);
  EXPECT_THROW(parse_tensor_type_override("ffn_down=q9_9"), std::exception);
  EXPECT_THROW(parse_tensor_type_override("ffn_(down=q4_0"), std::exception);
  // A pattern that matches nothing quantizable (a typo, a norm) would leave the preset in place silently.
  for (const char* spec : {"ffn_dwon=q8_0", "attn_norm=q8_0"}) {
    o.overrides = {parse_tensor_type_override("ffn_down=q8_0"), parse_tensor_type_override(spec)};
    try {
      plan_tensor_types(m, o);
      ADD_FAILURE() << spec;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--tensor-type '" + std::string(spec) + "': the pattern matches no quantizable tensor"),
                std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace lmpress
