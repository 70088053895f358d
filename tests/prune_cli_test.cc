// `lmpress prune` end to end on lmp-8m: exact sparsity (per row and group for
// N:M) read back from the written file, joint quantization, bad input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "core/tensor.h"
#include "core/tensor_names.h"
#include "io/gguf.h"
#include "kernels/to_f32.h"
#include "model/model.h"
#include "test_util.h"

namespace lmpress {
namespace {

using test::expect_cli_error;
using test::run_cli;

std::string S(const std::string& rel) { return test::shared_path(rel); }
const std::string kCalib = " --calib " + test::shared_path("data/calib/docs-calib.txt") + " --calib-samples 4 --calib-ctx 32";

bool is_block_linear(const std::string& name) {
  return name.rfind("blk.", 0) == 0 && name.find("_norm") == std::string::npos && name.find(".weight") != std::string::npos;
}

TEST(PruneCli, UnstructuredExactAndLoads) {
  const std::string d = test::temp_dir();
  auto r = run_cli("prune " + S("models/lmp-8m") + " " + d + "/m.gguf --method magnitude --sparsity 0.5 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_DOUBLE_EQ(j["sparsity_linear"].get<double>(), 0.5);
  EXPECT_EQ(j["tensors"].size(), 6u * 7u);
  auto m = load_model(d + "/m.gguf");
  int64_t zeros = 0, n = 0;
  for (const auto& t : m->tensors) {
    if (!is_block_linear(t.name)) continue;
    EXPECT_EQ(t.dtype, DType::F32) << t.name;  // the source's type
    const auto v = to_f32(t);
    const int64_t z = std::count(v.begin(), v.end(), 0.0f);
    EXPECT_EQ(z, int64_t(v.size()) / 2) << t.name;
    zeros += z, n += int64_t(v.size());
  }
  EXPECT_EQ(2 * zeros, n);
  EXPECT_EQ(run_cli("perplexity " + d + "/m.gguf -f " + S("data/wikitext-2/wiki.test.raw") + " -c 128 --chunks 2").status, 0);
}

// --targets / --ignore: only the selected linears are pruned (SparseGPT, calibrated); the others are the source's
// weights bit for bit.
TEST(PruneCli, TargetsAndIgnoreChooseTheLinears) {
  // The GGUF source: its q/k rows are in the order the output has (HF's are permuted for RoPE).
  const std::string d = test::temp_dir(), src = S("models/lmp-8m/lmp-8m-f32.gguf");
  auto r = run_cli("prune " + src + " " + d + "/m.gguf --method sparsegpt --nm 2:4" + kCalib +
                   " --targets 're:model\\.layers\\.[0-2]\\.' --ignore model.layers.1.mlp --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["tensors"].size(), 3u * 7u - 3u);
  auto pruned = load_model(d + "/m.gguf");
  auto orig = load_model(src);
  for (const auto& t : pruned->tensors) {
    if (!is_block_linear(t.name)) continue;
    const int64_t l = layer_of(t.name);
    const bool selected = l <= 2 && !(l == 1 && t.name.find("ffn_") != std::string::npos);
    const auto v = to_f32(t), w = to_f32(*orig->find(t.name));
    if (selected) {
      EXPECT_EQ(std::count(v.begin(), v.end(), 0.0f), int64_t(v.size()) / 2) << t.name;
    } else {
      EXPECT_EQ(v, w) << t.name;
    }
  }
  expect_cli_error("prune " + src + " " + d + "/x.gguf --sparsity 0.5 --targets model.layers.6", "prune --targets: 'model.layers.6' selects none");
  expect_cli_error("prune " + src + " " + d + "/x.gguf --sparsity 0.5 --ignore mlp", "prune --ignore: 'mlp' names no module");
}

TEST(PruneCli, NmPatternPerRowAndJointQuantization) {
  const std::string d = test::temp_dir();
  for (const char* method : {"wanda", "sparsegpt"}) {
    SCOPED_TRACE(method);
    const std::string out = d + "/" + method + ".gguf";
    auto r = run_cli("prune " + S("models/lmp-8m") + " " + out + " --method " + method + " --nm 2:4" + kCalib + " --json");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_DOUBLE_EQ(nlohmann::json::parse(r.out)["sparsity_linear"].get<double>(), 0.5);
    auto m = load_model(out);
    for (const auto& t : m->tensors) {
      if (!is_block_linear(t.name)) continue;
      const auto v = to_f32(t);
      int64_t bad = 0;
      for (size_t g = 0; g < v.size(); g += 4) bad += std::count(v.begin() + g, v.begin() + g + 4, 0.0f) < 2;
      EXPECT_EQ(bad, 0) << t.name;
    }
  }
  // SparseGPT + 4-bit in one pass: Q4_0 linears whose pruned weights dequantize to exactly 0.
  auto r = run_cli("prune " + S("models/lmp-8m") + " " + d + "/q.gguf --method sparsegpt --sparsity 0.5 --quantize q4_0" +
                   kCalib + " --json");
  ASSERT_EQ(r.status, 0) << r.out;
  auto m = load_model(d + "/q.gguf");
  for (const auto& t : m->tensors) {
    if (!is_block_linear(t.name)) continue;
    EXPECT_EQ(t.dtype, DType::Q4_0) << t.name;
    const auto v = to_f32(t);
    EXPECT_GE(std::count(v.begin(), v.end(), 0.0f), int64_t(v.size()) / 2) << t.name;
  }
}

// Structured: a physically smaller file that loads and runs.
TEST(PruneCli, StructuredSmallerFile) {
  const std::string d = test::temp_dir();
  ASSERT_EQ(run_cli("convert " + S("models/lmp-8m") + " " + d + "/f32.gguf --dtype f32").status, 0);
  auto r = run_cli("prune " + d + "/f32.gguf " + d + "/s.gguf --structured ffn=0.25,layers=1" + kCalib + " --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["layers"][1], 5);
  EXPECT_EQ(j["ffn"][1], 576);
  EXPECT_EQ(j["removed_blocks"].size(), 1u);
  EXPECT_EQ(j["block_distance"].size(), 6u);
  auto m = load_model(d + "/s.gguf");
  EXPECT_EQ(m->cfg.n_layers, 5);
  EXPECT_EQ(m->n_params(), j["params_after"].get<int64_t>());
  EXPECT_LT(double(std::filesystem::file_size(d + "/s.gguf")), 0.85 * double(std::filesystem::file_size(d + "/f32.gguf")));
  EXPECT_EQ(run_cli("perplexity " + d + "/s.gguf -f " + S("data/wikitext-2/wiki.test.raw") + " -c 128 --chunks 2").status, 0);
}

// OWL: each block gets its own sparsity (mean: the request), and the file has
// exactly that many zeros in each block's matrices.
TEST(PruneCli, OwlBlockSparsities) {
  const std::string d = test::temp_dir();
  auto r = run_cli("prune " + S("models/lmp-8m") + " " + d + "/o.gguf --method magnitude --sparsity 0.6 --owl" + kCalib +
                   " --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  const auto s = j["layer_sparsity"].get<std::vector<double>>();
  ASSERT_EQ(s.size(), 6u);
  double mean = 0;
  for (double x : s) mean += x / 6;
  EXPECT_NEAR(mean, 0.6, 1e-12);
  EXPECT_GT(*std::max_element(s.begin(), s.end()) - *std::min_element(s.begin(), s.end()), 0.1);  // spread 2λ
  auto m = load_model(d + "/o.gguf");
  for (const auto& t : m->tensors) {
    if (!is_block_linear(t.name)) continue;
    const auto v = to_f32(t);
    const double want = std::round(s[size_t(layer_of(t.name))] * double(v.size()));
    EXPECT_EQ(std::count(v.begin(), v.end(), 0.0f), int64_t(want)) << t.name;
  }
}

// --global: one threshold on |w| for all blocks' linears. Read back from the
// file against the dense model: the total is exact, the matrices' sparsities
// differ, and every zeroed weight was no larger than every kept one.
TEST(PruneCli, GlobalMagnitudeOneThreshold) {
  const std::string d = test::temp_dir();
  ASSERT_EQ(run_cli("convert " + S("models/lmp-8m") + " " + d + "/f32.gguf --dtype f32").status, 0);
  auto r = run_cli("prune " + d + "/f32.gguf " + d + "/g.gguf --method magnitude --sparsity 0.6 --global --json");
  ASSERT_EQ(r.status, 0) << r.out;
  auto dense = load_model(d + "/f32.gguf"), pruned = load_model(d + "/g.gguf");
  int64_t zeros = 0, n = 0;
  double largest_zeroed = 0, smallest_kept = 1e30, min_s = 1, max_s = 0;
  for (const auto& t : pruned->tensors) {
    if (!is_block_linear(t.name)) continue;
    const auto p = to_f32(t), w = to_f32(*dense->find(t.name));
    int64_t z = 0;
    for (size_t i = 0; i < p.size(); i++) {
      if (p[i] == 0.0f) {
        z++;
        largest_zeroed = std::max(largest_zeroed, double(std::fabs(w[i])));
      } else {
        EXPECT_EQ(p[i], w[i]) << t.name;  // kept weights are untouched
        smallest_kept = std::min(smallest_kept, double(std::fabs(w[i])));
      }
    }
    const double s = double(z) / double(p.size());
    min_s = std::min(min_s, s);
    max_s = std::max(max_s, s);
    zeros += z;
    n += int64_t(p.size());
  }
  EXPECT_EQ(zeros, std::llround(0.6 * double(n)));
  EXPECT_LE(largest_zeroed, smallest_kept);
  EXPECT_GT(max_s - min_s, 0.05);  // not the uniform 0.6 everywhere
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(r.out)["sparsity_linear"].get<double>(), double(zeros) / double(n));
}

// --compensate on a pruned model: an F16 GGUF adapter of the requested rank
// beside it, each linear's output error lower with the correction, and the
// model with the adapter (perplexity --lora) closer to the dense one.
TEST(PruneCli, CompensationAdapterForTwoOfFour) {
  const std::string d = test::temp_dir(), m = S("models/stories260K/stories260K.gguf");
  const std::string cal = " --calib " + S("data/calib/docs-calib.txt") + " --calib-samples 16 --calib-ctx 128";
  auto r = run_cli("prune " + m + " " + d + "/p.gguf --method wanda --nm 2:4 --compensate rank=8 --json" + cal);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["adapter"]["rank"], 8);
  EXPECT_EQ(j["adapter"]["path"], d + "/p.eora.gguf");
  int compensated = 0;
  for (const auto& t : j["tensors"]) {
    ASSERT_TRUE(t.contains("compensated_error")) << t["name"];
    EXPECT_LT(t["compensated_error"].get<double>(), t["output_error"].get<double>()) << t["name"];
    compensated++;
  }
  EXPECT_EQ(compensated, 7 * 5);
  const GGUFFile a = GGUFFile::open(d + "/p.eora.gguf");
  EXPECT_EQ(a.tensors().size(), size_t(2 * compensated));
  const double plain = test::cli_ppl(d + "/p.gguf"), with = test::cli_ppl(d + "/p.gguf --lora " + d + "/p.eora.gguf");
  EXPECT_LT(with, plain);
}

TEST(PruneCli, BadInputs) {
  const std::string d = test::temp_dir(), m = S("models/lmp-8m"), o = " " + d + "/o.gguf";
  expect_cli_error("prune " + m + o + " --sparsity 1.5", "out of range");
  expect_cli_error("prune " + m + o + " --nm 4:2", "N:M pattern '4:2' is invalid");
  expect_cli_error("prune " + m + o + " --nm 2:5", "groups of 5");
  expect_cli_error("prune " + m + o + " --method wanda --sparsity 0.5", "needs calibration text");
  expect_cli_error("prune " + m + o + " --method obs --sparsity 0.5", "unknown pruning method");
  expect_cli_error("prune " + m + o, "--sparsity S or --nm N:M");
  expect_cli_error("prune " + m + o + " --sparsity 0.5 --quantize q4_k", "cannot hold an exact zero");
  expect_cli_error("prune " + m + o + " --sparsity 0.5 --quantize q9_9", "unknown type");
  ASSERT_EQ(run_cli("quantize " + m + " " + d + "/q.gguf --type q4_0").status, 0);
  expect_cli_error("prune " + d + "/q.gguf" + o + " --sparsity 0.5", "is quantized");
  expect_cli_error("prune " + m + o + " --structured ffn=2" + kCalib, "must be a fraction");
  expect_cli_error("prune " + m + o + " --structured layers=6" + kCalib, "the model has 6 blocks");
  expect_cli_error("prune " + m + o + " --structured ffn=0.2", "--calib FILE");
  expect_cli_error("prune " + m + o + " --sparsity 0.5 --owl", "--owl measures outliers");
  expect_cli_error("prune " + m + o + " --method wanda --sparsity 0.5 --global" + kCalib, "--global ranks raw |w|");
  expect_cli_error("prune " + m + o + " --sparsity 0.5 --compensate rank=4" + kCalib, "--method wanda or sparsegpt");
  expect_cli_error("prune " + m + o + " --method wanda --sparsity 0.5 --compensate-out " + d + "/a.gguf" + kCalib,
                   "--compensate-out without --compensate");
  expect_cli_error("prune " + m + o + " --method wanda --sparsity 0.5 --compensate rank=288" + kCalib,
                   "the rank must be below min(out, in)");
  expect_cli_error("prune " + m + o + " --method wanda --nm 2:4 --quantize q4_0 --compensate rank=4" + kCalib,
                   "--compensate with --method wanda --quantize");
  expect_cli_error("prune " + m + o + " --structured ffn=0.25 --compensate rank=4" + kCalib,
                   "--compensate applies to --sparsity and --nm pruning");
  EXPECT_FALSE(std::filesystem::exists(d + "/o.gguf"));
  // Usage errors: CLI11's exit codes (non-zero, not 1).
  for (const auto& [args, msg] : {std::pair<std::string, std::string>{" --nm 2:4 --owl", "--nm excludes --owl"},
                                  {" --sparsity 0.5 --owl --owl-lambda 0.9", "--owl-lambda: Value 0.9 not in range"},
                                  {" --nm 2:4 --global", "--nm excludes --global"}}) {
    const auto r = run_cli("prune " + m + o + args + kCalib);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.out.find(msg), std::string::npos) << r.out;
  }
}

}  // namespace
}  // namespace lmpress
