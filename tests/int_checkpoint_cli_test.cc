// `quantize --type intN-... --format gptq|awq|compressed-tensors`: each layout
// decoded by numpy code written from the format notes (tests/decode_checkpoints.py,
// not lmpress's code) equals the values lmpress quantized to, and lmpress
// reads each back as the same model.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <fstream>

#include "core/mapped_file.h"
#include "io/safetensors.h"
#include "model/repack.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

using test::expect_cli_error;
using test::run_cli;

std::string python() {
  for (const char* py : {"/usr/bin/python3", "python3"})
    if (test::shell(std::string(py) + " -c 'import numpy' 2>/dev/null").status == 0) return py;
  return "";
}

double ppl_of(const std::string& model) {
  auto r = run_cli("perplexity " + model + " -f " + test::shared_path("data/wikitext-2/wiki.test.raw") +
                   " --ctx 128 --chunks 3 --json");
  EXPECT_EQ(r.status, 0) << r.out;
  return nlohmann::json::parse(r.out.substr(r.out.find('{')))["ppl"].get<double>();
}

// decode_checkpoints.py on the checkpoints `dirs` against the values lmpress quantized to (the GPTQ one at
// <stem>-gptq, converted to f32 as <stem>-ref): its output, the test failing when it does.
std::string decode_independently(const std::string& py, const std::string& stem, const std::string& dirs) {
  const std::string ref = stem + "-ref";
  EXPECT_EQ(run_cli("convert " + stem + "-gptq " + ref + " --dtype f32").status, 0);
  auto r = test::shell(py + " " + LMPRESS_SOURCE_DIR + "/tests/decode_checkpoints.py " + ref + dirs + " 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
  return r.out;
}

TEST(IntCheckpointCli, EveryLayoutDecodesIndependentlyToTheSameWeights) {
  if (!test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string py = python();
  ASSERT_FALSE(py.empty()) << "python3 with numpy is needed: apt-get install python3-numpy (scripts/setup.sh)";
  const std::string m = test::shared_path("models/lmp-8m"), d = test::temp_dir();
  for (const std::string type : {"int4-g32-asym", "int4-g96", "int8-ch"}) {
    std::vector<std::string> formats = {"gptq", "compressed-tensors"};
    if (type.rfind("int4", 0) == 0) formats.push_back("awq");
    std::string dirs;
    double first = 0;
    for (const auto& f : formats) {
      const std::string out = d + "/" + type + "-" + f;
      auto r = run_cli("quantize " + m + " " + out + " --type " + type + " --format " + f);
      ASSERT_EQ(r.status, 0) << r.out;
      const auto cfg = nlohmann::json::parse(read_text_file(out + "/config.json"))["quantization_config"];
      EXPECT_EQ(cfg["quant_method"], f) << cfg.dump();
      dirs += " " + out;
      // Read back by lmpress: the same values, so the same perplexity to the last digit.
      const double p = ppl_of(out);
      if (f == "gptq") first = p;
      EXPECT_EQ(p, first) << type << " " << f;
    }
    const std::string out = decode_independently(py, d + "/" + type, dirs);
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), long(formats.size())) << out;
  }
}

// Mixtures of experts (a Qwen2-MoE with a gated shared expert, a Mixtral): every expert in the checkpoint
// layout under its HF module name (vLLM's fused-MoE loaders read them so), the routers and shared-expert gate
// F16 and named unquantized; decoded independently; read back as the same model in every layout.
TEST(IntCheckpointCli, MixturesInEveryLayout) {
  const std::string py = python();
  ASSERT_FALSE(py.empty()) << "python3 with numpy is needed";
  const std::string d = test::temp_dir();
  for (const std::string shape : {"qwen1.5-moe-a2.7b", "mixtral-8x7b"}) {
    const std::string m = test::small_moe(d, shape), moe = shape == "mixtral-8x7b" ? "block_sparse_moe" : "mlp";
    const std::string expert = "model.layers.1." + moe + ".experts.15." + (moe == "mlp" ? "down_proj" : "w2");
    std::string dirs;
    double first = 0;
    for (const std::string f : {"gptq", "awq", "compressed-tensors"}) {
      const std::string out = d + "/" + shape + "-" + f;
      auto r = run_cli("quantize " + m + " " + out + " --type int4-g32-asym --format " + f + " --json");
      ASSERT_EQ(r.status, 0) << r.out;
      // 2 blocks: 4 attention linears, 16 experts of 3, the shared expert's 3 (Qwen2-MoE).
      EXPECT_EQ(nlohmann::json::parse(r.out.substr(r.out.find('{')))["tensors"].size(),
                size_t(2 * (4 + 48 + (moe == "mlp" ? 3 : 0))));
      const std::vector<Tensor> ts = load_safetensors_dir(out);
      std::set<std::string> names;
      for (const auto& t : ts) names.insert(t.name);
      EXPECT_TRUE(names.count(expert + (f == "compressed-tensors" ? ".weight_packed" : ".qweight"))) << f;
      EXPECT_TRUE(names.count("model.layers.0." + moe + ".gate.weight")) << f;
      const auto qc = nlohmann::json::parse(read_text_file(out + "/config.json"))["quantization_config"];
      const std::string router = "model.layers.0." + moe + ".gate";
      if (f == "compressed-tensors") {
        const auto& ig = qc["ignore"];
        EXPECT_NE(std::find(ig.begin(), ig.end(), router), ig.end()) << ig.dump();
        if (moe == "mlp")
          EXPECT_NE(std::find(ig.begin(), ig.end(), "model.layers.1.mlp.shared_expert_gate"), ig.end()) << ig.dump();
      }
      if (f == "awq") {
        const auto& skip = qc["modules_to_not_convert"];
        EXPECT_NE(std::find(skip.begin(), skip.end(), router), skip.end()) << skip.dump();
      }
      dirs += " " + out;
      const double p = ppl_of(out);
      if (f == "gptq") first = p;
      EXPECT_EQ(p, first) << shape << " " << f;
    }
    const std::string out = decode_independently(py, d + "/" + shape, dirs);
    EXPECT_NE(out.find(std::to_string(2 * (4 + 48 + (moe == "mlp" ? 3 : 0))) + " linears decoded"), std::string::npos)
        << out;
  }
}

// GPTQ and AWQ onto int-N checkpoints of a mixture: each expert solved on the rows routed to it (an expert no
// calibration token reached is rounded to nearest, named in the report); both closer to the source than RTN.
// A layer's experts are one fused layer in vLLM: a per-module format or target that splits them is refused.
TEST(IntCheckpointCli, CalibratedMixturesAndTheirLimits) {
  const std::string d = test::temp_dir(), m = test::small_moe(d, "qwen1.5-moe-a2.7b");
  const std::string calib = " --calib " + std::string(LMPRESS_SOURCE_DIR) + "/tests/data/imatrix_text.txt --calib-samples 8 --calib-ctx 64";
  std::map<std::string, double> kld;
  for (const std::string method : {"rtn", "gptq", "awq"}) {
    const std::string out = d + "/" + method;
    auto r = run_cli("quantize " + m + " " + out + " --type int4-g32-asym --format " + (method == "awq" ? "awq" : "gptq") +
                     " --method " + method + (method == "rtn" ? "" : calib) + " --json");
    ASSERT_EQ(r.status, 0) << r.out;
    const auto rep = nlohmann::json::parse(r.out.substr(r.out.find('{')));
    size_t solved = 0, int_n = 0;  // the routers are reported as F16
    for (const auto& t : rep["tensors"])
      if (t["type"] == "int4-g32-asym") int_n++, solved += t.contains("output_error");
    const size_t uncalibrated = rep.contains("uncalibrated") ? rep["uncalibrated"].size() : 0;
    EXPECT_EQ(int_n, 110u) << method;
    if (method != "rtn") EXPECT_EQ(solved + uncalibrated, int_n) << method;
    r = run_cli("kld " + m + " " + out + " -f " + test::shared_path("data/wikitext-2/wiki.test.raw") +
                " -c 128 --chunks 10 --json");
    ASSERT_EQ(r.status, 0) << r.out;
    kld[method] = nlohmann::json::parse(r.out.substr(r.out.find('{')))["kld"]["value"].get<double>();
  }
  EXPECT_LT(kld["gptq"], 0.5 * kld["rtn"]);  // measured: 0.000225 vs 0.00136
  EXPECT_LT(kld["awq"], kld["rtn"]);         // 0.00079
  // The shared expert is an ordinary MLP: a format of its own is written as a per-module rule.
  ASSERT_EQ(run_cli("quantize " + m + " " + d + "/sh --type int4-g32 --format gptq --tensor-type ffn_down_shexp=int8-ch").status, 0);
  const auto qc = nlohmann::json::parse(read_text_file(d + "/sh/config.json"))["quantization_config"];
  EXPECT_TRUE(qc["dynamic"].contains(R"(+:model\.layers\.1\.mlp\.shared_expert\.down_proj$)")) << qc.dump();
  const std::string q = "quantize " + m + " " + d + "/x --type int4-g32 ";
  expect_cli_error(q + "--tensor-type ffn_down=int8-ch", "model.layers.0.mlp.experts.0.down_proj is int8-ch: vLLM runs a layer's routed experts");
  expect_cli_error(q + "--targets model.layers.0.self_attn", "is unquantized: vLLM runs a layer's routed experts");
  // llm-compressor's MoE recipes ignore the routers by name; they stay f16 either way. A name that is no module
  // stays an error.
  auto r = run_cli(q + "--format compressed-tensors --ignore 're:.*mlp.gate$' --ignore lm_head");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto ig = nlohmann::json::parse(read_text_file(d + "/x/config.json"))["quantization_config"]["ignore"];
  EXPECT_NE(std::find(ig.begin(), ig.end(), "model.layers.1.mlp.gate"), ig.end()) << ig.dump();
  expect_cli_error(q + "--ignore 're:.*mlp.gates$'", "names no module of the model");
  // The same ignore list in an llm-compressor recipe (whose quantization entries must name linears).
  std::ofstream(d + "/r.yaml") << ("quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      ignore: [\"lm_head\", "
                       "\"re:.*mlp.gate$\"]\n      targets: [\"Linear\"]\n      scheme: W4A16\n");
  r = run_cli("apply " + d + "/r.yaml " + m + " " + d + "/rx");
  ASSERT_EQ(r.status, 0) << r.out;
}

// W8A8 (`--scheme w8a8`, with SmoothQuant): compressed-tensors int-quantized, int8 weights per channel decoded
// independently to what lmpress reads; the activations are int8 per token when lmpress runs it, within 1% of f32.
TEST(IntCheckpointCli, W8A8IsIntQuantizedWithTokenActivations) {
  if (!test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string py = python();
  ASSERT_FALSE(py.empty()) << "python3 with numpy is needed";
  const std::string m = test::shared_path("models/lmp-8m"), d = test::temp_dir();
  const std::string calib = " --calib " + test::shared_path("data/calib/docs-calib.txt") + " --calib-samples 8 --calib-ctx 128";
  auto r = run_cli("quantize " + m + " " + d + "/w8a8 --scheme w8a8 --smooth 0.5" + calib);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto qc = nlohmann::json::parse(read_text_file(d + "/w8a8/config.json"))["quantization_config"];
  EXPECT_EQ(qc["format"], "int-quantized");
  const auto& g = qc["config_groups"]["group_0"];
  EXPECT_EQ(g["weights"]["num_bits"], 8);
  EXPECT_EQ(g["weights"]["strategy"], "channel");
  EXPECT_EQ(g["input_activations"], nlohmann::json::parse(R"({"num_bits": 8, "type": "int", "symmetric": true,
                                                              "strategy": "token", "dynamic": true})"));
  const auto info = nlohmann::json::parse(run_cli("info " + d + "/w8a8 --json").out);
  std::map<std::string, std::string> types;
  for (const auto& t : info["tensors"]) types[t["name"]] = t["dtype"];
  EXPECT_EQ(types["blk.0.attn_q.weight"], "F32");  // read as the exact int8 × scale values
  EXPECT_NE(info["format"].get<std::string>().find("w8a8"), std::string::npos) << info["format"];
  ASSERT_EQ(run_cli("convert " + d + "/w8a8 " + d + "/ref --dtype f32").status, 0);
  r = test::shell(py + " " + LMPRESS_SOURCE_DIR + "/tests/decode_checkpoints.py " + d + "/ref " + d + "/w8a8 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
  // Activations int8 per token: the W8A8 model differs from its weights alone, both within 1% of f32.
  const double f32 = ppl_of(m), w8a8 = ppl_of(d + "/w8a8"), w8 = ppl_of(d + "/ref");
  EXPECT_NE(w8a8, w8);
  EXPECT_LT(std::fabs(w8a8 / f32 - 1), 0.01) << w8a8 << " vs " << f32;
  EXPECT_LT(std::fabs(w8 / f32 - 1), 0.01) << w8 << " vs " << f32;
  expect_cli_error("quantize " + m + " " + d + "/x --scheme w4a4", "--scheme w4a4: w8a8 (int8 weights per channel) or w4a8");
  expect_cli_error("quantize " + m + " " + d + "/x --scheme w8a8 --type int4-g128", "--type int4-g128 disagrees");
  expect_cli_error("quantize " + m + " " + d + "/x --scheme w8a8 --smooth 1.5" + calib, "--smooth 1.5");
  expect_cli_error("quantize " + m + " " + d + "/x --type int8-ch --smooth 0.5" + calib, "SmoothQuant before --scheme w8a8");
  expect_cli_error("quantize " + m + " " + d + "/x --scheme w8a8 --smooth 0.5", "--calib FILE");
  // Tensors that disagree with int-quantized: a scale without its I8 weight, a scale of the wrong length.
  for (const std::string bad : {"missing", "short"}) {
    const std::string out = d + "/" + bad;
    std::filesystem::copy(d + "/w8a8", out);
    std::filesystem::remove(out + "/model.safetensors");
    const std::vector<Tensor> ts = load_safetensors_dir(d + "/w8a8");
    std::vector<TensorToWrite> keep;
    std::vector<float> one(1, 1.0f);
    for (const Tensor& t : ts) {
      if (t.name == "model.layers.0.mlp.up_proj.weight" && bad == "missing") continue;
      if (t.name == "model.layers.0.mlp.up_proj.weight_scale" && bad == "short") {
        keep.push_back({make_f32_tensor(t.name, {1, 1}, one), {}});
        continue;
      }
      keep.push_back({t, {}});
    }
    write_safetensors(out + "/model.safetensors", keep);
    expect_cli_error("info " + out, bad == "missing" ? "a weight_scale has no I8 weight beside it"
                                                     : "up_proj.weight_scale is F32 [1, 1]; the config's per-channel weights take a scale of [768, 1]");
  }
  auto cfg = nlohmann::json::parse(read_text_file(d + "/w8a8/config.json"));
  cfg["quantization_config"]["config_groups"]["group_0"]["input_activations"]["strategy"] = "tensor";
  std::ofstream(d + "/w8a8/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/w8a8", "input_activations: lmpress computes int8 activations per token");
}

// W4A8 (`--scheme w4a8`): int-quantized as llm-compressor writes its W4A8 preset and vLLM's
// CompressedTensorsW4A8Int reads it — int4 values in [-8, 7] a byte each, scales per channel or per channel and
// group, int8 activations per token — decoded independently to what lmpress reads; per channel the rows are int8
// rows, so they run on the int8 × int8 kernels as W8A8's do.
TEST(IntCheckpointCli, W4A8IsIntQuantizedWithInt4Values) {
  if (!test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string py = python();
  ASSERT_FALSE(py.empty()) << "python3 with numpy is needed";
  const std::string m = test::shared_path("models/lmp-8m"), d = test::temp_dir();
  const std::string calib = " --calib " + test::shared_path("data/calib/docs-calib.txt") + " --calib-samples 8 --calib-ctx 128";
  const double f32 = ppl_of(m);
  for (const std::string type : {"int4-ch", "int4-g32"}) {
    SCOPED_TRACE(type);
    const std::string out = d + "/" + type;
    auto r = run_cli("quantize " + m + " " + out + " --scheme w4a8 --method gptq" +
                     (type == "int4-ch" ? std::string() : " --type " + type) + calib);
    ASSERT_EQ(r.status, 0) << r.out;
    const auto qc = nlohmann::json::parse(read_text_file(out + "/config.json"))["quantization_config"];
    EXPECT_EQ(qc["format"], "int-quantized");
    const auto& g = qc["config_groups"]["group_0"];
    EXPECT_EQ(g["weights"]["num_bits"], 4);
    EXPECT_EQ(g["weights"]["symmetric"], true);
    EXPECT_EQ(g["weights"]["strategy"], type == "int4-ch" ? "channel" : "group");
    EXPECT_EQ(g["input_activations"], nlohmann::json::parse(R"({"num_bits": 8, "type": "int", "symmetric": true,
                                                                "strategy": "token", "dynamic": true})"));
    for (const Tensor& t : load_safetensors_dir(out)) {
      if (t.name == "model.layers.0.mlp.down_proj.weight") {  // [288, 768]
        ASSERT_EQ(t.dtype, DType::I8);
        const auto* v = reinterpret_cast<const int8_t*>(t.data);
        const auto [lo, hi] = std::minmax_element(v, v + t.numel());
        EXPECT_EQ(*lo, -8);
        EXPECT_EQ(*hi, 7);
      }
      if (t.name == "model.layers.0.mlp.down_proj.weight_scale") {
        EXPECT_EQ(t.shape, (std::vector<int64_t>{288, type == "int4-ch" ? 1 : 768 / 32}));
      }
    }
    const auto info = nlohmann::json::parse(run_cli("info " + out + " --json").out);
    EXPECT_NE(info["format"].get<std::string>().find("w4a8 " + type), std::string::npos) << info["format"];
    ASSERT_EQ(run_cli("convert " + out + " " + out + "-ref --dtype f32").status, 0);
    r = test::shell(py + " " + LMPRESS_SOURCE_DIR + "/tests/decode_checkpoints.py " + out + "-ref " + out + " 2>&1");
    EXPECT_EQ(r.status, 0) << r.out;
    // Activations int8 per token: the model differs from its weights alone; 4-bit weights on this 8M model cost
    // a few percent.
    const double w4a8 = ppl_of(out), w4 = ppl_of(out + "-ref");
    EXPECT_NE(w4a8, w4);
    EXPECT_LT(std::fabs(w4a8 / f32 - 1), 0.1) << w4a8 << " vs " << f32;
    if (type == "int4-ch") {
      auto run = load_for_inference(out);
      EXPECT_EQ(run->find("blk.0.ffn_down.weight")->dtype, DType::I8_X8);
    }
  }
  // A config whose group size disagrees with the stored scales.
  auto cfg = nlohmann::json::parse(read_text_file(d + "/int4-g32/config.json"));
  cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"] = 16;
  std::ofstream(d + "/int4-g32/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/int4-g32", "the config's group-16 weights take a scale of");
  expect_cli_error("quantize " + m + " " + d + "/x --scheme w4a8 --type int4-g32-asym", "--type int4-g32-asym disagrees");
  expect_cli_error("quantize " + m + " " + d + "/x --scheme w4a8 --type int8-ch", "--type int8-ch disagrees");
  expect_cli_error("quantize " + m + " " + d + "/x --scheme w4a8 --type int4-g32 --act-order --method gptq" + calib,
                   "no weight_g_idx");
  EXPECT_FALSE(std::filesystem::exists(d + "/x"));
}

// A 2:4-pruned model's weight-only compressed-tensors checkpoint carries a `dense` sparsity_config with the share of
// zeros; a model that is not 2:4, and W8A8 (vLLM's 2:4 int8 path is gone), carry none; lmpress reads it back.
TEST(IntCheckpointCli, TwoOfFourModelsRecordTheirSparsity) {
  if (!test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string m = test::shared_path("models/lmp-8m"), d = test::temp_dir();
  ASSERT_EQ(run_cli("prune " + m + " " + d + "/sp.gguf --method magnitude --nm 2:4").status, 0);
  auto sparsity = [&](const std::string& args, const std::string& out) {
    auto r = run_cli("quantize " + args + " " + d + "/" + out);
    EXPECT_EQ(r.status, 0) << r.out;
    return nlohmann::json::parse(read_text_file(d + "/" + out + "/config.json"))["quantization_config"]["sparsity_config"];
  };
  const auto sc = sparsity(d + "/sp.gguf --type int4-g32 --format compressed-tensors", "ct");
  EXPECT_EQ(sc["format"], "dense");
  EXPECT_EQ(sc["sparsity_structure"], "2:4");
  EXPECT_EQ(sc["targets"], nlohmann::json::array({"Linear"}));
  EXPECT_EQ(sc["ignore"], nlohmann::json::array({"lm_head"}));
  // Half of every linear, and the few weights RTN rounds to zero besides.
  EXPECT_GE(sc["global_sparsity"].get<double>(), 0.5);
  EXPECT_LT(sc["global_sparsity"].get<double>(), 0.6);
  EXPECT_EQ(nlohmann::json::parse(read_text_file(d + "/ct/quantize_config.json"))["sparsity_config"], sc);
  EXPECT_EQ(run_cli("info " + d + "/ct").status, 0);
  EXPECT_EQ(sparsity(m + " --type int4-g32 --format compressed-tensors", "dense"), nlohmann::json::object());
  EXPECT_EQ(sparsity(d + "/sp.gguf --scheme w8a8", "w8a8"), nlohmann::json::object());
}

// Per-module formats (--tensor-type PATTERN=TYPE, --targets, --ignore): each layout's own spelling (GPTQ's
// dynamic rules, compressed-tensors' config groups and ignore list, AWQ's modules_to_not_convert) is resolved by
// the independent decoder as the engines resolve it, and lmpress reads every layout back as the same model.
TEST(IntCheckpointCli, PerModuleFormatsAreSpelledAsEachEngineReadsThem) {
  if (!test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string py = python();
  ASSERT_FALSE(py.empty()) << "python3 with numpy is needed";
  const std::string m = test::shared_path("models/lmp-8m"), d = test::temp_dir();
  // Block 2's q/k/v (one fused layer in vLLM) int8 too: their names must reach vLLM's qkv_proj.
  const std::string mixed = R"( --type int4-g32-asym --tensor-type ffn_down=int8-ch --tensor-type 'blk\.2\.attn_[qkv]=int8-ch')"
                            " --ignore model.layers.0.self_attn";
  double first = 0;
  for (const std::string f : {"gptq", "compressed-tensors", "awq"}) {
    const std::string out = d + "/" + f;
    // AWQ holds one format: leaving modules out is all it can say.
    const std::string args = f == "awq" ? " --type int4-g32-asym --ignore model.layers.0.self_attn" : mixed;
    auto r = run_cli("quantize " + m + " " + out + args + " --format " + f + " --json");
    ASSERT_EQ(r.status, 0) << r.out;
    std::map<std::string, std::string> types;
    const auto rep = nlohmann::json::parse(r.out.substr(r.out.find('{')));
    for (const auto& t : rep["tensors"]) types[t["name"]] = t["type"];
    EXPECT_EQ(types.count("blk.0.attn_q.weight"), 0u);  // left out: not quantized
    EXPECT_EQ(types["blk.1.attn_q.weight"], "int4-g32-asym");
    EXPECT_EQ(types["blk.3.ffn_down.weight"], f == "awq" ? "int4-g32-asym" : "int8-ch");
    EXPECT_EQ(types["blk.2.attn_k.weight"], f == "awq" ? "int4-g32-asym" : "int8-ch");
    const auto info = nlohmann::json::parse(run_cli("info " + out + " --json").out);
    EXPECT_NE(info["format"].get<std::string>().find("per-module formats"), std::string::npos) << info["format"];
    ASSERT_EQ(run_cli("convert " + out + " " + out + "-ref --dtype f32").status, 0);
    r = test::shell(py + " " + LMPRESS_SOURCE_DIR + "/tests/decode_checkpoints.py " + out + "-ref " + out + " 2>&1");
    EXPECT_EQ(r.status, 0) << r.out;
    // 6 blocks of 7 linears, 4 left out.
    EXPECT_NE(r.out.find("38 linears decoded"), std::string::npos) << r.out;
    const double p = ppl_of(out);
    if (f == "gptq") first = p;
    if (f != "awq") EXPECT_EQ(p, first) << f;
  }
  // The left-out linears are the source's weights (f16), so leaving out more moves the model toward the source.
  const auto src = nlohmann::json::parse(run_cli("info " + m + " --json").out);
  ASSERT_EQ(run_cli("convert " + m + " " + d + "/f16 --dtype f16").status, 0);
  const std::vector<Tensor> a = load_safetensors_dir(d + "/gptq"), b = load_safetensors_dir(d + "/f16");
  auto find = [](const std::vector<Tensor>& v, const std::string& n) -> const Tensor* {
    for (const auto& t : v)
      if (t.name == n) return &t;
    return nullptr;
  };
  for (const char* n : {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.o_proj.weight"}) {
    const Tensor *x = find(a, n), *y = find(b, n);
    ASSERT_TRUE(x && y) << n;
    ASSERT_EQ(x->nbytes, y->nbytes) << n;
    EXPECT_EQ(std::memcmp(x->data, y->data, x->nbytes), 0) << n;
  }
  // --targets: only the MLPs of blocks 1 and 2 quantized (a Python regex matched at the start).
  auto r = run_cli("quantize " + m + " " + d + "/t --type int4-g32 --format compressed-tensors --targets "
                   R"('re:model\.layers\.[12]\.mlp' --json)");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out.substr(r.out.find('{')))["tensors"].size(), 6u);
  const auto qc = nlohmann::json::parse(read_text_file(d + "/t/config.json"))["quantization_config"];
  EXPECT_EQ(qc["ignore"].size(), 1u + 42u - 6u) << qc["ignore"].dump();
  // GPTQ's dynamic rules apply in file order, the first match deciding: here block 0's down_proj takes the
  // int8 rule before the rule leaving block 0 out (read in sorted order, "-:" would come first and refuse its
  // packed tensors).
  ASSERT_EQ(run_cli("quantize " + m + " " + d + "/ord --type int4-g32 --format gptq --tensor-type ffn_down=int8-ch " +
                    R"(--tensor-type 'blk\.0\.(attn|ffn_gate|ffn_up)=f16')")
                .status,
            0);
  const double before = ppl_of(d + "/ord");
  auto cfg = nlohmann::ordered_json::parse(read_text_file(d + "/ord/config.json"));
  auto& dyn = cfg["quantization_config"]["dynamic"];
  dyn = nlohmann::ordered_json::object();
  dyn[".*down_proj$"] = {{"bits", 8}, {"group_size", -1}, {"sym", true}};
  dyn[R"(-:model\.layers\.0\.)"] = nlohmann::ordered_json::object();
  std::ofstream(d + "/ord/config.json") << cfg.dump();
  EXPECT_EQ(ppl_of(d + "/ord"), before);
}

TEST(IntCheckpointCli, BadPerModuleFormatsAreNamedErrors) {
  if (!test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string m = test::shared_path("models/lmp-8m"), d = test::temp_dir();
  const std::string q = "quantize " + m + " " + d + "/x --type int4-g32 ";
  expect_cli_error(q + "--format awq --tensor-type ffn_down=int8-ch", "AWQ checkpoints hold one format");
  expect_cli_error(q + "--tensor-type attn_q=int8-ch", "vLLM fuses a block's q/k/v");
  expect_cli_error(q + "--ignore model.layers.0.mlp.up_proj", "gate/up");
  expect_cli_error(q + "--tensor-type ffn_down=q4_0", "TYPE is an int-N type");
  expect_cli_error(q + "--tensor-type nothing_here=int8-ch", "--tensor-type nothing_here=int8-ch matches none");
  expect_cli_error(q + "--tensor-type '(=int8-ch'", "bad regular expression");
  expect_cli_error(q + "--targets model.layers.9", "'model.layers.9' selects none of the model's linear layers");
  expect_cli_error(q + "--ignore model.layer.0", "quantize --ignore: 'model.layer.0' names no module");
  expect_cli_error(q + "--targets 're:model.(layers'", "quantize --targets: 'model.(layers' is not a regular expression");
  expect_cli_error("quantize " + m + " " + d + "/x --scheme w8a8 --ignore model.layers.0.mlp",
                   "model.layers.0.mlp.gate_proj is left out: W8A8 and W4A8 quantize every linear's activations");
  expect_cli_error("quantize " + m + " " + d + "/x --scheme w8a8 --tensor-type ffn_down=f16", "per-module formats");
  expect_cli_error("quantize " + m + " " + d + "/x.gguf --type q4_0 --ignore model.layers.0.mlp", "--tensor-type PATTERN=f16");
  // A config that leaves a packed linear unquantized, and a dynamic rule lmpress cannot read.
  ASSERT_EQ(run_cli(q + "--format compressed-tensors").status, 0);
  auto cfg = nlohmann::json::parse(read_text_file(d + "/x/config.json"));
  cfg["quantization_config"]["ignore"].push_back("re:.*down_proj$");
  std::ofstream(d + "/x/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/x", "model.layers.0.mlp.down_proj is stored packed, but quantization_config leaves it");
  cfg["quantization_config"]["ignore"] = {"lm_head"};
  cfg["quantization_config"]["config_groups"]["group_0"]["targets"] = {"LlamaDecoderLayer"};
  std::ofstream(d + "/x/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/x", "a class other than Linear is not read");
  ASSERT_EQ(run_cli("quantize " + m + " " + d + "/xg --type int4-g32 --format gptq").status, 0);
  cfg = nlohmann::json::parse(read_text_file(d + "/xg/config.json"));
  cfg["quantization_config"]["dynamic"] = {{"+:.*down_proj", {{"bits", 5}}}};
  std::ofstream(d + "/xg/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/xg", "dynamic.+:.*down_proj.bits 5");
  cfg["quantization_config"]["dynamic"] = {{"+:(?P<x", nlohmann::json::object()}};
  std::ofstream(d + "/xg/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/xg", "is not a regular expression");
}

TEST(IntCheckpointCli, BadFormatsAreNamedErrors) {
  if (!test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string m = test::shared_path("models/lmp-8m"), d = test::temp_dir();
  expect_cli_error("quantize " + m + " " + d + "/x --type int8-ch --format awq", "AWQ checkpoints are 4-bit");
  expect_cli_error("quantize " + m + " " + d + "/x --type int3-g32 --format compressed-tensors", "4 and 8 bits");
  expect_cli_error("quantize " + m + " " + d + "/x.gguf --type q4_0 --format awq", "--format awq: checkpoint formats are for int-N");
  expect_cli_error("quantize " + m + " " + d + "/x --type int4-g32 --format exl2", "--format");
  // A checkpoint whose config names a packing lmpress does not read.
  ASSERT_EQ(run_cli("quantize " + m + " " + d + "/a --type int4-g32 --format awq").status, 0);
  auto cfg = nlohmann::json::parse(read_text_file(d + "/a/config.json"));
  cfg["quantization_config"]["version"] = "gemv";
  std::ofstream(d + "/a/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/a", "version 'gemv': only AWQ's gemm packing is read");
  ASSERT_EQ(run_cli("quantize " + m + " " + d + "/c --type int4-g32-asym --format compressed-tensors").status, 0);
  cfg = nlohmann::json::parse(read_text_file(d + "/c/config.json"));
  cfg["quantization_config"]["format"] = "int-quantized";
  std::ofstream(d + "/c/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/c", "int-quantized checkpoints are read with symmetric weights in column order");
  // Symmetric int4 declared int-quantized (W4A8's layout) but stored packed: its tensors say what is missing.
  ASSERT_EQ(run_cli("quantize " + m + " " + d + "/e --type int4-g32 --format compressed-tensors").status, 0);
  cfg = nlohmann::json::parse(read_text_file(d + "/e/config.json"));
  cfg["quantization_config"]["format"] = "int-quantized";
  std::ofstream(d + "/e/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/e", "a weight_scale has no I8 weight beside it");
  cfg["quantization_config"]["format"] = "pack-quantized";
  cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["strategy"] = "tensor";
  std::ofstream(d + "/c/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/c", "strategy 'tensor'");
  cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["strategy"] = "group";
  cfg["quantization_config"]["sparsity_config"] = {{"format", "sparse-24-bitmask"}, {"sparsity_structure", "2:4"}};
  std::ofstream(d + "/c/config.json") << cfg.dump();
  expect_cli_error("info " + d + "/c", "sparsity_config.format 'sparse-24-bitmask': only `dense` is read");
}

}  // namespace
}  // namespace lmpress
