// `lmpress make-model` (random weights in real shapes) and `lmpress bench`
// (llama-bench's tests and JSON fields).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "core/mapped_file.h"
#include "eval/speed.h"
#include "io/gguf.h"
#include "model/export.h"
#include "model/model.h"
#include "model/random_model.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

using test::expect_cli_error;
using test::run_cli;

TEST(MakeModel, WritesRealShapesReproducibly) {
  const std::string d = test::temp_dir();
  auto r = run_cli("make-model --shape smollm2-135m --layers 2 --type f32 " + d + "/a.gguf");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto info = nlohmann::json::parse(run_cli("info " + d + "/a.gguf --json").out);
  const auto& c = info["config"];
  EXPECT_EQ(c["hidden_size"], 576);
  EXPECT_EQ(c["num_heads"], 9);
  EXPECT_EQ(c["num_kv_heads"], 3);
  EXPECT_EQ(c["intermediate_size"], 1536);
  EXPECT_EQ(c["vocab_size"], 49152);
  EXPECT_EQ(c["num_layers"], 2);
  EXPECT_EQ(c["tied_embeddings"], true);
  // Weights: mean 0, standard deviation 0.02; norms 1.
  const GGUFFile f = GGUFFile::open(d + "/a.gguf");
  for (const auto& t : f.tensors()) {
    const float* v = reinterpret_cast<const float*>(t.data);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < t.numel(); i++) s += v[i], s2 += double(v[i]) * v[i];
    const double mean = s / double(t.numel()), sd = std::sqrt(s2 / double(t.numel()) - mean * mean);
    if (t.name.find("norm") != std::string::npos) {
      EXPECT_EQ(mean, 1.0) << t.name;
    } else {
      EXPECT_NEAR(mean, 0.0, 0.002) << t.name;
      EXPECT_NEAR(sd, 0.02, 0.001) << t.name;
    }
  }
  // Same seed, same file; another seed, other weights.
  const std::string small = "make-model --shape smollm2-135m --layers 1 --vocab 2048 --type q8_0 ";
  ASSERT_EQ(run_cli(small + d + "/b1.gguf").status, 0);
  ASSERT_EQ(run_cli(small + "-t 1 " + d + "/b2.gguf").status, 0);
  ASSERT_EQ(run_cli(small + "--seed 2 " + d + "/c.gguf").status, 0);
  EXPECT_EQ(read_text_file(d + "/b1.gguf"), read_text_file(d + "/b2.gguf"));
  EXPECT_NE(read_text_file(d + "/b1.gguf"), read_text_file(d + "/c.gguf"));
  // Quantized with llama.cpp's mix; it loads and runs.
  r = run_cli("make-model --shape qwen2.5-0.5b --layers 1 --vocab 1024 --type q4_k_m " + d + "/q.gguf");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto qi = nlohmann::json::parse(run_cli("info " + d + "/q.gguf --json").out);
  std::map<std::string, std::string> types;
  for (const auto& t : qi["tensors"]) types[t["name"]] = t["dtype"];
  EXPECT_EQ(types["blk.0.attn_q.weight"], "Q5_0");  // 896-wide rows do not fit Q4_K: llama.cpp's fallback
  EXPECT_EQ(types["blk.0.ffn_down.weight"], "Q6_K");  // 4864-wide rows do
  EXPECT_EQ(types["blk.0.attn_q.bias"], "F32");
  EXPECT_EQ(qi["config"]["vocab_size"], 1024);
  EXPECT_EQ(qi["config"]["intermediate_size"], 4864);
  r = run_cli("generate " + d + "/q.gguf -p hello -n 4 --json");
  EXPECT_EQ(r.status, 0) << r.out;
  // Llama 3.2's RoPE scaling is written as llama.cpp's rope_freqs tensor.
  ASSERT_EQ(run_cli("make-model --shape llama-3.2-1b --layers 1 --vocab 512 --type q8_0 " + d + "/l.gguf").status, 0);
  EXPECT_NE(run_cli("info " + d + "/l.gguf").out.find("rope_freqs.weight"), std::string::npos);
  // Qwen3 (q/k norms, heads of 128 over a width of 1024): llama.cpp reads it as its qwen3 architecture and
  // computes the same perplexity (llama-perplexity -c 128 --chunks 10 on this file: 4604.8458).
  ASSERT_EQ(run_cli("make-model --shape qwen3-0.6b --layers 1 --vocab 4096 --type f16 " + d + "/q3.gguf").status, 0);
  const auto q3 = nlohmann::json::parse(run_cli("info " + d + "/q3.gguf --json --no-tensors").out);
  EXPECT_EQ(q3["config"]["head_dim"], 128);
  r = run_cli("perplexity " + d + "/q3.gguf -f " + test::shared_path("data/wikitext-2/wiki.test.raw") +
              " -c 128 --chunks 10 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NEAR(nlohmann::json::parse(r.out)["ppl"].get<double>(), 4604.8458, 4604.8458 * 0.001);
  // Gemma 3 (q/k norms, post-norms, GeGLU, five sliding layers with a local RoPE base, then a global one) and
  // Gemma 2 (soft-capped scores and logits), windows of 32 in contexts of 128: llama.cpp reads them as its
  // gemma3 / gemma2 architectures (llama-perplexity -c 128 --chunks 4 on these files: 4948.8587 and
  // 28998337.0448; without the windows lmpress gives 5207.87 and 27304341.5, so each window counts).
  // Granite (embedding, residual, attention and logit multipliers) and SmolLM3 (every 4th layer without RoPE),
  // 4 layers each, and OLMo 2 (post-norms only, q/k norms over all heads), 2 layers: llama-perplexity gives
  // 3783.4084, 5926.9349 and 4985.1855.
  for (const auto& [shape, layers, want] :
       {std::tuple{"granite-3.3-2b", 4, 3783.4084}, std::tuple{"smollm3-3b", 4, 5926.9349},
        std::tuple{"olmo2-1b", 2, 4985.1855}, std::tuple{"gemma3-1b", 6, 4948.8587},
        std::tuple{"gemma2-2b", 2, 28998337.0448}}) {
    SCOPED_TRACE(shape);
    const bool gemma = std::string(shape).starts_with("gemma");
    ASSERT_EQ(run_cli(fmt::format("make-model --shape {} --layers {} --vocab 4096 {} --type f16 {}/g.gguf", shape, layers,
                                  gemma ? "--sliding-window 32" : "", d))
                  .status,
              0);
    r = run_cli("perplexity " + d + "/g.gguf -f " + test::shared_path("data/wikitext-2/wiki.test.raw") +
                " -c 128 --chunks 4 --json");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_NEAR(nlohmann::json::parse(r.out)["ppl"].get<double>(), want, want * 0.001);
  }
  // Phi-3-mini-128k's shape with made-up LongRoPE factors, written as llama.cpp's phi3 (fused attn_qkv and
  // ffn_up, rope_factors_short/long, rope.scaling.attn_factor): llama-perplexity gives 7453.9937. (Renamed:
  // llama.cpp gives a model named phi3 Phi-3's special tokens, which the random vocabulary lacks.)
  ASSERT_EQ(run_cli("make-model --shape phi3-mini-128k --layers 1 --vocab 4096 --type f16 " + d + "/p.gguf").status, 0);
  ASSERT_EQ(run_cli("convert " + d + "/p.gguf " + d + "/p2.gguf --name random").status, 0);
  r = run_cli("perplexity " + d + "/p2.gguf -f " + test::shared_path("data/wikitext-2/wiki.test.raw") +
              " -c 128 --chunks 4 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NEAR(nlohmann::json::parse(r.out)["ppl"].get<double>(), 7453.9937, 7453.9937 * 0.001);
  EXPECT_EQ(nlohmann::json::parse(run_cli("info " + d + "/p2.gguf --json --no-tensors").out)["architecture"], "phi3");
  // Mixtures of experts, a few experts each: OLMoE (q/k norms over all heads, weights not renormalized),
  // Qwen3-MoE (8 of 16 experts, renormalized), Qwen1.5-MoE (a shared expert with its sigmoid gate), read by
  // llama.cpp as its olmoe, qwen3moe and qwen2moe: llama-perplexity gives 5130.1106, 7476.5541 and 3817.4384.
  // DeepSeekMoE (a dense first block, then 4 routed experts all used and 2 ungated shared ones): 6000.4656.
  for (const auto& [shape, layers, experts, want] :
       {std::tuple{"olmoe-1b-7b", 2, 8, 5130.1106}, std::tuple{"qwen3-30b-a3b", 2, 16, 7476.5541},
        std::tuple{"qwen1.5-moe-a2.7b", 1, 8, 3817.4384}, std::tuple{"deepseek-moe-16b", 2, 4, 6000.4656}}) {
    SCOPED_TRACE(shape);
    ASSERT_EQ(run_cli(fmt::format("make-model --shape {} --layers {} --experts {} --vocab 4096 --type f16 {}/e.gguf",
                                  shape, layers, experts, d))
                  .status,
              0);
    r = run_cli("perplexity " + d + "/e.gguf -f " + test::shared_path("data/wikitext-2/wiki.test.raw") +
                " -c 128 --chunks 4 --json");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_NEAR(nlohmann::json::parse(r.out)["ppl"].get<double>(), want, want * 0.001);
  }
  expect_cli_error("make-model --shape smollm2-135m --experts 2 " + d + "/x.gguf", "has no experts");
  expect_cli_error("generate " + d + "/g.gguf -p hello -n 2 --kv-policy h2o:32",
                   "the model attends through a sliding window of 32 positions already");
  expect_cli_error("rotate " + d + "/g.gguf " + d + "/r.gguf", "post-norms");
  expect_cli_error("make-model --shape gpt-5 " + d + "/x.gguf", "unknown shape");
  expect_cli_error("make-model --shape smollm2-135m --type q9 " + d + "/x.gguf", "unknown type");
}

// Mixtral (llama with experts, RoPE pairs permuted as llama.cpp's converter
// writes them) in a shape small enough for a test: 8 experts of 512, 2 per
// token, renormalized. llama-perplexity -c 128 --chunks 4 on this file
// gives 1.0.
// The types ggml quantizes only with an importance matrix: make-model gives
// random weights a uniform one (before, the quantizer's error escaped a
// parallel loop and aborted the process); without one, writing such a type is
// an error, not a crash.
TEST(MakeModel, ImatrixTypesGetUniformImportance) {
  const std::string d = test::temp_dir();
  for (const char* t : {"iq2_xxs", "iq2_xs"}) {
    const auto r = run_cli(fmt::format("make-model --shape smollm2-135m --layers 1 --vocab 2048 --type {} {}/{}.gguf", t, d, t));
    ASSERT_EQ(r.status, 0) << r.out;
    const GGUFFile f = GGUFFile::open(d + "/" + t + ".gguf");
    int64_t of_type = 0;
    for (const auto& x : f.tensors()) of_type += dtype_name(x.dtype) == fmt::format("{}", t == std::string("iq2_xs") ? "IQ2_XS" : "IQ2_XXS");
    EXPECT_GT(of_type, 0) << t;
    EXPECT_EQ(run_cli(fmt::format("generate {}/{}.gguf -p hi -n 2 --ignore-eos", d, t)).status, 0) << t;
  }
  ModelConfig cfg = find_model_shape("smollm2-135m");
  cfg.n_layers = 1;
  cfg.n_vocab = 512;
  auto m = make_random_model(cfg, "smollm2-135m");
  ExportOptions eo;
  eo.type_of = [](const Tensor& t) { return t.name.find("ffn_down") != std::string::npos ? DType::IQ2_XS : DType::F16; };
  eo.values = [](const Tensor& t) { return random_tensor_values(t, 1); };
  test::expect_error([&] { write_gguf_model(*m, d + "/bad.gguf", eo); }, "importance");
  EXPECT_FALSE(std::filesystem::exists(d + "/bad.gguf"));
}

TEST(MakeModel, SmallMixtralAsLlamaCpp) {
  const std::string d = test::temp_dir();
  ModelConfig c = find_model_shape("mixtral-8x7b");
  c.n_vocab = 4096, c.dim = 256, c.n_heads = 8, c.n_kv_heads = 2, c.head_dim = c.rope_dim = 32, c.n_layers = 2;
  c.ffn_dim = c.expert_ffn = 512;
  test::write_random_gguf(c, d + "/mixtral.gguf", 3);
  const GGUFFile g = GGUFFile::open(d + "/mixtral.gguf");
  EXPECT_EQ(g.req_string("general.architecture"), "llama");
  EXPECT_EQ(g.req_int("llama.expert_count"), 8);
  bool stacked = false;
  for (const Tensor& t : g.tensors())
    if (t.name == "blk.1.ffn_down_exps.weight") stacked = t.shape == std::vector<int64_t>{8, 256, 512};
  EXPECT_TRUE(stacked);
  const auto r = run_cli("perplexity " + d + "/mixtral.gguf -f " + test::shared_path("data/wikitext-2/wiki.test.raw") +
                         " -c 128 --chunks 4 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NEAR(nlohmann::json::parse(r.out)["ppl"].get<double>(), 4412.3131, 4412.3131 * 0.001);
  // Q4_K_M with llama.cpp's rules for 8 experts: attn_k / attn_v in Q8_0, attn_output in Q5_K (the file is
  // byte-identical to llama-quantize's; llama-perplexity 4381.1258 on it, lmpress 4385.93).
  ASSERT_EQ(run_cli("quantize " + d + "/mixtral.gguf " + d + "/q.gguf --type q4_k_m").status, 0);
  const auto info = nlohmann::json::parse(run_cli("info " + d + "/q.gguf --json").out);
  EXPECT_EQ(info["config"]["num_experts"], 8);
  EXPECT_EQ(info["config"]["num_experts_per_tok"], 2);
  std::map<std::string, std::string> types;
  for (const auto& t : info["tensors"]) types[t["name"]] = t["dtype"];
  EXPECT_EQ(types["blk.1.attn_k.weight"], "Q8_0");
  EXPECT_EQ(types["blk.1.attn_v.weight"], "Q8_0");
  EXPECT_EQ(types["blk.1.attn_output.weight"], "Q5_K");
  EXPECT_EQ(types["blk.1.ffn_gate_inp.weight"], "F32");  // the router is never quantized
  EXPECT_EQ(types["blk.1.ffn_gate.7.weight"], "Q4_K");
  EXPECT_EQ(types["blk.0.ffn_down.3.weight"], "Q4_K");
  EXPECT_EQ(types["blk.1.ffn_down.3.weight"], "Q6_K");  // use_more_bits: the last eighth of the layers
  // llama-quantize's patterns name the stacks; convert --dtype keeps the router f32, as llama.cpp's converter.
  ASSERT_EQ(run_cli("quantize " + d + "/mixtral.gguf " + d + "/o.gguf --type q4_0 --tensor-type ffn_down_exps=q8_0").status, 0);
  ASSERT_EQ(run_cli("convert " + d + "/mixtral.gguf " + d + "/c.gguf --dtype q8_0").status, 0);
  for (const auto& [file, name, want] : {std::tuple{"o", "blk.1.ffn_down.5.weight", "Q8_0"},
                                          std::tuple{"o", "blk.1.ffn_up.5.weight", "Q4_0"},
                                          std::tuple{"c", "blk.1.ffn_gate_inp.weight", "F32"},
                                          std::tuple{"c", "blk.1.ffn_up.5.weight", "Q8_0"}}) {
    const auto j = nlohmann::json::parse(run_cli(fmt::format("info {}/{}.gguf --json", d, file)).out);
    for (const auto& t : j["tensors"])
      if (t["name"] == name) { EXPECT_EQ(t["dtype"], want) << file << " " << name; }
  }
  const auto r4 = run_cli("perplexity " + d + "/q.gguf -f " + test::shared_path("data/wikitext-2/wiki.test.raw") +
                          " -c 128 --chunks 4 --json");
  EXPECT_NEAR(nlohmann::json::parse(r4.out)["ppl"].get<double>(), 4381.1258, 4381.1258 * 0.002);
}

// gpt-oss in small sizes (gpt-oss-20b's shape otherwise: sinks, biases, clamped SwiGLU, softmax over the chosen
// experts, even layers sliding over 24 keys, YaRN ×32): the GGUF llama.cpp's gpt-oss reads, with the same
// perplexity (llama-perplexity -c 128 --chunks 4 on this file: 3928.6341); MXFP4_MOE as gpt-oss ships (experts
// MXFP4, the other matrices Q8_0: tensors identical to llama-quantize's MXFP4_MOE of the same file, by
// scripts/gguf-diff.py; llama-perplexity 3982.0621 on it).
TEST(MakeModel, SmallGptOssAsLlamaCpp) {
  const std::string d = test::temp_dir();
  ModelConfig c = find_model_shape("gpt-oss-20b");
  c.n_vocab = 4096, c.dim = 256, c.n_heads = 8, c.n_kv_heads = 2, c.head_dim = c.rope_dim = 32, c.n_layers = 2;
  c.ffn_dim = c.expert_ffn = 256, c.n_experts = 8, c.sliding_window = 24;
  c.layer_swa.resize(2);
  test::write_random_gguf(c, d + "/oss.gguf", 3);
  const GGUFFile g = GGUFFile::open(d + "/oss.gguf");
  EXPECT_EQ(g.req_string("general.architecture"), "gpt-oss");
  EXPECT_EQ(g.req_string("gpt-oss.rope.scaling.type"), "yarn");
  std::set<std::string> names;
  for (const Tensor& t : g.tensors()) names.insert(t.name);
  for (const char* n : {"blk.1.attn_sinks.weight", "blk.1.post_attention_norm.weight", "blk.1.ffn_gate_exps.bias",
                        "blk.1.ffn_down_exps.bias", "blk.1.ffn_gate_inp.bias", "blk.1.attn_output.bias"})
    EXPECT_TRUE(names.count(n)) << n;
  const std::string text = " -f " + test::shared_path("data/wikitext-2/wiki.test.raw") + " -c 128 --chunks 4 --json";
  auto r = run_cli("perplexity " + d + "/oss.gguf" + text);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NEAR(nlohmann::json::parse(r.out)["ppl"].get<double>(), 3928.6341, 3928.6341 * 1e-4);
  ASSERT_EQ(run_cli("quantize " + d + "/oss.gguf " + d + "/mx.gguf --type mxfp4_moe").status, 0);
  const auto info = nlohmann::json::parse(run_cli("info " + d + "/mx.gguf --json").out);
  std::map<std::string, std::string> types;
  for (const auto& t : info["tensors"]) types[t["name"]] = t["dtype"];
  EXPECT_EQ(types["blk.1.ffn_down.7.weight"], "MXFP4");
  EXPECT_EQ(types["blk.1.attn_q.weight"], "Q8_0");
  EXPECT_EQ(types["output.weight"], "Q8_0");
  EXPECT_EQ(types["blk.1.ffn_gate_inp.weight"], "F32");
  EXPECT_EQ(types["blk.1.ffn_up_exps.bias"], "F32");
  // An MXFP4 file (as the released checkpoints) through mxfp4_moe again: its tensors are copied, bit for bit,
  // without --allow-requantize; another type for the experts is a requantization and needs the flag.
  ASSERT_EQ(run_cli("quantize " + d + "/mx.gguf " + d + "/mx2.gguf --type mxfp4_moe").status, 0);
  {
    const GGUFFile a = GGUFFile::open(d + "/mx.gguf"), b = GGUFFile::open(d + "/mx2.gguf");
    const std::vector<Tensor> ta = a.tensors(), tb = b.tensors();
    ASSERT_EQ(ta.size(), tb.size());
    for (size_t i = 0; i < ta.size(); i++) {
      const Tensor &x = ta[i], &y = tb[i];
      ASSERT_EQ(x.name, y.name);
      EXPECT_TRUE(x.dtype == y.dtype && x.nbytes == y.nbytes && std::memcmp(x.data, y.data, x.nbytes) == 0) << x.name;
    }
  }
  expect_cli_error("quantize " + d + "/mx.gguf " + d + "/x.gguf --type q4_k_m", "is already quantized");
  r = run_cli("perplexity " + d + "/mx.gguf" + text);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NEAR(nlohmann::json::parse(r.out)["ppl"].get<double>(), 3982.0621, 3982.0621 * 5e-4);  // lmpress 3981.08
  const std::string calib = " --calib " + std::string(LMPRESS_SOURCE_DIR) + "/tests/data/imatrix_text.txt";
  // REAP halves the experts, cutting the router's and the experts' bias rows with them: llama-perplexity 3789.7596
  // on the file.
  ASSERT_EQ(run_cli("prune " + d + "/oss.gguf " + d + "/p.gguf --experts 4 --method reap --calib-ctx 64 "
                    "--calib-samples 4" + calib).status, 0);
  r = run_cli("perplexity " + d + "/p.gguf" + text);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NEAR(nlohmann::json::parse(r.out)["ppl"].get<double>(), 3789.7596, 3789.7596 * 1e-4);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const Tensor& t : GGUFFile::open(d + "/p.gguf").tensors()) shapes[t.name] = t.shape;
  EXPECT_EQ(shapes["blk.1.ffn_gate_inp.bias"], (std::vector<int64_t>{4}));
  EXPECT_EQ(shapes["blk.1.ffn_up_exps.bias"], (std::vector<int64_t>{4, 256}));
  // convert --dtype keeps the bias stacks F32 (llama.cpp adds them only as F32).
  ASSERT_EQ(run_cli("convert " + d + "/oss.gguf " + d + "/c.gguf --dtype q8_0").status, 0);
  for (const Tensor& t : GGUFFile::open(d + "/c.gguf").tensors())
    if (t.name.ends_with("_exps.bias") || t.name.ends_with("attn_sinks.weight")) EXPECT_EQ(t.dtype, DType::F32) << t.name;
  // What lmpress cannot yet do with gpt-oss says so.
  test::expect_cli_error("rotate " + d + "/oss.gguf " + d + "/x.gguf", "gpt-oss's output and expert biases");
  test::expect_cli_error("quantize " + d + "/oss.gguf " + d + "/x.gguf --type q4_0 --method awq" + calib,
                         "gpt-oss's clamped activation");
  test::expect_cli_error("convert " + d + "/oss.gguf " + d + "/hf", "gpt-oss has no Hugging Face class");
}

TEST(Bench, StatisticsByHand) {
  SpeedTest t{0, 10, 0, {1e9, 2e9}, {}};
  EXPECT_EQ(t.name(), "tg10");
  EXPECT_EQ((SpeedTest{512, 0, 4096, {}, {}}).name(), "pp512 @ d4096");  // llama-bench's name
  EXPECT_DOUBLE_EQ(t.avg_ns(), 1.5e9);
  EXPECT_DOUBLE_EQ(t.avg_ts(), 7.5);  // mean of 10 and 5 tokens/s, as llama-bench averages
  EXPECT_NEAR(t.stddev_ts(), std::sqrt(2 * 2.5 * 2.5), 1e-12);
  EXPECT_GT(measure_triad_bandwidth(16 << 20, 2).bytes_per_s, 1e8);
}

// Every timed eval ends in the output matrix (the last token's logits), as in
// llama-bench: a bench that skipped it would time less than a generated token
// costs. The logits it leaves are the model's: finite and not all zero.
TEST(Bench, TimesTheOutputMatrix) {
  const auto m = load_model(test::shared_path("models/stories260K/stories260K.gguf"));
  SpeedOptions o;
  o.n_prompt = {8};
  o.n_gen = {3};
  o.reps = 1;
  for (const SpeedTest& t : run_speed_tests(*m, o)) {
    ASSERT_EQ(t.last_logits.size(), size_t(m->cfg.n_vocab)) << t.name();
    double mag = 0;
    for (float v : t.last_logits) {
      ASSERT_TRUE(std::isfinite(v)) << t.name();
      mag += std::fabs(v);
    }
    EXPECT_GT(mag, 0) << t.name();
  }
}

TEST(Bench, LlamaBenchJson) {
  const std::string m = test::shared_path("models/stories260K/stories260K.gguf");
  auto r = run_cli("bench " + m + " -p 16,32 -n 4 -r 2 -t 1 --json --no-bandwidth");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[0]["n_prompt"], 16);
  EXPECT_EQ(j[1]["n_prompt"], 32);
  EXPECT_EQ(j[2]["n_gen"], 4);
  EXPECT_EQ(j[2]["n_prompt"], 0);
  for (const auto& t : j) {
    EXPECT_EQ(t["n_threads"], 1);
    EXPECT_EQ(t["samples_ns"].size(), 2u);
    EXPECT_EQ(t["model_n_params"], 292800);
    EXPECT_EQ(t["type_k"], "f16");  // the default cache, as llama-bench's
    const double tokens = t["n_prompt"].get<double>() + t["n_gen"].get<double>();
    double mean = 0;
    for (const auto& ns : t["samples_ns"]) mean += tokens * 1e9 / ns.get<double>() / 2;
    EXPECT_NEAR(t["avg_ts"].get<double>(), mean, 1e-6 * mean);
    EXPECT_GT(t["avg_ts"].get<double>(), 0);
  }
  r = run_cli("bench " + m + " -p 0 -n 2 -r 1 -t 1 --json --no-bandwidth --cache-type f32");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)[0]["type_v"], "f32");
  expect_cli_error("bench " + m + " -p 0 -n 2 --cache-type q8_0",
                   "--cache-type-k q8_0: its blocks of 32 values do not divide the model's head size of 8");
  // -d: each test from a cache already holding that many positions, named as llama-bench names it.
  for (const std::string cache : {"f16", "kivi4 --kv-group 4"}) {
    r = run_cli("bench " + m + " -p 8 -n 2 -d 0,16 -r 2 -t 1 --json --no-bandwidth --cache-type " + cache);
    ASSERT_EQ(r.status, 0) << r.out;
    const auto d = nlohmann::json::parse(r.out);
    ASSERT_EQ(d.size(), 4u);
    EXPECT_EQ(d[0]["n_depth"], 0);
    EXPECT_EQ(d[2]["n_depth"], 16);
    EXPECT_EQ(d[3]["n_gen"], 2);
    EXPECT_EQ(d[3]["samples_ns"].size(), 2u);
  }
  r = run_cli("bench " + m + " -p 8 -n 0 -d 100 -r 1 -t 1 --no-bandwidth --cache-type kivi4 --kv-group 8");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("pp8 @ d100"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("KV cache: kivi4 (group 8, residual 0)"), std::string::npos) << r.out;
  r = run_cli("bench " + m + " -p 0 -n 2 -r 1 -t 1");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("tg2"), std::string::npos);
  EXPECT_NE(r.out.find("of the bandwidth bound"), std::string::npos);
  r = run_cli("bench " + m + " -p 8 -n 0 -d 2044 -r 1 -t 1 --no-bandwidth");  // stories260K's context: 2048
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("warning: tests reach 2052 positions, past the model's trained context of 2048"),
            std::string::npos) << r.out;
  expect_cli_error("bench " + m + " -p 0 -n 0", "no test");
}

}  // namespace
}  // namespace lmpress
