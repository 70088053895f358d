// `lmpress kld` against llama.cpp's `llama-perplexity --kl-divergence` on the
// same pair of files, and against lmpress's own perplexity.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <iterator>

#include "test_util.h"

namespace lmpress {
namespace {

using test::expect_cli_error;
using test::run_cli;

std::string S(const std::string& rel) { return test::shared_path(rel); }

// llama.cpp's numbers (build de3ff81), from
//   llama-perplexity -m lmp-8m-f32.gguf -f wiki.test.raw -c 256 --chunks 40 --kl-divergence-base kb.bin
//   llama-perplexity -m lmp-8m-TYPE.gguf ... --kl-divergence-base kb.bin --kl-divergence
// with lmp-8m-f32.gguf from `lmpress convert --dtype f32` and TYPE files from llama-quantize
// (which lmpress quantize reproduces byte for byte).
struct LlamaKld {
  const char* type;
  double kld, kld_unc, same_top, same_top_unc, ppl_diff, ppl_diff_unc;
};
constexpr LlamaKld kLlama[] = {
    {"q4_0", 0.004570, 0.000050, 0.92657, 0.00366, -1.612071, 0.481552},
    {"q2_k", 0.006879, 0.000072, 0.91614, 0.00389, 0.330706, 0.543480},
};

TEST(KldCli, MatchesLlamaPerplexity) {
  const std::string d = test::temp_dir();
  ASSERT_EQ(run_cli("convert " + S("models/lmp-8m") + " " + d + "/f32.gguf --dtype f32").status, 0);
  const std::string text = S("data/wikitext-2/wiki.test.raw");
  for (const auto& ref : kLlama) {
    SCOPED_TRACE(ref.type);
    const std::string q = d + "/" + ref.type + ".gguf";
    ASSERT_EQ(run_cli("quantize " + d + "/f32.gguf " + q + " --type " + ref.type).status, 0);
    auto r = run_cli("kld " + d + "/f32.gguf " + q + " -f " + text + " -c 256 --chunks 40 --json");
    ASSERT_EQ(r.status, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["n_tokens"], 40 * 127);
    // llama.cpp multiplies quantized weights with int8-quantized activations
    // (q8_0 / q8_K), lmpress with f32 ones, so the candidate's logits differ
    // slightly: that extra noise raises llama.cpp's KLD by up to ~3% (Q2_K mix).
    EXPECT_NEAR(j["kld"]["value"].get<double>(), ref.kld, std::max(3 * ref.kld_unc, 0.04 * ref.kld));
    EXPECT_LE(j["kld"]["value"].get<double>(), ref.kld + 3 * ref.kld_unc);
    EXPECT_NEAR(j["same_top"]["value"].get<double>(), ref.same_top, 2 * ref.same_top_unc);
    EXPECT_NEAR(j["ppl_diff"]["value"].get<double>(), ref.ppl_diff, ref.ppl_diff_unc);
    EXPECT_NEAR(j["kld"]["unc"].get<double>(), ref.kld_unc, 0.2 * ref.kld_unc);
    // PPL(Q) and PPL(base) are what `lmpress perplexity` gives on each file.
    auto p = nlohmann::json::parse(run_cli("perplexity " + q + " -f " + text + " -c 256 --chunks 40 --json").out);
    EXPECT_NEAR(j["ppl"]["value"].get<double>(), p["ppl"].get<double>(), 1e-6 * p["ppl"].get<double>());
  }
  // A model against itself: zero divergence, full agreement.
  auto r = run_cli("kld " + d + "/f32.gguf " + S("models/lmp-8m") + " -f " + text + " -c 256 --chunks 4 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_LT(j["kld"]["value"].get<double>(), 1e-6);
  EXPECT_GT(j["same_top"]["value"].get<double>(), 0.999);
  // The text layout of llama-perplexity.
  r = run_cli("kld " + d + "/f32.gguf " + d + "/q4_0.gguf -f " + text + " -c 256 --chunks 4");
  EXPECT_NE(r.out.find("Mean    KLD:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Same top p:"), std::string::npos);
  EXPECT_NE(r.out.find("Mean PPL(Q)-PPL(base)         :"), std::string::npos);
}

// --save-base then --base-logits: with every logit saved it reproduces the
// one-step numbers; with the default top-k it is a lower bound that holds
// most of the probability mass.
TEST(KldCli, SavedBaseMatchesOneStep) {
  const std::string d = test::temp_dir(), text = S("data/wikitext-2/wiki.test.raw");
  ASSERT_EQ(run_cli("convert " + S("models/lmp-8m") + " " + d + "/f32.gguf --dtype f32").status, 0);
  ASSERT_EQ(run_cli("quantize " + d + "/f32.gguf " + d + "/q.gguf --type q4_0").status, 0);
  const std::string w = " -c 64 --chunks 3";
  auto one = run_cli("kld " + d + "/f32.gguf " + d + "/q.gguf -f " + text + w + " --json");
  ASSERT_EQ(one.status, 0) << one.out;
  const auto j1 = nlohmann::json::parse(one.out);
  for (const char* k : {"32000", "256"}) {
    SCOPED_TRACE(k);
    const std::string b = d + "/b" + k + ".kld";
    auto s = run_cli("kld " + d + "/f32.gguf -f " + text + w + " --save-base " + b + " --top-k " + k);
    ASSERT_EQ(s.status, 0) << s.out;
    auto r = run_cli("kld --base-logits " + b + " " + d + "/q.gguf --json");
    ASSERT_EQ(r.status, 0) << r.out;
    const auto j2 = nlohmann::json::parse(r.out);
    EXPECT_EQ(j2["n_tokens"], j1["n_tokens"]);
    EXPECT_NEAR(j2["ppl"]["value"].get<double>(), j1["ppl"]["value"].get<double>(), 1e-9);
    EXPECT_NEAR(j2["ppl_base"]["value"].get<double>(), j1["ppl_base"]["value"].get<double>(), 1e-4);
    EXPECT_EQ(j2["same_top"]["value"], j1["same_top"]["value"]);
    const double full = j1["kld"]["value"].get<double>(), saved = j2["kld"]["value"].get<double>();
    if (std::string(k) == "32000") {
      EXPECT_NEAR(saved, full, 1e-3 * full);
      EXPECT_NEAR(j2["top_k_mass"].get<double>(), 1.0, 1e-5);
    } else {
      EXPECT_LE(saved, full * 1.001);
      EXPECT_GT(saved, 0.5 * full);
      EXPECT_GT(j2["top_k_mass"].get<double>(), 0.8);
    }
  }
  // Malformed saved files and a candidate with another vocabulary.
  const std::string b = d + "/b256.kld";
  std::ofstream(d + "/junk.kld") << "not a kld file at all, just some text that is long enough to hold a header";
  expect_cli_error("kld --base-logits " + d + "/junk.kld " + d + "/q.gguf", "LMPKLDB1");
  std::string bytes;
  {
    std::ifstream in(b, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(d + "/cut.kld", std::ios::binary) << bytes.substr(0, bytes.size() - 100);
  expect_cli_error("kld --base-logits " + d + "/cut.kld " + d + "/q.gguf", "truncated");
  expect_cli_error("kld --base-logits " + b + " " + S("models/stories260K/stories260K.gguf"), "vocabularies differ");
  expect_cli_error("kld --base-logits " + b + " " + d + "/q.gguf -f " + text, "drop -f");
  expect_cli_error("kld " + d + "/q.gguf -f " + text, "BASE and CANDIDATE");
}

TEST(KldCli, BadInputs) {
  const std::string text = S("data/wikitext-2/wiki.test.raw");
  expect_cli_error("kld " + S("models/lmp-8m") + " " + S("models/stories260K/stories260K.gguf") + " -f " + text,
                   "vocabularies differ");
  const std::string d = test::temp_dir();
  std::ofstream(d + "/short.txt") << "Once upon a time.";
  expect_cli_error("kld " + S("models/lmp-8m") + " " + S("models/lmp-8m") + " -f " + d + "/short.txt",
                   "2 x ctx");
}

}  // namespace
}  // namespace lmpress
