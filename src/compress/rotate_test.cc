#include "compress/rotate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "kernels/to_f32.h"
#include "model/export.h"
#include "model/forward.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

std::vector<float> all_logits(const Model& m, const std::vector<int32_t>& toks) {
  InferenceState st(m, int64_t(toks.size()), int64_t(toks.size()), KvType::F32);
  std::vector<float> out(toks.size() * size_t(m.cfg.n_vocab));
  st.eval(toks.data(), int64_t(toks.size()), out.data(), true);
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); i++) worst = std::max(worst, double(std::fabs(a[i] - b[i])));
  return worst;
}

// The rotated model computes the same function: logits equal the original's
// within float error, on lmp-8m (width 288 = 36·8: a Paley factor), lmp-8m-w256
// (a power of two), and synthetic Qwen2 (q/k/v biases, width 48 = 12·4) and
// tied Llama 3 models; what is written reads back with its metadata.
TEST(Rotate, KeepsTheFunction) {
  std::vector<std::string> paths;
  for (const char* name : {"models/lmp-8m", "models/lmp-8m-w256"})
    if (test::have_shared(std::string(name) + "/model.safetensors")) paths.push_back(test::shared_path(name));
  const std::string dir = test::temp_dir();
  test::SyntheticSpec qwen;
  qwen.arch = "Qwen2ForCausalLM";
  qwen.dim = 48;
  std::filesystem::create_directories(dir + "/qwen");
  test::write_synthetic_hf(dir + "/qwen", qwen);
  test::SyntheticSpec llama3;
  llama3.llama3_rope = true;
  llama3.tied = true;
  std::filesystem::create_directories(dir + "/llama3");
  test::write_synthetic_hf(dir + "/llama3", llama3);
  paths.push_back(dir + "/qwen");
  paths.push_back(dir + "/llama3");
  // Mixtures of experts: the router, a shared expert behind its gate (Qwen2-MoE), dense first blocks and
  // ungated shared experts (DeepSeekMoE); without R4, which they refuse.
  std::set<std::string> mixtures;
  for (const char* arch : {"Qwen2MoeForCausalLM", "DeepseekForCausalLM", "MixtralForCausalLM"}) {
    test::SyntheticSpec moe;
    moe.arch = arch;
    std::filesystem::create_directories(dir + "/" + arch);
    test::write_synthetic_hf(dir + "/" + arch, moe);
    paths.push_back(dir + "/" + arch);
    mixtures.insert(paths.back());
  }
  for (const std::string& path : paths)
    for (const bool r4 : {false, true}) {
      if (r4 && mixtures.count(path)) continue;
      SCOPED_TRACE(path + (r4 ? " R4" : ""));
      auto m = load_model(path);
      std::vector<int32_t> toks;
      if (m->cfg.n_vocab > 1000) {
        toks = m->tokenizer->encode("Once upon a time there was a river, and the river ran to the sea.", true, false);
      } else {
        for (int i = 0; i < 40; i++) toks.push_back((i * 37 + 11) % int(m->cfg.n_vocab));
      }
      const auto before = all_logits(*m, toks);
      const std::vector<float> embd_before = to_f32(m->tensor("token_embd.weight"));
      const bool tied = m->cfg.tied_embeddings;
      const RotateReport r = rotate_model(*m, parse_rotate_spec(r4 ? "hadamard:7,r4" : "hadamard:7", "--rotate"));
      EXPECT_EQ(r.size, m->cfg.dim);
      EXPECT_EQ(r.down_size, r4 ? m->cfg.ffn_dim : 0);
      EXPECT_EQ(bool(m->cfg.down_rotation), r4);
      EXPECT_EQ(r.untied, tied);
      EXPECT_TRUE(r.heads);  // head sizes 48, 64, 12, 8
      EXPECT_FALSE(m->cfg.tied_embeddings);
      for (float g : m->layers[1].attn_norm) ASSERT_EQ(g, 1.0f);
      for (float g : m->output_norm) ASSERT_EQ(g, 1.0f);
      const auto after = all_logits(*m, toks);
      EXPECT_LT(max_abs_diff(before, after), 2e-3);
      EXPECT_GT(max_abs_diff(to_f32(m->tensor("token_embd.weight")), embd_before), 1e-3);  // the weights did change
      write_gguf_model(*m, dir + "/r.gguf", {});
      auto back = load_model(dir + "/r.gguf");
      EXPECT_EQ(back->rotation, r4 ? "hadamard:7 R1 R2 R4" : "hadamard:7 R1 R2");
      EXPECT_LT(max_abs_diff(before, all_logits(*back, toks)), 2e-3);
      if (r4) {
        ASSERT_TRUE(back->cfg.down_rotation);
        EXPECT_EQ(back->cfg.down_rotation->seed(), 9u);  // R4's signs: seed + 2
        // Without the online rotation the weights compute another function.
        back->cfg.down_rotation.reset();
        EXPECT_GT(max_abs_diff(before, all_logits(*back, toks)), 1e-2);
      }
    }
}

TEST(Rotate, RefusesWhatItCannotRotate) {
  test::expect_error([] { parse_rotate_spec("random", "--rotate"); }, "--rotate random: the rotation is hadamard, hadamard:SEED");
  test::expect_error([] { parse_rotate_spec("hadamard:-1", "--rotate"); }, "the seed '-1' is not a non-negative integer");
  test::expect_error([] { parse_rotate_spec("hadamard:", "--rotate"); }, "the seed '' is not");
  EXPECT_EQ(parse_rotate_spec("hadamard", "--rotate").seed, 0u);
  EXPECT_EQ(rotate_spec_name(parse_rotate_spec("hadamard:12", "--rotate")), "hadamard:12");
  const std::string dir = test::temp_dir();
  test::SyntheticSpec odd;
  odd.dim = 40;  // 20·2: Paley's order 20 (q = 19)
  std::filesystem::create_directories(dir + "/a");
  test::write_synthetic_hf(dir + "/a", odd);
  auto a = load_model(dir + "/a");
  const RotateReport ra = rotate_model(*a, {});
  EXPECT_FALSE(ra.heads);  // head size 10: R1 alone
  EXPECT_EQ(a->rotation, "hadamard:0 R1");
  odd.dim = 46;  // 2·23: no Hadamard matrix of order 23 or 46
  odd.n_heads = 1;
  odd.n_kv_heads = 1;
  std::filesystem::create_directories(dir + "/b");
  test::write_synthetic_hf(dir + "/b", odd);
  auto b = load_model(dir + "/b");
  test::expect_error([&] { rotate_model(*b, {}); }, "hidden_size 46: no Hadamard matrix of this size");
  std::filesystem::create_directories(dir + "/c");
  test::write_synthetic_hf(dir + "/c", {});
  auto c = load_model(dir + "/c");
  ExportOptions q8;
  q8.dtype = DType::Q8_0;
  write_gguf_model(*c, dir + "/q.gguf", q8);
  auto q = load_model(dir + "/q.gguf");
  test::expect_error([&] { rotate_model(*q, {}); }, "token_embd.weight is Q8_0: rotation changes float weights");

  // R4: its spelling, a feed-forward size with no Hadamard matrix, twice, Hugging Face output, bad metadata.
  test::expect_error([] { parse_rotate_spec("hadamard:3,r5", "--rotate"); }, "'r5' is not a rotation lmpress adds");
  const RotateSpec r4 = parse_rotate_spec("hadamard:12,r4", "--rotate");
  EXPECT_TRUE(r4.down);
  EXPECT_EQ(rotate_spec_name(r4), "hadamard:12,r4");
  test::SyntheticSpec ffn46;
  ffn46.ffn = 46;
  std::filesystem::create_directories(dir + "/d");
  test::write_synthetic_hf(dir + "/d", ffn46);
  auto d = load_model(dir + "/d");
  test::expect_error([&] { rotate_model(*d, r4); }, "intermediate_size 46: no Hadamard matrix of this size for R4");
  test::SyntheticSpec mixtral;
  mixtral.arch = "MixtralForCausalLM";
  std::filesystem::create_directories(dir + "/moe");
  test::write_synthetic_hf(dir + "/moe", mixtral);
  auto moe = load_model(dir + "/moe");
  test::expect_error([&] { rotate_model(*moe, r4); }, "R4 (,r4: online before ffn_down) of a mixture of experts");
  auto e = load_model(dir + "/c");
  rotate_model(*e, r4);
  test::expect_error([&] { rotate_model(*e, r4); }, "ffn_down's input is rotated online (R4) already");
  test::expect_error([&] { write_hf_model(*e, dir + "/hf", {}); }, "which Hugging Face engines do not do");
  EXPECT_FALSE(std::filesystem::exists(dir + "/hf"));
  write_gguf_model(*e, dir + "/r4.gguf", {});
  const GGUFFile g = GGUFFile::open(dir + "/r4.gguf");
  const std::vector<std::tuple<std::string, GGUFValue, std::string>> bad{
      {"lmpress.rotation.ffn_down_seed", GGUFValue::str("14"), "lmpress.rotation.ffn_down_seed should be uint64"},
      {"llama.feed_forward_length", GGUFValue::u32(46), "llama.feed_forward_length 46 has no Hadamard matrix"},
  };
  for (const auto& [key, value, msg] : bad) {
    GGUFWriter w;
    for (const auto& [k, v] : g.kv) w.set(k, k == key ? value : v);
    for (const auto& t : g.tensors()) w.add_tensor(t);
    w.write(dir + "/bad.gguf");
    test::expect_error([&] { load_model(dir + "/bad.gguf"); }, msg);
  }
}

// From the command line: `rotate` writes a file whose perplexity is the
// original's (llama-perplexity -c 256 --chunks 40 gives 295.5153 on both the
// original lmp-8m and this rotated file); quantize and prune rotate first and
// record it; what cannot be combined is refused by name.
TEST(Rotate, CommandLine) {
  if (!test::have_shared("models/lmp-8m/model.safetensors")) GTEST_SKIP();
  const std::string d = test::temp_dir(), m = test::shared_path("models/lmp-8m");
  const std::string wiki = " -f " + test::shared_path("data/wikitext-2/wiki.test.raw") + " --ctx 256 --chunks 40 --json";
  auto r = test::run_cli("rotate " + m + " " + d + "/r.gguf --rotate hadamard:0");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("width 288 = 36·8"), std::string::npos) << r.out;
  r = test::run_cli("perplexity " + d + "/r.gguf" + wiki);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NEAR(nlohmann::json::parse(r.out)["ppl"].get<double>(), 295.515, 295.515 * 0.001);
  r = test::run_cli("info " + d + "/r.gguf --json --no-tensors");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["rotation"], "hadamard:0 R1 R2");

  ASSERT_EQ(test::run_cli("quantize " + m + " " + d + "/q.gguf --type q8_0 --rotate hadamard:4").status, 0);
  ASSERT_EQ(test::run_cli("prune " + m + " " + d + "/p.gguf --nm 2:4 --rotate hadamard:4").status, 0);
  for (const char* f : {"/q.gguf", "/p.gguf"}) {
    r = test::run_cli(std::string("info ") + d + f + " --json --no-tensors");
    EXPECT_EQ(nlohmann::json::parse(r.out)["rotation"], "hadamard:4 R1 R2") << f;
  }
  test::expect_cli_error("quantize " + m + " " + d + "/x.gguf --type q4_0 --rotate hadamard --imatrix " + d + "/q.gguf",
                         "--imatrix with --rotate: the importance matrix was measured on the unrotated model");
  test::expect_cli_error("quantize " + m + " " + d + "/x.gguf --type q4_0 --rotate spin", "--rotate spin: the rotation is");
  test::expect_cli_error("prune " + m + " " + d + "/x.gguf --structured ffn=0.2 --rotate hadamard --calib " +
                             test::shared_path("data/calib/docs-calib.txt"),
                         "--rotate applies to unstructured and N:M pruning");
  test::expect_cli_error("rotate " + d + "/q.gguf " + d + "/x.gguf", "rotation changes float weights");
  EXPECT_FALSE(std::filesystem::exists(d + "/x.gguf"));

  // R4 from the command line: the same perplexity, recorded and shown; what cannot follow it is refused.
  r = test::run_cli("rotate " + m + " " + d + "/r4.gguf --rotate hadamard:0,r4");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("ffn_down's input (768 = 12·64) online"), std::string::npos) << r.out;
  r = test::run_cli("perplexity " + d + "/r4.gguf" + wiki);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NEAR(nlohmann::json::parse(r.out)["ppl"].get<double>(), 295.515, 295.515 * 0.001);
  ASSERT_EQ(test::run_cli("quantize " + m + " " + d + "/q4.gguf --type q8_0 --rotate hadamard:4,r4").status, 0);
  r = test::run_cli("info " + d + "/q4.gguf --json --no-tensors");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto info = nlohmann::json::parse(r.out);
  EXPECT_EQ(info["rotation"], "hadamard:4 R1 R2 R4");
  EXPECT_EQ(info["online_rotation"]["size"], 768);
  EXPECT_EQ(info["online_rotation"]["seed"], 6);
  test::expect_cli_error("convert " + d + "/r4.gguf " + d + "/hf", "which Hugging Face engines do not do");
  test::expect_cli_error("quantize " + d + "/r4.gguf " + d + "/int4 --type int4-g32", "which Hugging Face engines do not do");
  test::expect_cli_error("quantize " + m + " " + d + "/int4 --type int4-g32 --rotate hadamard,r4",
                         "--rotate hadamard,r4: R4 is applied at run time");
  test::expect_cli_error("prune " + d + "/r4.gguf " + d + "/x.gguf --structured ffn=0.2 --calib " +
                             test::shared_path("data/calib/docs-calib.txt"),
                         "--structured ffn=0.2: ffn_down's input is rotated online (R4)");
  test::expect_cli_error("finetune " + d + "/r4.gguf " + d + "/x.gguf --steps 1 --data " +
                             test::shared_path("data/calib/docs-calib.txt"),
                         "an online rotation before ffn_down (R4)");
  test::expect_cli_error("convert " + d + "/r4.gguf " + d + "/x.gguf --split-experts 2", "rotated online (R4)");
  EXPECT_FALSE(std::filesystem::exists(d + "/hf"));
  EXPECT_FALSE(std::filesystem::exists(d + "/int4"));
  EXPECT_FALSE(std::filesystem::exists(d + "/x.gguf"));
}

}  // namespace
}  // namespace lmpress
