#include "compress/recipe.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "kernels/to_f32.h"
#include "test_util.h"

namespace lmpress {
namespace {

std::string doc(const std::string& name) { return std::string(LMPRESS_SOURCE_DIR) + "/docs/recipes/" + name; }

TEST(Recipe, ReadsLlmCompressorsLayout) {
  const Recipe a = parse_recipe(read_text_file(doc("sparsegpt-2of4-w4a16.yaml")), "a");
  ASSERT_EQ(a.steps.size(), 2u);
  EXPECT_EQ(a.steps[0].kind, RecipeStep::Kind::Prune);
  EXPECT_EQ(a.steps[0].modifier, "SparseGPTModifier");
  EXPECT_EQ(a.steps[0].prune.method, PruneMethod::SparseGPT);
  EXPECT_EQ(a.steps[0].prune.pattern.name(), "2:4");
  EXPECT_EQ(a.steps[1].kind, RecipeStep::Kind::Quantize);
  EXPECT_EQ(a.steps[1].stage, "quantization_stage");
  EXPECT_EQ(a.steps[1].quantize.type, "int4-g128");
  EXPECT_EQ(a.steps[1].quantize.method, "gptq");
  EXPECT_EQ(a.steps[1].quantize.format, "compressed-tensors");
  const Recipe b = parse_recipe(read_text_file(doc("w4a16.yaml")), "b");
  ASSERT_EQ(b.steps.size(), 1u);
  EXPECT_EQ(b.steps[0].quantize.type, "int4-g128");
  const Recipe c = parse_recipe(
      "s:\n  quantization_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          weights: "
      "{num_bits: 8, type: int, symmetric: false, strategy: channel}\n          targets: [Linear]\n",
      "c");
  EXPECT_EQ(c.steps[0].quantize.type, "int8-ch-asym");
  EXPECT_EQ(c.steps[0].quantize.method, "rtn");
  const Recipe d = parse_recipe(
      "s:\n  m_modifiers:\n    WandaModifier: {sparsity: 0.3}\n    GPTQModifier: {scheme: W8A16, dampening_frac: 0.05, "
      "actorder: group}\n",
      "d");
  EXPECT_EQ(d.steps[0].prune.method, PruneMethod::Wanda);
  EXPECT_DOUBLE_EQ(d.steps[0].prune.pattern.fraction(), 0.3);
  EXPECT_DOUBLE_EQ(d.steps[1].quantize.damp, 0.05);
  EXPECT_TRUE(d.steps[1].quantize.act_order);
  EXPECT_NO_THROW(parse_recipe("s:\n  q_modifiers:\n    GPTQModifier: {scheme: W4A16, targets: ['re:.*']}\n", "e"));
  EXPECT_NO_THROW(parse_recipe("s:\n  q_modifiers:\n    GPTQModifier: {scheme: W4A16, targets: ['re:model.layers']}\n", "e"));
}

TEST(Recipe, WhatItCannotDoIsANamedError) {
  const auto bad = [](const std::string& text, const std::string& msg) {
    test::expect_error([&] { parse_recipe(text, "r.yaml"); }, msg);
  };
  bad("[1, 2", "r.yaml: not YAML");
  bad("- a\n- b\n", "a map of stages");
  bad("s:\n  m_modifiers:\n    SmoothQuantModifier: {smoothing_strength: 1.8}\n", "smoothing_strength 1.8");
  bad("s:\n  m_modifiers:\n    SmoothQuantModifier: {mappings: []}\n", "SmoothQuantModifier.mappings");
  bad("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A8}\n", "this activation quantization is not built");
  EXPECT_EQ(parse_recipe("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W8A8}\n", "r").steps[0].quantize.scheme, "w8a8");
  bad("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16, observer: mse}\n", "s.m_modifiers.GPTQModifier.observer");
  bad("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16, targets: ['re:.*self_attn.*']}\n", "targets 're:.*self_attn.*'");
  bad("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16, ignore: ['re:.*mlp.*']}\n", "ignore 're:.*mlp.*'");
  bad("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16, targets: ['re:.*mlp.*']}\n", "targets 're:.*mlp.*'");
  bad("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16, targets: ['re:model.layers.0$']}\n", "targets 're:model.layers.0$'");
  bad("s:\n  m_modifiers:\n    GPTQModifier:\n      config_groups:\n        g:\n          weights: {num_bits: 4, "
      "strategy: group, group_size: 128.5}\n",
      "group_size 128.5 is not a whole number");
  bad("s:\n  m_modifiers:\n    SparseGPTModifier: {sparsity: 0.6, mask_structure: '2:4'}\n", "disagrees with mask_structure");
  bad("s:\n  m_modifiers:\n    SparseGPTModifier: {sparsity: 1.5}\n", "sparsity 1.5");
  bad("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16}\n    WandaModifier: {sparsity: 0.5}\n", "it must come last");
  bad("s:\n  run_type: train\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16}\n", "only oneshot");
  bad("s:\n  m_modifiers:\n    FooModifier: {}\n", "unknown modifier");
  bad("s:\n  m_modifiers:\n    SpinQuantModifier: {rotations: [R1, R2, R4]}\n", "rotations R4: an online rotation");
  bad("s:\n  m_modifiers:\n    SpinQuantModifier: {rotations: [R2]}\n", "R2 alone is not built");
  bad("s:\n  m_modifiers:\n    SpinQuantModifier: {transform_type: random-matrix}\n", "transform_type 'random-matrix'");
  bad("s:\n  m_modifiers:\n    SpinQuantModifier: {learnable: true}\n", "learnable: only fixed rotations");
  bad("s:\n  m_modifiers:\n    SpinQuantModifier: {transform_block_size: 128}\n", "SpinQuantModifier.transform_block_size");
  const Recipe spin = parse_recipe("s:\n  m_modifiers:\n    SpinQuantModifier: {rotations: [r1]}\n", "r");
  EXPECT_EQ(spin.steps[0].kind, RecipeStep::Kind::Rotate);
  EXPECT_FALSE(spin.steps[0].rotate.heads);
}

// The recipe and the command-line steps it stands for write the same bytes.
TEST(RecipeCli, SmoothQuantThenSparseGptThenGptqEqualsTheCommandLineSteps) {
  if (!test::have_shared("models/lmp-8m-w256")) GTEST_SKIP();
  const std::string m = test::shared_path("models/lmp-8m-w256"), d = test::temp_dir();
  const std::string calib = " --calib " + test::shared_path("data/calib/docs-calib.txt") + " --calib-samples 4 --calib-ctx 128";
  auto r = test::run_cli("apply " + doc("smoothquant-2of4-w4a16.yaml") + " " + m + " " + d + "/recipe" + calib);
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_EQ(test::run_cli("smooth " + m + " " + d + "/s.gguf --alpha 0.5" + calib).status, 0);
  ASSERT_EQ(test::run_cli("prune " + d + "/s.gguf " + d + "/p.gguf --method sparsegpt --nm 2:4" + calib).status, 0);
  r = test::run_cli("quantize " + d + "/p.gguf " + d + "/cli --type int4-g128 --method gptq --format compressed-tensors" + calib);
  ASSERT_EQ(r.status, 0) << r.out;
  for (const char* f : {"model.safetensors", "config.json"})
    EXPECT_EQ(read_text_file(d + "/recipe/" + f), read_text_file(d + "/cli/" + f)) << f;
  EXPECT_EQ(read_text_file(d + "/recipe/recipe.yaml"), read_text_file(doc("smoothquant-2of4-w4a16.yaml")));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(d), std::filesystem::directory_iterator()), 4)
      << "recipe, s.gguf, p.gguf and cli: the recipe's intermediate files are gone";
  // A step that fails leaves no output and no intermediate file.
  r = test::run_cli("apply " + doc("smoothquant-2of4-w4a16.yaml") + " " + m + " " + d + "/none");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("SmoothQuantModifier needs calibration text"), std::string::npos) << r.out;
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(d), std::filesystem::directory_iterator()), 4);
}

// SpinQuant's R1 + R2 then GPTQ W4A16 is `rotate` then `quantize ... --format compressed-tensors`, byte for byte.
TEST(RecipeCli, SpinQuantThenGptqEqualsRotateThenQuantize) {
  if (!test::have_shared("models/lmp-8m-w256")) GTEST_SKIP();
  const std::string m = test::shared_path("models/lmp-8m-w256"), d = test::temp_dir();
  const std::string calib = " --calib " + test::shared_path("data/calib/docs-calib.txt") + " --calib-samples 4 --calib-ctx 128";
  auto r = test::run_cli("apply " + doc("spinquant-w4a16.yaml") + " " + m + " " + d + "/recipe" + calib);
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_EQ(test::run_cli("rotate " + m + " " + d + "/r.gguf --rotate hadamard:0").status, 0);
  r = test::run_cli("quantize " + d + "/r.gguf " + d + "/cli --type int4-g128 --method gptq --format compressed-tensors" +
                    calib);
  ASSERT_EQ(r.status, 0) << r.out;
  for (const char* f : {"model.safetensors", "config.json"})
    EXPECT_TRUE(read_text_file(d + "/recipe/" + f) == read_text_file(d + "/cli/" + f)) << f;
}

// llm-compressor's W8A8 example (SmoothQuant 0.8, then GPTQ W8A8) is `smooth` then `quantize --scheme w8a8`.
TEST(RecipeCli, SmoothQuantW8A8EqualsTheCommandLineSteps) {
  if (!test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string m = test::shared_path("models/lmp-8m"), d = test::temp_dir();
  const std::string calib = " --calib " + test::shared_path("data/calib/docs-calib.txt") + " --calib-samples 4 --calib-ctx 128";
  auto r = test::run_cli("apply " + doc("smoothquant-w8a8.yaml") + " " + m + " " + d + "/recipe" + calib);
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_EQ(test::run_cli("smooth " + m + " " + d + "/s.gguf --alpha 0.8" + calib).status, 0);
  r = test::run_cli("quantize " + d + "/s.gguf " + d + "/cli --scheme w8a8 --method gptq" + calib);
  ASSERT_EQ(r.status, 0) << r.out;
  for (const char* f : {"model.safetensors", "config.json"})
    EXPECT_TRUE(read_text_file(d + "/recipe/" + f) == read_text_file(d + "/cli/" + f)) << f;
  EXPECT_EQ(nlohmann::json::parse(read_text_file(d + "/recipe/config.json"))["quantization_config"]["format"],
            "int-quantized");
}

// SmoothQuant keeps the function: the smoothed model's perplexity is the original's (float error), its weights are not.
TEST(SmoothCli, KeepsTheFunctionAndChangesTheWeights) {
  if (!test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string m = test::shared_path("models/lmp-8m"), d = test::temp_dir();
  auto r = test::run_cli("smooth " + m + " " + d + "/s.gguf --alpha 0.5 --calib " +
                         test::shared_path("data/calib/docs-calib.txt") + " --calib-samples 4 --calib-ctx 128");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto ppl = [&](const std::string& model) {
    auto p = test::run_cli("perplexity " + model + " -f " + test::shared_path("data/wikitext-2/wiki.test.raw") +
                           " --ctx 128 --chunks 3 --json");
    EXPECT_EQ(p.status, 0) << p.out;
    const size_t at = p.out.find("\"ppl\": ");
    return std::stod(p.out.substr(at + 7));
  };
  const double a = ppl(m), b = ppl(d + "/s.gguf");
  EXPECT_NEAR(b / a, 1.0, 1e-4);
  auto orig = load_model(m), sm = load_model(d + "/s.gguf");
  const auto w0 = to_f32(*orig->find("blk.0.attn_q.weight")), w1 = to_f32(*sm->find("blk.0.attn_q.weight"));
  double diff = 0;
  for (size_t i = 0; i < w0.size(); i++) diff = std::max(diff, double(std::fabs(w0[i] - w1[i])));
  EXPECT_GT(diff, 1e-3) << "the weights were rescaled";
  test::expect_cli_error("smooth " + m + " " + d + "/x.gguf --alpha 2 --calib " + test::shared_path("data/calib/docs-calib.txt"),
                         "--alpha 2");
  test::expect_cli_error("smooth " + m + " " + d + "/x.gguf", "--calib FILE");
}

}  // namespace
}  // namespace lmpress
