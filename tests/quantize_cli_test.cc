// End-to-end tests of `lmpress quantize` and `lmpress imatrix`.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/mapped_file.h"
#include "core/tensor.h"
#include "io/gguf.h"
#include "kernels/ops.h"
#include "kernels/to_f32.h"
#include "compress/owl.h"
#include "model/export.h"
#include "model/model.h"
#include "model/random_model.h"
#include "quant/imatrix.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

using test::run_cli;
namespace fs = std::filesystem;

std::string S(const std::string& rel) { return test::shared_path(rel); }
const std::string kStories = "models/stories260K/stories260K.gguf";

using test::expect_cli_error;
using test::cli_ppl;
using test::small_moe;

nlohmann::json quantize(const std::string& out, const std::string& args) {
  auto r = run_cli("quantize " + S(kStories) + " " + out + " " + args + " --json");
  EXPECT_EQ(r.status, 0) << r.out;
  return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json{};
}

// Phi-3 (fused attn_qkv / ffn_up in llama.cpp's phi3 files): a block's fused
// tensors are written once all their members are, also when GPTQ puts each
// calibrated block back to its input right after writing it; members planned
// to different types (attn_v raised to Q8_0) share the largest.
TEST(QuantizeCli, Phi3FusedTensors) {
  const std::string d = test::temp_dir();
  test::SyntheticSpec spec;
  spec.arch = "Phi3ForCausalLM";
  fs::create_directories(d + "/hf");
  test::write_synthetic_hf(d + "/hf", spec);
  const std::string calib = " --calib " + S("data/calib/docs-calib.txt") + " --calib-samples 8 --calib-ctx 32";
  for (const std::string& args : {std::string("--type q4_0 --tensor-type attn_v=q8_0"), "--type q8_0 --method gptq" + calib}) {
    SCOPED_TRACE(args);
    auto r = run_cli("quantize " + d + "/hf " + d + "/q.gguf " + args);
    ASSERT_EQ(r.status, 0) << r.out;
    const GGUFFile g = GGUFFile::open(d + "/q.gguf");
    std::map<std::string, DType> types;
    for (const Tensor& t : g.tensors()) types[t.name] = t.dtype;
    EXPECT_EQ(types.at("blk.0.attn_qkv.weight"), DType::Q8_0);
    EXPECT_EQ(types.count("blk.0.attn_v.weight"), 0u);
    EXPECT_EQ(types.at("blk.1.ffn_up.weight"), args.starts_with("--type q4_0") ? DType::Q4_0 : DType::Q8_0);
    auto q = load_model(d + "/q.gguf");
    EXPECT_EQ(q->cfg.arch, "phi3");
    EXPECT_EQ(q->tensor("blk.1.ffn_gate.weight").shape, (std::vector<int64_t>{spec.ffn, spec.dim}));
    r = run_cli("generate " + d + "/q.gguf -p hello -n 4");
    EXPECT_EQ(r.status, 0) << r.out;
  }
  // The imatrix holds llama.cpp's attn_qkv beside lmpress's members, and a member reads the fused entry.
  auto r = run_cli("imatrix " + d + "/hf -f " + S("data/calib/docs-calib.txt") + " -c 32 --chunks 4 -o " + d + "/im.gguf");
  ASSERT_EQ(r.status, 0) << r.out;
  const Imatrix im = read_imatrix(d + "/im.gguf");
  ASSERT_TRUE(im.entries.count("blk.0.attn_qkv.weight"));
  EXPECT_EQ(im.importance("blk.0.attn_qkv.weight"), im.importance("blk.0.attn_k.weight"));
  Imatrix only_fused = im;
  only_fused.entries.erase("blk.1.attn_v.weight");
  only_fused.entries.erase("blk.1.ffn_gate.weight");
  EXPECT_EQ(only_fused.importance("blk.1.attn_v.weight"), im.importance("blk.1.attn_qkv.weight"));
  EXPECT_EQ(only_fused.importance("blk.1.ffn_gate.weight"), im.importance("blk.1.ffn_up.weight"));
  expect_cli_error("quantize " + d + "/hf " + d + "/t.gguf --target-bpw 6" + calib, "one type per group");
}

// On stories260K (calibrated on documentation prose, evaluated on WikiText-2):
// GPTQ and AWQ Q4_0 files have lower perplexity than round-to-nearest's, and
// the report is consistent with the file.
TEST(QuantizeCli, CalibratedMethodsBeatRoundToNearest) {
  const std::string d = test::temp_dir();
  const std::string calib = " --calib " + S("data/calib/docs-calib.txt") + " --calib-samples 32 --calib-ctx 128";
  const auto rtn = quantize(d + "/rtn.gguf", "--type q4_0");
  const auto gptq = quantize(d + "/gptq.gguf", "--type q4_0 --method gptq" + calib);
  const auto awq = quantize(d + "/awq.gguf", "--type q4_0 --method awq" + calib);
  const double p_rtn = cli_ppl(d + "/rtn.gguf"), p_gptq = cli_ppl(d + "/gptq.gguf"), p_awq = cli_ppl(d + "/awq.gguf");
  EXPECT_LT(p_gptq, p_rtn);
  EXPECT_LT(p_awq, p_rtn);
  EXPECT_EQ(gptq["calib_tokens"], 32 * 128);
  EXPECT_EQ(gptq["bytes_out"], rtn["bytes_out"]);  // same types, same size
  EXPECT_GT(gptq["peak_rss_bytes"].get<double>(), 0);
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& t : gptq["tensors"]) by_name[t["name"]] = t;
  EXPECT_EQ(by_name["blk.0.attn_q.weight"]["type"], "Q4_0");
  EXPECT_GT(by_name["blk.0.attn_q.weight"]["output_error"].get<double>(), 0.0);
  EXPECT_LT(by_name["blk.0.attn_q.weight"]["weight_error"].get<double>(), 0.3);
  EXPECT_EQ(by_name["blk.0.ffn_down.weight"]["type"], "F16");  // rows of 172 fit no 32-block
  // The file holds the reported types.
  const auto info = nlohmann::json::parse(run_cli("info " + d + "/gptq.gguf --json").out);
  for (const auto& t : info["tensors"])
    if (by_name.count(t["name"])) { EXPECT_EQ(t["dtype"], by_name[t["name"]]["type"]) << t["name"]; }
}

// --clip-search tries the unclipped block among its candidates, so with no
// importance every tensor's weight error is at most plain RTN's, and lower overall.
TEST(QuantizeCli, ClipSearchNeverWorseThanRoundToNearest) {
  const std::string d = test::temp_dir();
  const auto rtn = quantize(d + "/rtn.gguf", "--type q4_0 --pure");
  const auto clip = quantize(d + "/clip.gguf", "--type q4_0 --pure --clip-search");
  std::map<std::string, double> base;
  for (const auto& t : rtn["tensors"]) base[t["name"]] = t["weight_error"].get<double>();
  double sum_rtn = 0, sum_clip = 0;
  for (const auto& t : clip["tensors"]) {
    const double e = t["weight_error"].get<double>(), b = base.at(t["name"]);
    EXPECT_LE(e, b * (1 + 1e-6)) << t["name"];
    sum_rtn += b;
    sum_clip += e;
  }
  EXPECT_LT(sum_clip, 0.97 * sum_rtn);
  EXPECT_EQ(clip["bytes_out"], rtn["bytes_out"]);
}

// --target-bpw: the file is within the budget and close to it, a smaller
// budget gives a smaller file, and the file holds several types.
TEST(QuantizeCli, TargetBitsPerWeight) {
  const std::string d = test::temp_dir();
  const std::string calib = " --calib " + S("data/calib/docs-calib.txt") + " --calib-samples 8 --calib-ctx 128";
  auto run = [&](const std::string& out, double bpw) {
    auto r = run_cli("quantize " + S(kStories) + " " + out + " --target-bpw " + std::to_string(bpw) + calib + " --json");
    EXPECT_EQ(r.status, 0) << r.out;
    return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json{};
  };
  // stories260K's 64-wide rows take no k-quant and its 172-wide ffn_down only F16: 6.65 bpw at least.
  const auto hi = run(d + "/hi.gguf", 10.0), lo = run(d + "/lo.gguf", 7.5);
  EXPECT_LE(hi["bpw"].get<double>(), 10.0);
  EXPECT_GT(hi["bpw"].get<double>(), 9.8);
  EXPECT_LE(lo["bpw"].get<double>(), 7.5);
  EXPECT_GT(lo["bpw"].get<double>(), 7.3);
  std::set<std::string> types;
  for (const auto& t : lo["tensors"]) types.insert(t["type"]);
  EXPECT_GE(types.size(), 2u);
  // The file is as reported and loads.
  EXPECT_EQ(fs::file_size(d + "/lo.gguf") > lo["bytes_out"].get<uint64_t>(), true);
  EXPECT_LT(cli_ppl(d + "/lo.gguf"), 1.2 * cli_ppl(S(kStories)));
  expect_cli_error("quantize " + S(kStories) + " " + d + "/x.gguf --target-bpw 6.0" + calib, "below the smallest");
  expect_cli_error("quantize " + S(kStories) + " " + d + "/x.gguf --target-bpw 4", "--calib FILE");
  expect_cli_error("quantize " + S(kStories) + " " + d + "/x.gguf --type q4_0 --target-bpw 4" + calib,
                   "either --type or --target-bpw");
}

// imatrix of layer 0's q/k/v input, recomputed here from the embeddings:
// mean over tokens of (rmsnorm(embedding) * attn_norm)^2 per column.
TEST(QuantizeCli, ImatrixMatchesDirectComputation) {
  const std::string d = test::temp_dir();
  const std::string text = d + "/t.txt";
  std::ofstream(text) << "Once upon a time there was a little dog. It liked to run in the park with its friends.\n";
  auto r = run_cli("imatrix " + S(kStories) + " -f " + text + " -c 16 -o " + d + "/im.gguf");
  ASSERT_EQ(r.status, 0) << r.out;
  const Imatrix im = read_imatrix(d + "/im.gguf");
  const auto got = im.importance("blk.0.attn_q.weight");
  EXPECT_EQ(im.importance("blk.0.attn_k.weight"), got);
  EXPECT_EQ(im.entries.size(), 5u * 7u);

  auto m = load_model(S(kStories));
  const auto toks = m->tokenizer->encode(std::string("Once upon a time there was a little dog. It liked to run in the park "
                                                     "with its friends.\n"), false, false);
  // llama-imatrix's chunks: (BOS + text) cut every 16 tokens, each chunk's first token replaced by BOS.
  const int64_t D = m->cfg.dim, body = 15, n_chunks = (int64_t(toks.size()) + 1) / 16;
  ASSERT_GE(n_chunks, 1);
  ASSERT_EQ(im.entries.at("blk.0.attn_q.weight").count, n_chunks * 16);
  std::vector<double> want(static_cast<size_t>(D), 0.0);
  std::vector<float> e(static_cast<size_t>(D)), y(static_cast<size_t>(D));
  const int64_t stride = 16;
  for (int64_t c = 0; c < n_chunks; c++) {
    std::vector<int32_t> w{m->tokenizer->vocab().bos};
    w.insert(w.end(), toks.begin() + c * stride, toks.begin() + c * stride + body);
    for (int32_t t : w) {
      to_f32(*m->tok_embd, int64_t(t) * D, D, e.data());
      rmsnorm(e.data(), m->layers[0].attn_norm.data(), D, m->cfg.rms_eps, y.data());
      for (int64_t j = 0; j < D; j++) want[size_t(j)] += double(y[size_t(j)]) * y[size_t(j)];
    }
  }
  ASSERT_EQ(int64_t(got.size()), D);
  for (int64_t j = 0; j < D; j++)
    EXPECT_NEAR(got[size_t(j)], want[size_t(j)] / double(n_chunks * 16), 1e-4 * (1 + want[size_t(j)])) << j;

  // An imatrix changes the k-quant and Q4_0 roundings, and round-trips through the GGUF format.
  write_imatrix(im, d + "/im2.gguf");
  EXPECT_EQ(read_imatrix(d + "/im2.gguf").importance("blk.3.ffn_down.weight"), im.importance("blk.3.ffn_down.weight"));
  const auto a = quantize(d + "/a.gguf", "--type q4_0");
  const auto b = quantize(d + "/b.gguf", "--type q4_0 --imatrix " + d + "/im.gguf");
  EXPECT_NE(a["tensors"][3]["weight_error"], b["tensors"][3]["weight_error"]);
}

// tests/data/stories260K.imatrix.gguf was written by llama-imatrix
// (-f tests/data/imatrix_text.txt -c 64): lmpress computes the same matrix.
TEST(QuantizeCli, ImatrixMatchesLlamaImatrix) {
  const std::string d = test::temp_dir();
  const std::string data = std::string(LMPRESS_SOURCE_DIR) + "/tests/data/";
  auto r = run_cli("imatrix " + S(kStories) + " -f " + data + "imatrix_text.txt -c 64 -o " + d + "/im.gguf");
  ASSERT_EQ(r.status, 0) << r.out;
  const Imatrix got = read_imatrix(d + "/im.gguf"), want = read_imatrix(data + "stories260K.imatrix.gguf");
  EXPECT_EQ(got.chunk_count, want.chunk_count);
  ASSERT_EQ(got.entries.size(), want.entries.size());
  for (const auto& [name, e] : want.entries) {
    ASSERT_TRUE(got.entries.count(name)) << name;
    EXPECT_EQ(got.entries.at(name).count, e.count) << name;
    const auto a = got.importance(name), b = want.importance(name);
    ASSERT_EQ(a.size(), b.size()) << name;
    for (size_t j = 0; j < a.size(); j++) EXPECT_NEAR(a[j], b[j], 2e-3 * (1e-3 + std::fabs(b[j]))) << name << " " << j;
  }
}

// small_moe(): the imatrix reaches every expert with
// the rows routed to it, stored as llama.cpp stores experts (one *_exps entry, a row of sums and a count per
// expert). tests/data/moe.imatrix.gguf was written by llama-imatrix on the same file (-f imatrix_text.txt -c 64):
// the same routing but for a few near-ties that f32 rounding sends the other way (counts within 0.35%, so an
// expert's mean squares within 6%), the dense entries' importance within 0.2%.
TEST(QuantizeCli, ImatrixReachesEveryExpertAsLlamaImatrix) {
  const std::string d = test::temp_dir();
  const std::string data = std::string(LMPRESS_SOURCE_DIR) + "/tests/data/";
  const std::string model = small_moe(d);
  auto r = run_cli("imatrix " + model + " -f " + data + "imatrix_text.txt -c 64 -o " + d + "/im.gguf");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("experts reached by calibration tokens: 32 of 32"), std::string::npos) << r.out;
  const GGUFFile g = GGUFFile::open(d + "/im.gguf");
  bool stacked = false;
  for (const Tensor& t : g.tensors())
    if (t.name == "blk.1.ffn_down_exps.weight.in_sum2") stacked = t.shape == std::vector<int64_t>{16, 128};
  EXPECT_TRUE(stacked);
  const Imatrix got = read_imatrix(d + "/im.gguf"), want = read_imatrix(data + "moe.imatrix.gguf");
  ASSERT_EQ(got.entries.size(), want.entries.size());
  for (const auto& [name, e] : want.entries) {
    ASSERT_TRUE(got.entries.count(name)) << name;
    const bool expert = stacked_expert_name(name).has_value();
    EXPECT_NEAR(double(got.entries.at(name).count), double(e.count), expert ? 0.01 * double(e.count) : 0.0) << name;
    const auto a = got.importance(name), b = want.importance(name);
    ASSERT_EQ(a.size(), b.size()) << name;
    const double tol = expert ? 0.1 : 2e-3;
    for (size_t j = 0; j < a.size(); j++) EXPECT_NEAR(a[j], b[j], tol * (1e-3 + std::fabs(b[j]))) << name << " " << j;
  }
  // Each token reaches 4 experts per layer.
  for (int64_t l = 0; l < 2; l++) {
    int64_t routed = 0;
    for (int64_t e = 0; e < 16; e++) routed += got.entries.at(fmt::format("blk.{}.ffn_gate.{}.weight", l, e)).count;
    EXPECT_EQ(routed, 4 * got.entries.at(fmt::format("blk.{}.ffn_gate_inp.weight", l)).count);
  }
  r = run_cli("quantize " + model + " " + d + "/i.gguf --type q4_k_m --imatrix " + d + "/im.gguf --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["imatrix_expert_coverage"],
            nlohmann::json({{"tensors", 96}, {"with_data", 96}}));
  // GPTQ solves each expert on the rows routed to it (AWQ: QuantizeCli.AwqOnMixtures).
  r = run_cli("quantize " + model + " " + d + "/g.gguf --type q4_0 --method gptq --calib " + data +
              "imatrix_text.txt --calib-ctx 64 --calib-samples 4 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  std::set<std::string> solved;
  for (const auto& t : j["tensors"])
    if (t.contains("output_error")) solved.insert(t["name"].get<std::string>());
  std::set<std::string> skipped;
  if (j.contains("uncalibrated"))
    for (const auto& n : j["uncalibrated"]) skipped.insert(n.get<std::string>());
  for (int64_t l = 0; l < 2; l++)
    for (int64_t e = 0; e < 16; e++)
      for (const char* p : {"ffn_gate", "ffn_up", "ffn_down"}) {
        const std::string n = fmt::format("blk.{}.{}.{}.weight", l, p, e);
        EXPECT_TRUE(solved.count(n) != skipped.count(n)) << n;
      }
  EXPECT_LT(skipped.size(), 96u);
  // Wanda prunes each expert on its routed rows (the router is left whole).
  r = run_cli("prune " + model + " " + d + "/p.gguf --sparsity 0.5 --method wanda --calib " + data +
              "imatrix_text.txt --calib-ctx 64 --calib-samples 4 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  std::set<std::string> pruned;
  const auto pj = nlohmann::json::parse(r.out);
  for (const auto& t : pj["tensors"]) {
    pruned.insert(t["name"].get<std::string>());
    EXPECT_NEAR(t["sparsity"].get<double>(), 0.5, 1e-6) << t["name"];
  }
  EXPECT_TRUE(pruned.count("blk.1.ffn_down.15.weight") && pruned.count("blk.0.attn_q.weight"));
  EXPECT_FALSE(pruned.count("blk.0.ffn_gate_inp.weight"));
  EXPECT_EQ(load_model(d + "/p.gguf")->cfg.n_experts, 16);
}

// Expert-aware mixed precision: each layer's experts ranked by the tokens llama-imatrix routed to them
// (tests/data/moe.imatrix.gguf, made on this file), the hot quarter Q8_0 and the coldest eighth F16, the rest the
// file type's; written expert by expert, read back by lmpress with each expert in its type.
TEST(QuantizeCli, ExpertTypesFollowRoutedTokens) {
  const std::string d = test::temp_dir();
  const std::string data = std::string(LMPRESS_SOURCE_DIR) + "/tests/data/";
  const std::string model = small_moe(d), im = data + "moe.imatrix.gguf";
  const std::string q = "quantize " + model + " " + d + "/h.gguf --type q4_0 --imatrix " + im;
  auto r = run_cli(q + " --expert-type hot:0.25=q8_0 --expert-type cold:0.125=f16");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("llama.cpp cannot load it"), std::string::npos) << r.out;
  const Imatrix counts = read_imatrix(im);
  std::map<std::string, DType> types;
  for (const Tensor& t : GGUFFile::open(d + "/h.gguf").tensors()) types[t.name] = t.dtype;
  for (int64_t l = 0; l < 2; l++) {
    std::vector<std::pair<int64_t, int64_t>> ranked;  // (-tokens, expert): most first, lower index among equals
    for (int64_t e = 0; e < 16; e++)
      ranked.emplace_back(-counts.entries.at(fmt::format("blk.{}.ffn_gate.{}.weight", l, e)).count, e);
    std::sort(ranked.begin(), ranked.end());
    for (int64_t i = 0; i < 16; i++)
      for (const char* p : {"ffn_gate", "ffn_up", "ffn_down"}) {
        const std::string n = fmt::format("blk.{}.{}.{}.weight", l, p, ranked[size_t(i)].second);
        ASSERT_TRUE(types.count(n)) << n;
        EXPECT_EQ(types[n], i < 4 ? DType::Q8_0 : i >= 14 ? DType::F16 : DType::Q4_0) << n << " rank " << i;
      }
    EXPECT_FALSE(types.count(fmt::format("blk.{}.ffn_down_exps.weight", l)));
  }
  const auto m = load_model(d + "/h.gguf");
  EXPECT_EQ(m->tensor("blk.1.ffn_up.3.weight").cols(), 256);
  const std::string text = " -f " + data + "imatrix_text.txt -c 64 --chunks 4 --json";
  r = run_cli("perplexity " + d + "/h.gguf" + text);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(std::isfinite(nlohmann::json::parse(r.out)["ppl"].get<double>()));
  expect_cli_error("quantize " + model + " " + d + "/x.gguf --type q4_0 --expert-type hot:0.25=q8_0", "pass --imatrix FILE");
  expect_cli_error(q + " --expert-type warm:0.25=q8_0", "'warm' is neither hot nor cold");
  expect_cli_error(q + " --expert-type hot:0.01=q8_0", "less than one of the 16 experts");
  expect_cli_error(q + " --expert-type hot:1.5=q8_0", "the share of experts must be in (0, 1]");
  expect_cli_error("quantize " + model + " " + d + "/x --type int4-g32 --imatrix " + im + " --expert-type hot:0.25=q8_0",
                   "--expert-type is for GGUF file types");
  EXPECT_FALSE(fs::exists(d + "/x.gguf"));
}

// SmoothQuant on a mixture: each block's ffn_norm scales fold into every linear reading its output (the router,
// the shared expert and its gate, each expert's gate/up), so the routing and the function stay the same.
TEST(SmoothCli, MixtureKeepsItsFunction) {
  const std::string d = test::temp_dir();
  for (const std::string shape : {"qwen3-30b-a3b", "qwen1.5-moe-a2.7b"}) {
    SCOPED_TRACE(shape);
    const std::string model = small_moe(d, shape);
    auto r = run_cli("smooth " + model + " " + d + "/s.gguf --alpha 0.5 --calib " +
                     std::string(LMPRESS_SOURCE_DIR) + "/tests/data/imatrix_text.txt --calib-samples 4 --calib-ctx 64");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_NEAR(cli_ppl(d + "/s.gguf") / cli_ppl(model), 1.0, 1e-4);
    auto a = load_model(model), b = load_model(d + "/s.gguf");
    for (const char* name : {"blk.1.ffn_gate_inp.weight", "blk.1.ffn_up.9.weight", "blk.1.attn_q.weight"})
      EXPECT_NE(to_f32(a->tensor(name)), to_f32(b->tensor(name))) << name << " was rescaled";
    EXPECT_EQ(to_f32(a->tensor("blk.1.ffn_down.9.weight")), to_f32(b->tensor("blk.1.ffn_down.9.weight")));
  }
}

// OWL on a mixture: a block's outlier ratio counts its shared expert's and every reached expert's weights, each
// scored with the norms of its own routed inputs; the block sparsities (mean the target) apply to every expert,
// never to the router.
TEST(PruneCli, OwlOnMixtures) {
  const std::string d = test::temp_dir();
  const std::string model = small_moe(d, "qwen1.5-moe-a2.7b");
  auto r = run_cli("prune " + model + " " + d + "/o.gguf --sparsity 0.5 --method wanda --owl --calib " +
                   std::string(LMPRESS_SOURCE_DIR) + "/tests/data/imatrix_text.txt --calib-samples 8 --calib-ctx 64 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto s = nlohmann::json::parse(r.out)["layer_sparsity"].get<std::vector<double>>();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_NEAR(s[0] + s[1], 1.0, 1e-12);
  EXPECT_NEAR(std::fabs(s[0] - s[1]), 0.16, 1e-9);  // two blocks: target ± λ
  auto m = load_model(d + "/o.gguf");
  for (int64_t l = 0; l < 2; l++) {
    for (const std::string name : {fmt::format("blk.{}.ffn_up.7.weight", l), fmt::format("blk.{}.ffn_down_shexp.weight", l),
                                   fmt::format("blk.{}.attn_q.weight", l)}) {
      const auto v = to_f32(m->tensor(name));
      EXPECT_NEAR(double(std::count(v.begin(), v.end(), 0.0f)) / double(v.size()), s[size_t(l)], 0.01) << name;
    }
    const auto router = to_f32(m->tensor(fmt::format("blk.{}.ffn_gate_inp.weight", l)));
    EXPECT_EQ(std::count(router.begin(), router.end(), 0.0f), 0);
  }
  // The ratios count the experts: outliers planted in block 1's experts raise block 1's
  // ratio, and block 0's stays.
  auto a = load_model(model);
  CalibrationOptions co;
  co.file = std::string(LMPRESS_SOURCE_DIR) + "/tests/data/imatrix_text.txt";
  co.samples = 8, co.ctx = 64;
  const auto r0 = owl_outlier_ratios(*a, co, OwlOptions{});
  for (int64_t e = 0; e < 16; e++) {
    const std::string name = fmt::format("blk.1.ffn_up.{}.weight", e);
    std::vector<float> w = to_f32(a->tensor(name));
    for (size_t i = 0; i < w.size(); i += 5) w[i] *= 30;
    a->set_f32(name, std::move(w));
  }
  a->bind();
  const auto r1 = owl_outlier_ratios(*a, co, OwlOptions{});
  EXPECT_EQ(r1[0], r0[0]);
  EXPECT_GT(r1[1], r0[1]);  // equal if the experts were not counted
}

// Structured pruning of a mixture: KV-head groups (Qwen3-MoE, Mixtral: llama.cpp sizes their attention from
// key_length × heads) and whole blocks go; per-layer head counts are refused by name.
// (By hand: llama-perplexity on make-model qwen3-30b-a3b / mixtral-8x7b files pruned so gives lmpress's PPL.)
TEST(PruneCli, StructuredOnMixtures) {
  const std::string d = test::temp_dir();
  const std::string calib = " --calib " + std::string(LMPRESS_SOURCE_DIR) + "/tests/data/imatrix_text.txt --calib-samples 8 --calib-ctx 64";
  const std::string q3 = small_moe(d, "qwen3-30b-a3b"), q2 = small_moe(d, "qwen1.5-moe-a2.7b");
  auto r = run_cli("prune " + q3 + " " + d + "/s.gguf --structured heads=0.5,layers=1" + calib);
  ASSERT_EQ(r.status, 0) << r.out;
  auto m = load_model(d + "/s.gguf");
  EXPECT_EQ(m->cfg.n_layers, 1);
  EXPECT_EQ(m->cfg.n_kv_heads, 1);
  EXPECT_EQ(m->cfg.n_heads, 2);
  EXPECT_EQ(m->cfg.n_experts, 16);
  EXPECT_TRUE(std::isfinite(cli_ppl(d + "/s.gguf")));
  r = run_cli("prune " + q2 + " " + d + "/l.gguf --structured layers=1" + calib);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(load_model(d + "/l.gguf")->cfg.n_layers, 1);
  expect_cli_error("prune " + q2 + " " + d + "/x.gguf --structured heads=0.5" + calib, "llama.cpp's qwen2moe files take");
  expect_cli_error("prune " + q3 + " " + d + "/x.gguf --structured ffn=0.5,global" + calib, "share one size in GGUF");
  expect_cli_error("prune " + q3 + " " + d + "/x.gguf --structured heads=0.5,global" + calib, "different head counts");
  EXPECT_FALSE(fs::exists(d + "/x.gguf"));
}

// ffn= on mixtures cuts each routed expert's channels (its own, scored on its routed rows), the shared expert's
// and the dense blocks'. Here a quarter of every feed-forward's channels write nothing (their down columns zeroed):
// pruning a quarter must take exactly those, so the model computes what it did (Qwen2-MoE's gated shared expert,
// Qwen3-MoE, DeepSeekMoE's dense first block and its shared experts, kept whole experts of the new size).
// (By hand: llama-perplexity on the upcycled lmp-8m mixture pruned with ffn=0.25 gives lmpress's 352.2956.)
TEST(PruneCli, StructuredFeedForwardOfEachExpert) {
  const std::string d = test::temp_dir();
  const std::string calib = " --calib " + std::string(LMPRESS_SOURCE_DIR) + "/tests/data/imatrix_text.txt --calib-samples 8 --calib-ctx 64";
  for (const std::string shape : {"qwen1.5-moe-a2.7b", "qwen3-30b-a3b", "deepseek-moe-16b"}) {
    SCOPED_TRACE(shape);
    // small_moe's sizes, DeepSeek's dense first block at 512 rather than its 10944.
    ModelConfig c = find_model_shape(shape);
    c.n_vocab = 512, c.dim = 256, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = c.rope_dim = 64, c.n_layers = 2;
    c.n_experts = 16, c.n_experts_used = 4, c.expert_ffn = 128, c.ffn_dim = 512;
    if (c.shared_ffn > 0) c.shared_ffn = 256;
    auto m = load_model(test::write_random_gguf(c, d + "/" + shape + ".gguf", 5));
    std::vector<std::string> downs;
    for (const Tensor& t : m->tensors)
      if (t.name.find("ffn_down") != std::string::npos) downs.push_back(t.name);
    for (const std::string& name : downs) {
      std::vector<float> w = to_f32(m->tensor(name));
      const int64_t rows = m->tensor(name).rows(), cols = m->tensor(name).cols();
      for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 1; j < cols; j += 4) w[size_t(r * cols + j)] = 0.0f;
      m->set_f32(name, std::move(w));
    }
    m->bind();
    const std::string zeroed = d + "/" + shape + "-z.gguf", pruned = d + "/" + shape + "-p.gguf";
    write_gguf_model(*m, zeroed, {});
    auto r = run_cli("prune " + zeroed + " " + pruned + " --structured ffn=0.25 --json" + calib);
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(nlohmann::json::parse(r.out)["expert_ffn"], nlohmann::json::array({128, 96}));
    const auto p = load_model(pruned);
    EXPECT_EQ(p->cfg.expert_ffn, 96);
    EXPECT_EQ(p->cfg.shared_ffn, m->cfg.shared_ffn * 3 / 4);
    EXPECT_EQ(p->cfg.ffn_dim, m->cfg.any_dense_block() ? m->cfg.ffn_dim * 3 / 4 : m->cfg.ffn_dim);
    const double before = cli_ppl(zeroed), after = cli_ppl(pruned);
    EXPECT_NEAR(after, before, 1e-4 * before);
    // The kept rows are the channels that write something: none of the zeroed ones.
    const auto gate = to_f32(p->tensor("blk.1.ffn_gate.5.weight")), orig = to_f32(m->tensor("blk.1.ffn_gate.5.weight"));
    for (int64_t k = 0; k < 96; k++) {
      const int64_t j = k + k / 3 + (k % 3 >= 1);  // the k-th channel with j % 4 != 1
      EXPECT_EQ(gate[size_t(k * 256)], orig[size_t(j * 256)]) << k;
    }
  }
}

// --target-bpw on a mixture: each stack of experts (ffn_{gate,up,down}_exps) is one choice with its experts' costs
// (each on its routed rows) summed, so a stack holds one type as llama.cpp's files need; the router stays F32; the
// file fits the target.
TEST(QuantizeCli, TargetBitsPerWeightOnMixtures) {
  const std::string d = test::temp_dir();
  const std::string model = small_moe(d, "qwen1.5-moe-a2.7b");
  auto r = run_cli("quantize " + model + " " + d + "/t.gguf --target-bpw 5 --calib " + std::string(LMPRESS_SOURCE_DIR) +
                   "/tests/data/imatrix_text.txt --calib-samples 8 --calib-ctx 64 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_LE(j["bpw"].get<double>(), 5.0);
  EXPECT_GT(j["bpw"].get<double>(), 4.8);
  auto q = load_model(d + "/t.gguf");
  for (int64_t l = 0; l < 2; l++) {
    EXPECT_EQ(q->tensor(fmt::format("blk.{}.ffn_gate_inp.weight", l)).dtype, DType::F32);
    for (const char* p : {"ffn_gate", "ffn_up", "ffn_down"}) {
      const DType first = q->tensor(fmt::format("blk.{}.{}.0.weight", l, p)).dtype;
      for (int64_t e = 1; e < 16; e++) EXPECT_EQ(q->tensor(fmt::format("blk.{}.{}.{}.weight", l, p, e)).dtype, first);
    }
  }
  EXPECT_TRUE(std::isfinite(cli_ppl(d + "/t.gguf")));
}

// AWQ on a mixture: the ffn_norm scales are searched over the shared expert's and every expert's gate/up (each
// expert's error on the rows routed to it) and folded into all readers of the norm (the router and the shared
// expert's gate exactly, in float), each expert's down takes scales of its own from its up rows. With Q8_0
// (rounding too fine to matter) the output distribution stays the RTN file's (KLD from the original: a wrong fold,
// such as a router left unscaled, moves the routing and raises it up to 3-fold); with Q4_0 lower than RTN's.
TEST(QuantizeCli, AwqOnMixtures) {
  const std::string d = test::temp_dir();
  const std::string calib = std::string(LMPRESS_SOURCE_DIR) + "/tests/data/imatrix_text.txt";
  for (const std::string shape : {"qwen3-30b-a3b", "qwen1.5-moe-a2.7b"}) {
    SCOPED_TRACE(shape);
    const std::string model = small_moe(d, shape);
    std::map<std::string, double> kld;
    for (const char* type : {"q8_0", "q4_0"})
      for (const char* method : {"rtn", "awq"}) {
        const std::string out = d + "/" + type + method + ".gguf";
        auto r = run_cli("quantize " + model + " " + out + " --type " + type + " --method " + method +
                         (std::string(method) == "awq" ? " --calib " + calib + " --calib-samples 8 --calib-ctx 64" : ""));
        ASSERT_EQ(r.status, 0) << r.out;
        r = run_cli("kld " + model + " " + out + " -f " + S("data/wikitext-2/wiki.test.raw") + " -c 128 --chunks 10 --json");
        ASSERT_EQ(r.status, 0) << r.out;
        kld[std::string(type) + method] = nlohmann::json::parse(r.out)["kld"]["value"].get<double>();
      }
    EXPECT_LT(kld["q8_0awq"], 1.5 * kld["q8_0rtn"]);
    EXPECT_LT(kld["q4_0awq"], kld["q4_0rtn"]);  // measured: 24% and 30% lower
  }
}

// Expert pruning: each layer keeps its best experts by REAP's router-weighted output norm or by the tokens
// routed to them, the router's rows cut to match; the smaller file is a qwen3moe llama.cpp loads
// (llama-perplexity -c 128 --chunks 20 on the REAP file: 485.6869).
TEST(PruneCli, ExpertsKeepTheBestByReapOrFrequency) {
  const std::string d = test::temp_dir();
  const std::string model = small_moe(d);
  const std::string calib = std::string(LMPRESS_SOURCE_DIR) + "/tests/data/imatrix_text.txt";
  for (const char* method : {"reap", "frequency"}) {
    SCOPED_TRACE(method);
    const std::string out = d + "/" + method + ".gguf";
    auto r = run_cli(fmt::format("prune {} {} --experts {} --method {} --calib {} --calib-ctx 64 --calib-samples 8 --json",
                                 model, out, method == std::string("reap") ? "0.5" : "8", method, calib));
    ASSERT_EQ(r.status, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["experts_before"], 16);
    EXPECT_EQ(j["experts_after"], 8);
    EXPECT_EQ(j["used_after"], 4);
    EXPECT_LT(j["bytes_after"].get<double>(), 0.6 * j["bytes_before"].get<double>());
    auto pruned = load_model(out);
    auto full = load_model(model);
    EXPECT_EQ(pruned->cfg.n_experts, 8);
    for (int64_t l = 0; l < 2; l++) {
      const auto& layer = j["layers"][size_t(l)];
      const auto kept = layer["kept"].get<std::vector<int64_t>>();
      const auto scores = layer["scores"].get<std::vector<double>>();
      const auto tokens = layer["tokens"].get<std::vector<int64_t>>();
      ASSERT_EQ(kept.size(), 8u);
      EXPECT_TRUE(std::is_sorted(kept.begin(), kept.end()));
      int64_t routed = 0;
      for (int64_t t : tokens) routed += t;
      EXPECT_EQ(routed, 4 * 8 * 64);  // 8 windows of 64 tokens, 4 experts each
      // Every kept expert scores at least as high as every removed one.
      double worst_kept = 1e300, best_removed = -1;
      for (int64_t e = 0; e < 16; e++) {
        const bool k = std::find(kept.begin(), kept.end(), e) != kept.end();
        if (k) worst_kept = std::min(worst_kept, scores[size_t(e)]);
        else best_removed = std::max(best_removed, scores[size_t(e)]);
        if (method == std::string("frequency")) { EXPECT_EQ(scores[size_t(e)], double(tokens[size_t(e)])); }
      }
      EXPECT_GE(worst_kept, best_removed);
      // The kept experts, renumbered, with their router rows.
      const auto r0 = to_f32(*full->layers[size_t(l)].router), r1 = to_f32(*pruned->layers[size_t(l)].router);
      for (size_t i = 0; i < kept.size(); i++) {
        EXPECT_TRUE(std::equal(r1.begin() + long(i * 256), r1.begin() + long((i + 1) * 256),
                               r0.begin() + long(kept[i] * 256)));
        EXPECT_EQ(to_f32(*pruned->layers[size_t(l)].experts[i].down), to_f32(*full->layers[size_t(l)].experts[size_t(kept[i])].down));
      }
    }
    if (method == std::string("reap")) {
      EXPECT_NEAR(cli_ppl(out), 485.6869, 485.6869 * 0.001);
    }
  }
  expect_cli_error("prune " + model + " " + d + "/x.gguf --experts 17 --calib " + calib, "the model has 16 experts");
  expect_cli_error("prune " + model + " " + d + "/x.gguf --experts abc --calib " + calib, "--experts 'abc'");
  expect_cli_error("prune " + model + " " + d + "/x.gguf --experts 0.5", "--calib FILE");
  expect_cli_error("prune " + model + " " + d + "/x.gguf --experts 0.5 --method wanda --calib " + calib,
                   "with --experts, reap or frequency");
  expect_cli_error("prune " + S(kStories) + " " + d + "/x.gguf --experts 2 --calib " + calib, "has none");
}

// lmp-8m written as a mixture of 4 experts (its feed-forward neurons in 4 slices, all used) computes the same
// perplexity; REAP then removes half of each layer's experts and scores far better than keeping the first two
// (frequency: every expert takes every token, so the tie keeps experts 0 and 1). llama-perplexity on the REAP
// file (-c 128 --chunks 20): 296.6456.
TEST(PruneCli, Lmp8mAsFourExpertsThenHalved) {
  const std::string d = test::temp_dir();
  const std::string calib = S("data/calib/docs-calib.txt");
  ASSERT_EQ(run_cli("convert " + S("models/lmp-8m") + " " + d + "/moe.gguf --split-experts 4").status, 0);
  const auto info = nlohmann::json::parse(run_cli("info " + d + "/moe.gguf --json --no-tensors").out);
  EXPECT_EQ(info["config"]["num_experts"], 4);
  const double dense = cli_ppl(S("models/lmp-8m")), moe = cli_ppl(d + "/moe.gguf");
  EXPECT_NEAR(moe, dense, dense * 1e-5);
  double ppl[2];
  for (int i = 0; i < 2; i++) {
    const std::string out = d + (i ? "/freq.gguf" : "/reap.gguf");
    auto r = run_cli("prune " + d + "/moe.gguf " + out + " --experts 2 --method " + (i ? "frequency" : "reap") +
                     " --calib " + calib + " --calib-ctx 128 --calib-samples 8 --json");
    ASSERT_EQ(r.status, 0) << r.out;
    ppl[i] = cli_ppl(out);
  }
  EXPECT_NEAR(ppl[0], 296.6456, 296.6456 * 0.001);
  EXPECT_GT(ppl[1], ppl[0] * 1.1);
  expect_cli_error("convert " + d + "/moe.gguf " + d + "/x.gguf --split-experts 2", "a mixture of experts already");
  expect_cli_error("convert " + S("models/lmp-8m") + " " + d + "/x.gguf --split-experts 5", "dividing the feed-forward size 768");
}

// The codebook, non-linear and ternary file types on lmp-8m-w256 (rows of 256 and 768): llama.cpp's mixes
// (the 2-bit types keep token_embd in Q2_K and the output in Q5_K), an imatrix required where llama-quantize
// requires one, and perplexity ordered by bits: IQ4_XS near f32, IQ2_XXS above it, ternary weights far above.
// (The bytes equal llama-quantize's: Quantize.BytesEqualGgmlQuantizeChunk, and scripts/gguf-diff.py on whole files.)
TEST(QuantizeCli, CodebookAndTernaryTypes) {
  const std::string d = test::temp_dir(), in = S("models/lmp-8m-w256");
  auto r = run_cli("imatrix " + in + " -f " + S("data/calib/docs-calib.txt") + " -c 128 --chunks 8 -o " + d + "/im.gguf");
  ASSERT_EQ(r.status, 0) << r.out;
  const double base = cli_ppl(in);
  std::map<std::string, double> ppl;
  for (const char* t : {"iq4_xs", "iq2_xs", "iq2_xxs", "tq2_0"}) {
    SCOPED_TRACE(t);
    const std::string out = d + "/" + t + ".gguf";
    r = run_cli("quantize " + in + " " + out + " --type " + t + " --imatrix " + d + "/im.gguf --json");
    ASSERT_EQ(r.status, 0) << r.out;
    ppl[t] = cli_ppl(out);
    EXPECT_TRUE(std::isfinite(ppl[t]));
  }
  EXPECT_LT(ppl["iq4_xs"], base * 1.02);
  EXPECT_LT(ppl["iq4_xs"], ppl["iq2_xxs"]);
  EXPECT_LT(ppl["iq2_xxs"], base * 1.15);
  EXPECT_GT(ppl["tq2_0"], ppl["iq2_xxs"]);
  std::map<std::string, std::string> types;
  const auto info = nlohmann::json::parse(run_cli("info " + d + "/iq2_xxs.gguf --json").out);
  for (const auto& t : info["tensors"]) types[t["name"]] = t["dtype"];
  EXPECT_EQ(types["token_embd.weight"], "Q2_K");
  EXPECT_EQ(types["output.weight"], "Q5_K");
  EXPECT_EQ(types["blk.0.ffn_down.weight"], "Q2_K");  // the first eighth of the layers
  EXPECT_EQ(types["blk.5.ffn_down.weight"], "IQ2_XXS");
  EXPECT_EQ(types["blk.5.attn_q.weight"], "IQ2_XXS");
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type iq2_xs", "IQ2_XS needs an importance matrix");
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type iq2_xxs --method gptq --imatrix " + d +
                       "/im.gguf --calib " + S("data/calib/docs-calib.txt"),
                   "--method gptq cannot quantize to IQ2_XXS");
  EXPECT_FALSE(fs::exists(d + "/x.gguf"));
}

// lmp2 (lmpress's 2-bit format) in IQ2_XXS's mix: the same file size, LMP2 where IQ2_XXS's mix has IQ2_XXS;
// calibrated by GPTQ it beats IQ2_XXS with an imatrix (bench/lmp2.sh measures it on held-out text); an imatrix
// alone is used too (it changes the file); AWQ and act-order are refused.
TEST(QuantizeCli, Lmp2WithGptqBeatsIq2XxsWithImatrix) {
  const std::string d = test::temp_dir(), in = S("models/lmp-8m-w256"), calib = S("data/calib/docs-calib.txt");
  auto r = run_cli("imatrix " + in + " -f " + calib + " -c 128 --chunks 8 -o " + d + "/im.gguf");
  ASSERT_EQ(r.status, 0) << r.out;
  for (const std::string args : {"--type iq2_xxs --imatrix " + d + "/im.gguf", std::string("--type lmp2"),
                                 "--type lmp2 --imatrix " + d + "/im.gguf",
                                 "--type lmp2 --method gptq --calib " + calib + " --calib-samples 32 --calib-ctx 128"}) {
    r = run_cli("quantize " + in + " " + d + "/" + std::to_string(std::hash<std::string>{}(args)) + ".gguf " + args);
    ASSERT_EQ(r.status, 0) << args << "\n" << r.out;
  }
  auto file = [&](const std::string& args) { return d + "/" + std::to_string(std::hash<std::string>{}(args)) + ".gguf"; };
  const std::string iq2 = file("--type iq2_xxs --imatrix " + d + "/im.gguf"), rtn = file("--type lmp2"),
                    imat = file("--type lmp2 --imatrix " + d + "/im.gguf"),
                    gptq = file("--type lmp2 --method gptq --calib " + calib + " --calib-samples 32 --calib-ctx 128");
  EXPECT_EQ(fs::file_size(gptq), fs::file_size(iq2));
  std::map<std::string, std::string> types;
  const auto info = nlohmann::json::parse(run_cli("info " + gptq + " --json").out);
  for (const auto& t : info["tensors"]) types[t["name"]] = t["dtype"];
  EXPECT_EQ(types["token_embd.weight"], "Q2_K");
  EXPECT_EQ(types["blk.0.ffn_down.weight"], "Q2_K");
  EXPECT_EQ(types["blk.5.ffn_down.weight"], "LMP2");
  EXPECT_EQ(types["blk.5.attn_q.weight"], "LMP2");
  const double p_iq2 = cli_ppl(iq2), p_gptq = cli_ppl(gptq), base = cli_ppl(in);
  EXPECT_LT(p_gptq, p_iq2);
  EXPECT_LT(p_gptq, base * 1.05);
  EXPECT_NE(read_text_file(rtn), read_text_file(imat));
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type lmp2 --method awq --calib " + calib,
                   "--method awq cannot quantize to LMP2");
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type lmp2 --method gptq --act-order --calib " + calib,
                   "--act-order is not supported with LMP2");
  EXPECT_FALSE(fs::exists(d + "/x.gguf"));
}

// --compensate: the model file is plain quantize's byte for byte, the adapter
// holds F16 A [r, in] / B [out, r] for each quantized block linear, and what it
// adds, read back here and applied to the dequantized weights, lowers the
// weight error for the plain SVD (which minimizes it) and the perplexity
// through `perplexity --lora`; EoRA's output error on block 0 (same inputs for
// both) is at most the plain SVD's.
TEST(QuantizeCli, CompensationAdapter) {
  const std::string d = test::temp_dir();
  const std::string calib = " --calib " + S("data/calib/docs-calib.txt") + " --calib-samples 16 --calib-ctx 128";
  const auto plain = quantize(d + "/plain.gguf", "--type q4_0");
  const auto eora = quantize(d + "/e.gguf", "--type q4_0 --compensate rank=8" + calib);
  const auto svd = quantize(d + "/s.gguf", "--type q4_0 --compensate rank=8,method=svd --compensate-out " + d +
                                               "/svd-adapter.gguf" + calib);
  ASSERT_TRUE(fs::exists(d + "/e.eora.gguf"));
  ASSERT_TRUE(fs::exists(d + "/svd-adapter.gguf"));
  EXPECT_EQ(eora["adapter"]["rank"], 8);
  EXPECT_EQ(eora["adapter"]["bytes"].get<uint64_t>(), fs::file_size(d + "/e.eora.gguf"));
  const auto bytes = read_text_file;
  EXPECT_EQ(bytes(d + "/plain.gguf"), bytes(d + "/e.gguf"));
  EXPECT_EQ(bytes(d + "/plain.gguf"), bytes(d + "/s.gguf"));

  std::map<std::string, nlohmann::json> e_by, s_by;
  for (const auto& t : eora["tensors"]) e_by[t["name"]] = t;
  for (const auto& t : svd["tensors"]) s_by[t["name"]] = t;
  int compensated = 0;
  for (const auto& [name, t] : e_by) {
    if (!t.contains("compensated_error")) continue;
    compensated++;
    EXPECT_LT(t["compensated_error"].get<double>(), t["output_error"].get<double>()) << name;
    if (name.starts_with("blk.0."))
      EXPECT_LE(t["compensated_error"].get<double>(), s_by[name]["compensated_error"].get<double>() * (1 + 1e-6)) << name;
  }
  EXPECT_FALSE(e_by["blk.0.ffn_down.weight"].contains("compensated_error"));  // F16: rows of 172 fit no 32-block
  EXPECT_EQ(compensated, 6 * load_model(S(kStories))->cfg.n_layers);  // q, k, v, o, gate, up

  // As stored (q and k rows in the GGUF's RoPE pairing, as the adapter's B).
  const GGUFFile q = GGUFFile::open(d + "/s.gguf"), a = GGUFFile::open(d + "/svd-adapter.gguf"),
                 f32 = GGUFFile::open(S(kStories));
  EXPECT_EQ(a.get_string("general.type").value_or(""), "adapter");
  auto by_name = [](const GGUFFile& g) {
    std::map<std::string, Tensor> m;
    for (const Tensor& t : g.tensors()) m[t.name] = t;
    return m;
  };
  const auto qt = by_name(q), at = by_name(a), ot = by_name(f32);
  int pairs = 0;
  for (const auto& [an, ta] : at) {
    if (!ta.name.ends_with(".lora_a")) continue;
    pairs++;
    const std::string w = ta.name.substr(0, ta.name.size() - 7);
    ASSERT_TRUE(at.count(w + ".lora_b")) << w;
    const Tensor* tb = &at.at(w + ".lora_b");
    EXPECT_EQ(ta.dtype, DType::F16);
    EXPECT_EQ(tb->dtype, DType::F16);
    ASSERT_TRUE(qt.count(w) && ot.count(w)) << w;
    const Tensor* tq = &qt.at(w);
    const Tensor* to = &ot.at(w);
    const int64_t rows = tq->rows(), cols = tq->cols();
    ASSERT_EQ(ta.rows(), 8);
    ASSERT_EQ(ta.cols(), cols);
    ASSERT_EQ(tb->rows(), rows);
    const auto A = to_f32(ta), B = to_f32(*tb), Q = to_f32(*tq), W = to_f32(*to);
    double before = 0, after = 0;
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++) {
        double ba = 0;
        for (int64_t k = 0; k < 8; k++) ba += double(B[size_t(r * 8 + k)]) * A[size_t(k * cols + c)];
        const double e = W[size_t(r * cols + c)] - Q[size_t(r * cols + c)];
        before += e * e;
        after += (e - ba) * (e - ba);
      }
    EXPECT_LT(after, 0.9 * before) << w;
  }
  EXPECT_EQ(pairs, compensated);
  const double p_plain = cli_ppl(d + "/plain.gguf"), p_eora = cli_ppl(d + "/e.gguf --lora " + d + "/e.eora.gguf");
  EXPECT_LT(p_eora, p_plain);

  // An int-N checkpoint (of lmp-8m: stories260K's 172 rows fit no int2 packing): the same tensors as without
  // --compensate, and a PEFT adapter directory beside it. The adapter fits the calibration text's inputs, so it
  // is calibrated on WikiText-2's second half and scored on its first windows (cli_ppl), another domain than
  // docs-calib.txt (where it can lose).
  {
    const std::string text = read_text_file(S("data/wikitext-2/wiki.test.raw"));
    std::ofstream(d + "/wiki-second-half.txt", std::ios::binary) << text.substr(text.size() / 2);
  }
  const std::string lmp = "quantize " + S("models/lmp-8m") + " ";
  ASSERT_EQ(run_cli(lmp + d + "/i2 --type int2-g32").status, 0);
  const auto r = run_cli(lmp + d + "/i2c --type int2-g32 --compensate rank=4 --json --calib " + d +
                         "/wiki-second-half.txt --calib-samples 8 --calib-ctx 128");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto i_eora = nlohmann::json::parse(r.out);
  ASSERT_TRUE(fs::exists(d + "/i2c-eora/adapter_config.json"));
  ASSERT_TRUE(fs::exists(d + "/i2c-eora/adapter_model.safetensors"));
  EXPECT_EQ(bytes(d + "/i2/model.safetensors"), bytes(d + "/i2c/model.safetensors"));
  EXPECT_EQ(i_eora["adapter"]["rank"], 4);
  // Scale 0 is the checkpoint run on the merged F32 path (the plain one runs int kernels).
  const double i_p = cli_ppl(d + "/i2c --lora " + d + "/i2c-eora:0"), i_c = cli_ppl(d + "/i2c --lora " + d + "/i2c-eora");
  EXPECT_LT(i_c, 0.99 * i_p);
}

TEST(QuantizeCli, BadInputs) {
  const std::string d = test::temp_dir();
  const std::string in = S(kStories);
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type q4_z", "--type 'q4_z': unknown type");
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type q4_0 --method gptq", "needs calibration text");
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type q4_0 --tensor-type ffn_down", "expected PATTERN=TYPE");
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type q4_0 --tensor-type 'ffn_(=q4_0'", "bad regular expression");
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type q4_0 --tensor-type ffn_down=q8_0 --tensor-type 'mlp.down=q8_0'",
                   "--tensor-type 'mlp.down=q8_0': the pattern matches no quantizable tensor");
  std::ofstream(d + "/short.txt") << "Too short.";
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type q4_0 --method awq --calib " + d + "/short.txt",
               "calibration text is too short");
  std::ofstream(d + "/empty.txt") << "";
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type q4_0 --method gptq --calib " + d + "/empty.txt", "empty");
  expect_cli_error("quantize " + in + " " + d + "/x.gguf --type q4_0 --imatrix " + in, "not an imatrix");
  EXPECT_FALSE(fs::exists(d + "/x.gguf"));
  // Requantizing needs a flag.
  ASSERT_EQ(run_cli("quantize " + in + " " + d + "/q.gguf --type q8_0").status, 0);
  expect_cli_error("quantize " + d + "/q.gguf " + d + "/q2.gguf --type q4_0", "already quantized");
  EXPECT_EQ(run_cli("quantize " + d + "/q.gguf " + d + "/q2.gguf --type q4_0 --allow-requantize").status, 0);
  expect_cli_error("quantize " + d + "/q.gguf " + d + "/q.gguf --type q4_0 --allow-requantize", "refusing to overwrite");
  // Tensors that keep their type are copied: no requantization, no flag needed.
  EXPECT_EQ(run_cli("quantize " + d + "/q.gguf " + d + "/q3.gguf --type q8_0").status, 0);
  expect_cli_error("quantize " + d + "/q.gguf " + d + "/q3.gguf --type q8_0 --method gptq --calib " + S("data/calib/docs-calib.txt"),
                   "already quantized");
  // --compensate
  const std::string x = "quantize " + in + " " + d + "/x.gguf --type q4_0 ";
  const std::string cal = " --calib " + S("data/calib/docs-calib.txt") + " --calib-samples 2 --calib-ctx 32";
  expect_cli_error(x + "--compensate rank=4", "--compensate measures each linear's inputs on calibration text");
  expect_cli_error(x + "--compensate rank=0" + cal, "rank must be a whole number of at least 1");
  expect_cli_error(x + "--compensate rank=2.5" + cal, "rank must be a whole number");
  expect_cli_error(x + "--compensate 4" + cal, "expected rank=R[,method=eora|svd]");
  expect_cli_error(x + "--compensate rank=4,method=pca" + cal, "expected rank=R[,method=eora|svd], got 'method=pca'");
  expect_cli_error(x + "--compensate method=svd" + cal, "rank=R is required");
  expect_cli_error(x + "--compensate rank=64" + cal, "--compensate rank=64: blk.0.attn_q.weight is 64x64 (out x in); the rank must be below min(out, in) = 64");
  expect_cli_error(x + "--compensate-out " + d + "/a.gguf" + cal, "--compensate-out without --compensate");
  expect_cli_error(x + "--compensate rank=4 --compensate-out " + d + "/a.bin" + cal, "name it .gguf");
  expect_cli_error(x + "--compensate rank=4 --compensate-out " + d + "/x.gguf" + cal, "cannot be the same file");
  expect_cli_error(x + "--compensate rank=4 --compensate-out " + in + cal, "refusing to overwrite");
  expect_cli_error("quantize " + in + " " + d + "/int4 --type int4-g32 --compensate rank=4 --compensate-out " + d +
                       "/a.gguf" + cal,
                   "an int-N checkpoint's adapter is a PEFT directory, not GGUF");
  expect_cli_error("quantize " + in + " " + d + "/w8 --scheme w8a8 --compensate rank=4" + cal,
                   "--compensate with --scheme w8a8");
  EXPECT_FALSE(fs::exists(d + "/x.gguf"));
  EXPECT_FALSE(fs::exists(d + "/x.eora.gguf"));
}

}  // namespace
}  // namespace lmpress
