#include "compress/recipe.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
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
  bad("s:\n  m_modifiers:\n    GPTQModifier: {scheme: FP8_DYNAMIC}\n", "this activation quantization is not built");
  const Recipe w4a8 = parse_recipe("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A8}\n", "r");
  EXPECT_EQ(w4a8.steps[0].quantize.scheme, "w4a8");
  EXPECT_EQ(w4a8.steps[0].quantize.type, "int4-g128");
  EXPECT_EQ(parse_recipe("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W8A8}\n", "r").steps[0].quantize.scheme, "w8a8");
  bad("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16, observer: mse}\n", "s.m_modifiers.GPTQModifier.observer");
  bad("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16, targets: ['re:.*(self_attn']}\n", "is not a regular expression");
  bad("s:\n  m_modifiers:\n    GPTQModifier:\n      config_groups:\n        g:\n          targets: [Linear]\n"
      "          weights: {num_bits: 4, strategy: group, group_size: 128.5}\n",
      "group_size 128.5 is not a whole number");
  bad("s:\n  m_modifiers:\n    GPTQModifier:\n      config_groups:\n        g:\n          weights: {num_bits: 4, "
      "strategy: channel}\n",
      "config_groups.g.targets: name the modules");
  bad("s:\n  m_modifiers:\n    GPTQModifier:\n      targets: [Linear]\n      config_groups:\n        g:\n"
      "          targets: [Linear]\n          weights: {num_bits: 4, strategy: channel}\n",
      "with config_groups, each group names its targets");
  // targets and ignore narrow the step; several config groups give per-module formats.
  const Recipe sel = parse_recipe(
      "s:\n  m_modifiers:\n    SparseGPTModifier: {sparsity: 0.5, targets: ['re:model.layers.[01]\\.'], ignore: "
      "[model.layers.1.mlp]}\n"
      "q:\n  calibration: {file: other.txt, samples: 3}\n  m_modifiers:\n    GPTQModifier:\n      ignore: [lm_head, "
      "'re:.*layers.0.self_attn']\n      config_groups:\n"
      "        a: {targets: [Linear], weights: {num_bits: 4, strategy: group, group_size: 32, symmetric: false}}\n"
      "        b: {targets: ['re:.*down_proj$'], weights: {num_bits: 8, strategy: channel}}\n",
      "r");
  const ModuleSelector& ps = sel.steps[0].prune.select;
  EXPECT_TRUE(ps.selects("model.layers.0.mlp.up_proj"));
  EXPECT_FALSE(ps.selects("model.layers.1.mlp.up_proj"));
  EXPECT_TRUE(ps.selects("model.layers.1.self_attn.q_proj"));
  EXPECT_FALSE(ps.selects("model.layers.2.self_attn.q_proj"));
  const RecipeStep& q = sel.steps[1];
  EXPECT_EQ(q.quantize.type, "int4-g32-asym");
  ASSERT_EQ(q.groups.size(), 1u);
  EXPECT_EQ(q.groups[0].second.name(), "int8-ch");
  EXPECT_TRUE(q.groups[0].first.selects("model.layers.3.mlp.down_proj"));
  EXPECT_FALSE(q.groups[0].first.selects("model.layers.3.mlp.up_proj"));
  EXPECT_FALSE(q.select.selects("model.layers.0.self_attn.o_proj"));
  EXPECT_TRUE(q.select.selects("model.layers.1.self_attn.o_proj"));
  CalibrationOptions base;
  base.file = "cmd.txt";
  base.ctx = 64;
  const CalibrationOptions c = q.calib.over(base);
  EXPECT_EQ(c.file, "other.txt");
  EXPECT_EQ(c.samples, 3);
  EXPECT_EQ(c.ctx, 64);
  EXPECT_EQ(sel.steps[0].calib.over(base).file, "cmd.txt");
  // lmpress's own modifiers.
  const Recipe own = parse_recipe(
      "d:\n  run_type: train\n  training_modifiers:\n    DistillationModifier: {loss: rkl, steps: 3, lr: 0.001}\n"
      "l:\n  m_modifiers:\n    LowRankModifier: {method: asvd, ratio: 0.3, global: true, ignore: [model.layers.0]}\n",
      "r");
  EXPECT_EQ(own.steps[0].kind, RecipeStep::Kind::Distill);
  EXPECT_EQ(own.steps[0].distill.loss, "rkl");
  EXPECT_EQ(own.steps[0].distill.steps, 3);
  EXPECT_EQ(own.steps[1].kind, RecipeStep::Kind::LowRank);
  EXPECT_EQ(own.steps[1].lowrank.method, LowRankMethod::Asvd);
  EXPECT_TRUE(own.steps[1].lowrank.global);
  EXPECT_FALSE(own.steps[1].lowrank.select.selects("model.layers.0.mlp.up_proj"));
  bad("l:\n  m_modifiers:\n    LowRankModifier: {ratio: 0.3}\nq:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16}\n",
      "low-rank compression must come last");
  bad("l:\n  m_modifiers:\n    LowRankModifier: {ratio: 0.3, rank: 4}\n", "give ratio or rank");
  bad("l:\n  m_modifiers:\n    LowRankModifier: {ratio: 1.3}\n", "ratio 1.3");
  bad("d:\n  m_modifiers:\n    DistillationModifier: {}\n", "its stage needs run_type: train");
  bad("d:\n  run_type: train\n  m_modifiers:\n    DistillationModifier: {loss: ce}\n", "a distillation loss");
  bad("d:\n  calibration: {file: x, chunks: 3}\n  m_modifiers:\n    WandaModifier: {sparsity: 0.5}\n",
      "calibration.chunks is not a calibration field");
  bad("s:\n  m_modifiers:\n    SparseGPTModifier: {sparsity: 0.6, mask_structure: '2:4'}\n", "disagrees with mask_structure");
  bad("s:\n  m_modifiers:\n    SparseGPTModifier: {sparsity: 1.5}\n", "sparsity 1.5");
  bad("s:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16}\n    WandaModifier: {sparsity: 0.5}\n", "it must come last");
  bad("s:\n  run_type: train\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16}\n", "a train stage holds DistillationModifier only");
  bad("s:\n  m_modifiers:\n    FooModifier: {}\n", "unknown modifier");
  bad("s:\n  m_modifiers:\n    SpinQuantModifier: {rotations: [R1, R2, R3]}\n", "rotations R3: nothing of it");
  bad("s:\n  m_modifiers:\n    SpinQuantModifier: {rotations: [R2]}\n", "R2 alone is not built");
  bad("s:\n  m_modifiers:\n    SpinQuantModifier: {transform_type: random-matrix}\n", "transform_type 'random-matrix'");
  bad("s:\n  m_modifiers:\n    SpinQuantModifier: {learnable: true}\n", "learnable: only fixed rotations");
  bad("s:\n  m_modifiers:\n    SpinQuantModifier: {transform_block_size: 128}\n", "SpinQuantModifier.transform_block_size");
  const Recipe spin = parse_recipe("s:\n  m_modifiers:\n    SpinQuantModifier: {rotations: [r1]}\n", "r");
  EXPECT_EQ(spin.steps[0].kind, RecipeStep::Kind::Rotate);
  EXPECT_FALSE(spin.steps[0].rotate.heads);
  EXPECT_FALSE(spin.steps[0].rotate.down);
  const Recipe r4 = parse_recipe("s:\n  m_modifiers:\n    SpinQuantModifier: {rotations: [R1, R2, R4]}\n", "r");
  EXPECT_TRUE(r4.steps[0].rotate.heads);
  EXPECT_TRUE(r4.steps[0].rotate.down);
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

// Several config groups and an ignore list write what `quantize --tensor-type ffn_down=int8-ch --ignore ...` writes.
TEST(RecipeCli, ConfigGroupsEqualPerModuleOverrides) {
  if (!test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string m = test::shared_path("models/lmp-8m"), d = test::temp_dir();
  const std::string calib = " --calib " + test::shared_path("data/calib/docs-calib.txt") + " --calib-samples 4 --calib-ctx 64";
  auto r = test::run_cli("apply " + doc("per-module-w4a16.yaml") + " " + m + " " + d + "/recipe" + calib);
  ASSERT_EQ(r.status, 0) << r.out;
  r = test::run_cli("quantize " + m + " " + d + "/cli --type int4-g32-asym --method gptq --format compressed-tensors "
                    "--tensor-type ffn_down=int8-ch --ignore 're:model\\.layers\\.0\\.self_attn\\.'" + calib);
  ASSERT_EQ(r.status, 0) << r.out;
  for (const char* f : {"model.safetensors", "config.json"})
    EXPECT_TRUE(read_text_file(d + "/recipe/" + f) == read_text_file(d + "/cli/" + f)) << f;
  const auto qc = nlohmann::json::parse(read_text_file(d + "/recipe/config.json"))["quantization_config"];
  EXPECT_EQ(qc["config_groups"].size(), 2u);
  EXPECT_EQ(qc["ignore"].size(), 5u) << qc["ignore"].dump();  // lm_head and block 0's q/k/v/o
}

// Per-stage calibration, a pruning step's targets, lmpress's DistillationModifier (the input model teaching) and
// LowRankModifier: the same tensors as `prune`, `finetune --teacher` and `lowrank` run by hand.
TEST(RecipeCli, StagesWithTheirOwnCalibrationDistillAndLowRank) {
  if (!test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string m = test::shared_path("models/lmp-8m"), d = test::temp_dir();
  const std::string docs = test::shared_path("data/calib/docs-calib.txt"), wiki = test::shared_path("data/wikitext-2/wiki.test.raw");
  const std::string recipe = d + "/r.yaml";
  {
    std::ofstream f(recipe);
    f << "sparsity_stage:\n  calibration: {file: '" << docs << "', samples: 4, ctx: 64}\n  sparsity_modifiers:\n"
      << "    SparseGPTModifier: {sparsity: 0.5, mask_structure: '2:4', targets: ['re:model\\.layers\\.[0-2]\\.']}\n"
      << "recovery_stage:\n  run_type: train\n  training_modifiers:\n"
      << "    DistillationModifier: {loss: kl, steps: 2, batch: 2, ctx: 64, lr: 0.0005}\n"
      << "lowrank_stage:\n  lowrank_modifiers:\n    LowRankModifier: {method: svd, ratio: 0.2, ignore: [model.layers.0]}\n";
  }
  // The command's calibration (wiki) trains; the sparsity stage calibrates on its own file.
  auto r = test::run_cli("apply " + recipe + " " + m + " " + d + "/recipe.gguf --calib " + wiki);
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_EQ(test::run_cli("prune " + m + " " + d + "/p.gguf --method sparsegpt --nm 2:4 --calib " + docs +
                          " --calib-samples 4 --calib-ctx 64 --targets 're:model\\.layers\\.[0-2]\\.'")
                .status,
            0);
  r = test::run_cli("finetune " + d + "/p.gguf " + d + "/f.gguf --teacher " + m +
                    " --loss kl --steps 2 --batch 2 --ctx 64 --lr 0.0005 --data " + wiki);
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_EQ(test::run_cli("lowrank " + d + "/f.gguf " + d + "/cli.gguf --method svd --ratio 0.2 --ignore model.layers.0").status, 0);
  const GGUFFile a = GGUFFile::open(d + "/recipe.gguf"), b = GGUFFile::open(d + "/cli.gguf");
  const std::vector<Tensor> ta = a.tensors(), tb = b.tensors();
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); i++) {
    EXPECT_EQ(ta[i].name, tb[i].name);
    ASSERT_EQ(ta[i].nbytes, tb[i].nbytes) << ta[i].name;
    EXPECT_EQ(std::memcmp(ta[i].data, tb[i].data, ta[i].nbytes), 0) << ta[i].name;
  }
  EXPECT_TRUE(a.get_string("lmpress.recipe").has_value());
  int factorized = 0;
  for (const auto& t : ta) factorized += t.name.ends_with(".lr_a");
  EXPECT_EQ(factorized, 5 * 7);  // block 0 left dense
  // Only the intermediate files' owners remain: the recipe's are gone.
  for (const auto& e : std::filesystem::directory_iterator(d))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
  test::expect_cli_error("apply " + recipe + " " + m + " " + d + "/x.gguf", "DistillationModifier needs training text");
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
