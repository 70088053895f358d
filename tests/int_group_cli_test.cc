// End-to-end tests of `lmpress quantize --type intN-gG`: the GPTQ-layout
// safetensors directory it writes, decoded here independently with AutoGPTQ's
// formulas, and read back by lmpress.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/fp16.h"
#include "core/mapped_file.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "kernels/to_f32.h"
#include "test_util.h"

namespace lmpress {
namespace {

using test::cli_ppl;
using test::expect_cli_error;
using test::run_cli;

std::string S(const std::string& rel) { return test::shared_path(rel); }
const std::string kModel = "models/lmp-8m";

std::map<std::string, Tensor> tensors_of(const SafetensorsFile& f) {
  std::map<std::string, Tensor> m;
  for (const auto& t : f.tensors) m[t.name] = t;
  return m;
}

int32_t i32_at(const Tensor& t, int64_t i) {
  int32_t v;
  std::memcpy(&v, t.data + i * 4, 4);
  return v;
}

// The layout, decoded with AutoGPTQ's dequantization (4 bits: weight =
// scale · (((qweight >> 4·(c mod 8)) & 15) − (((qzeros >> 4·(r mod 8)) & 15) + 1))),
// is within half a step of the original weight, and lmpress reads it back.
TEST(IntGroupCli, WritesGptqCheckpointThatDecodes) {
  const std::string d = test::temp_dir() + "/int4";
  auto r = run_cli("quantize " + S(kModel) + " " + d + " --type int4-g32 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto rep = nlohmann::json::parse(r.out);
  const auto cfg = nlohmann::json::parse(read_text_file(d + "/config.json"));
  const auto& qc = cfg["quantization_config"];
  EXPECT_EQ(qc["quant_method"], "gptq");
  EXPECT_EQ(qc["bits"], 4);
  EXPECT_EQ(qc["group_size"], 32);
  EXPECT_EQ(qc["sym"], true);
  EXPECT_EQ(qc["desc_act"], false);
  EXPECT_EQ(nlohmann::json::parse(read_text_file(d + "/quantize_config.json")), qc);
  EXPECT_EQ(cfg["torch_dtype"], "float16");

  const auto st = SafetensorsFile::open(d + "/model.safetensors");
  auto t = tensors_of(st);
  EXPECT_EQ(t.count("model.layers.0.mlp.down_proj.weight"), 0u);
  const Tensor& qw = t.at("model.layers.0.mlp.down_proj.qweight");
  const Tensor& qz = t.at("model.layers.0.mlp.down_proj.qzeros");
  const Tensor& sc = t.at("model.layers.0.mlp.down_proj.scales");
  const Tensor& gi = t.at("model.layers.0.mlp.down_proj.g_idx");
  EXPECT_EQ(qw.dtype, DType::I32);
  EXPECT_EQ(qw.shape, (std::vector<int64_t>{768 / 8, 288}));
  EXPECT_EQ(qz.shape, (std::vector<int64_t>{768 / 32, 288 / 8}));
  EXPECT_EQ(sc.dtype, DType::F16);
  EXPECT_EQ(sc.shape, (std::vector<int64_t>{768 / 32, 288}));
  EXPECT_EQ(gi.shape, (std::vector<int64_t>{768}));
  EXPECT_EQ(t.at("model.embed_tokens.weight").dtype, DType::F16);

  const auto src = tensors_of(SafetensorsFile::open(S(kModel) + "/model.safetensors"));
  const Tensor& w = src.at("model.layers.0.mlp.down_proj.weight");
  const auto W = to_f32(w);
  const int64_t rows = 288, cols = 768;
  double max_excess = 0;
  for (int64_t o = 0; o < rows; o += 7)
    for (int64_t c = 0; c < cols; c += 5) {
      const int32_t g = i32_at(gi, c);
      ASSERT_EQ(g, c / 32);
      const uint32_t q = (uint32_t(i32_at(qw, (c / 8) * rows + o)) >> (4 * (c % 8))) & 15;
      const uint32_t z = ((uint32_t(i32_at(qz, g * (rows / 8) + o / 8)) >> (4 * (o % 8))) & 15) + 1;
      uint16_t h;
      std::memcpy(&h, sc.data + (g * rows + o) * 2, 2);
      const float s = f16_to_f32(h);
      const float v = s * (float(q) - float(z));
      max_excess = std::max(max_excess, double(std::fabs(v - W[size_t(o * cols + c)])) - 0.52 * s);
    }
  EXPECT_LE(max_excess, 1e-6);

  // Read back: perplexity close to the f32 model's, size as reported.
  const double base = cli_ppl(S(kModel)), q4 = cli_ppl(d);
  EXPECT_LT(std::fabs(q4 - base) / base, 0.05) << base << " " << q4;
  EXPECT_NEAR(rep["bpw"].get<double>(), 8.2, 0.1);  // embeddings and output in f16 dominate this small model
  auto info = run_cli("info " + d);
  EXPECT_NE(info.out.find("hf-gptq int4-g32"), std::string::npos) << info.out;
}

// From a GGUF input (q/k rows in llama.cpp's RoPE pairing) the checkpoint
// gets HF's pairing: same perplexity as from the HF input. GPTQ with
// act-order writes desc_act and a g_idx that is not c / group.
TEST(IntGroupCli, GgufInputAndActOrder) {
  const std::string d = test::temp_dir();
  ASSERT_EQ(run_cli("convert " + S(kModel) + " " + d + "/m.gguf --dtype f32").status, 0);
  ASSERT_EQ(run_cli("quantize " + S(kModel) + " " + d + "/a --type int3-g32").status, 0);
  ASSERT_EQ(run_cli("quantize " + d + "/m.gguf " + d + "/b --type int3-g32").status, 0);
  EXPECT_NEAR(cli_ppl(d + "/a"), cli_ppl(d + "/b"), 1e-3);

  const std::string calib = " --calib " + S("data/calib/docs-calib.txt") + " --calib-samples 8 --calib-ctx 128";
  auto r = run_cli("quantize " + d + "/m.gguf " + d + "/g --type int4-g32-asym --method gptq --act-order" + calib);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto cfg = nlohmann::json::parse(read_text_file(d + "/g/config.json"));
  EXPECT_EQ(cfg["quantization_config"]["desc_act"], true);
  EXPECT_EQ(cfg["quantization_config"]["sym"], false);
  auto t = tensors_of(SafetensorsFile::open(d + "/g/model.safetensors"));
  const Tensor& gi = t.at("model.layers.1.self_attn.q_proj.g_idx");
  int64_t not_static = 0;
  std::vector<int> count(9, 0);
  for (int64_t c = 0; c < 288; c++) {
    const int32_t g = i32_at(gi, c);
    ASSERT_GE(g, 0);
    ASSERT_LT(g, 9);
    count[size_t(g)]++;
    not_static += g != c / 32;
  }
  EXPECT_GT(not_static, 0);
  for (int n : count) EXPECT_EQ(n, 32);
  const double base = cli_ppl(S(kModel)), q = cli_ppl(d + "/g");
  EXPECT_LT(std::fabs(q - base) / base, 0.05) << base << " " << q;
}

TEST(IntGroupCli, BadInputs) {
  const std::string d = test::temp_dir();
  const std::string in = S(kModel);
  expect_cli_error("quantize " + in + " " + d + "/x --type int4-g128", "cannot be cut into groups of 128");
  expect_cli_error("quantize " + in + " " + d + "/x --type int5-g32", "5 bits is not supported");
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type int4-g32", "not GGUF");
  expect_cli_error("quantize " + in + " " + d + "/x --type int4-g32 --pure", "GGUF file types only");
  expect_cli_error("quantize " + in + " " + d + "/x --type int4-g32 --method gptq --clip-search --calib " + in +
                       "/config.json",
                   "--clip-search is for --method rtn");
  expect_cli_error("quantize " + S("models/stories260K/stories260K.gguf") + " " + d + "/x --type int4-ch",
                   "int32 packing");
  // A checkpoint whose quantization_config lmpress does not read, and one with a broken tensor.
  ASSERT_EQ(run_cli("quantize " + in + " " + d + "/q --type int4-g32").status, 0);
  namespace fs = std::filesystem;
  fs::copy(d + "/q", d + "/awq");
  auto cfg = nlohmann::json::parse(read_text_file(d + "/q/config.json"));
  cfg["quantization_config"]["quant_method"] = "hqq";
  std::ofstream(d + "/awq/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/awq", "quant_method 'hqq' is not supported");
  // GPTQ tensors under an AWQ config: the shapes disagree, named.
  cfg["quantization_config"]["quant_method"] = "awq";
  std::ofstream(d + "/awq/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/awq", "down_proj: scales have 288 columns, qweight packs 2304");
  fs::copy(d + "/q", d + "/bits");
  cfg["quantization_config"]["quant_method"] = "gptq";
  cfg["quantization_config"]["bits"] = 8;  // the tensors hold 4-bit packing
  std::ofstream(d + "/bits/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/bits", "g_idx has 768 entries, expected 384");
  // Per-channel (group_size -1) in the config, per-group scales (and g_idx) in the tensors.
  fs::copy(d + "/q", d + "/ch");
  cfg["quantization_config"]["bits"] = 4;
  cfg["quantization_config"]["group_size"] = -1;
  std::ofstream(d + "/ch/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/ch", "model.layers.0.mlp.down_proj.scales has 24 groups (rows), but "
                                        "quantization_config.group_size -1 over 768 input columns gives 1");
}

}  // namespace
}  // namespace lmpress
