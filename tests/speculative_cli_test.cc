// `lmpress generate --spec`: greedy output equals plain decoding's token for
// token for every drafter, on lmp-8m and stories260K; bad options are errors.
// And dynamic depth for plain decoding (--early-exit) through generate and kld.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "test_util.h"

namespace lmpress {
namespace {

using Json = nlohmann::json;

const char* kPrompt = "Once upon a time, there was a little girl named Lily. She loved to play outside. One day, Lily";

Json generate(const std::string& model, const std::string& extra) {
  const auto r = test::run_cli("generate " + model + " -p '" + std::string(kPrompt) + "' -n 48 --ignore-eos --json -t 2 " + extra);
  EXPECT_EQ(r.status, 0) << extra << "\n" << r.out;
  if (r.status != 0) return Json();
  return Json::parse(r.out.substr(r.out.find('{')));
}

// cache: the target's KV-cache options, the same for both runs.
void expect_greedy_equal(const std::string& model, const std::vector<std::string>& specs,
                         const std::string& cache = "") {
  const Json plain = generate(model, cache);
  ASSERT_EQ(plain["tokens"].size(), 48u);
  for (const std::string& spec : specs)
    for (int dmax : {2, 5}) {
      const std::string opts =
          "--spec " + spec + " --draft-max " + std::to_string(dmax) + " --draft-p-min 0.3 " + cache;
      const Json j = generate(model, opts);
      ASSERT_TRUE(j.contains("spec")) << opts;
      EXPECT_EQ(j["tokens"], plain["tokens"]) << model << " " << opts;
      EXPECT_EQ(j["text"], plain["text"]) << opts;
      const Json& s = j["spec"];
      EXPECT_GT(s["steps"].get<int>(), 0) << opts;
      EXPECT_LE(s["accepted"].get<int>(), s["drafted"].get<int>()) << opts;
      // Each pass yields its accepted drafts and one token of the target's.
      EXPECT_EQ(s["steps"].get<int>() + s["accepted"].get<int>(), 48 - 1) << opts;
    }
}

TEST(SpeculativeCli, GreedyEqualsPlainDecodingForEveryDrafter) {
  if (!test::have_shared("models/lmp-8m/config.json") || !test::have_shared("models/stories260K/stories260K.gguf"))
    GTEST_SKIP() << "no lmp-8m / stories260K";
  const std::string lmp = test::shared_path("models/lmp-8m"), w256 = test::shared_path("models/lmp-8m-w256");
  const std::string stories = test::shared_path("models/stories260K/stories260K.gguf");
  // A compressed copy of each target for self:file.
  const std::string dir = test::temp_dir();
  ASSERT_EQ(test::run_cli("convert " + lmp + " " + dir + "/lmp-q4.gguf --dtype q4_0").status, 0);
  ASSERT_EQ(test::run_cli("convert " + stories + " " + dir + "/st-q8.gguf --dtype q8_0").status, 0);
  const std::string calib = test::shared_path("data/calib/docs-calib.txt");
  expect_greedy_equal(lmp, {"ngram", "ngram:2-4", "draft:" + w256, "self:skip:2,4", "self:exit:2", "self:file:" + dir + "/lmp-q4.gguf",
                            "self:skip:auto:2 --spec-calib " + calib});
  expect_greedy_equal(stories, {"ngram", "self:skip:1", "self:exit:0", "self:file:" + dir + "/st-q8.gguf"});
  // Quantized caches: rejected drafts are cut from them too (KIVI keeps their
  // f16 rows for that; its groups of 16 are quantized within each run).
  expect_greedy_equal(w256, {"ngram", "draft:" + lmp}, "--cache-type q4_0");
  expect_greedy_equal(w256, {"ngram", "draft:" + lmp}, "--cache-type kivi4 --kv-group 16 --kv-residual 4");
}

TEST(SpeculativeCli, BadOptionsAreErrors) {
  if (!test::have_shared("models/lmp-8m/config.json") || !test::have_shared("models/stories260K/stories260K.gguf"))
    GTEST_SKIP() << "no lmp-8m / stories260K";
  const std::string lmp = test::shared_path("models/lmp-8m");
  const std::string stories = test::shared_path("models/stories260K/stories260K.gguf");
  const std::string g = "generate " + lmp + " -p hi -n 4 ";
  const std::pair<std::string, std::string> cases[] = {
      {"--spec draft:" + stories, "has 512 tokens, the target 4096: more than 128 apart"},
      {"--spec ngram --draft-max 0", "--draft-max"},
      {"--spec ngram --draft-max 100000", "--draft-max 100000: it must be in [1, 256)"},
      {"--spec ngram --draft-min 9 --draft-max 4", "--draft-min 9"},
      {"--spec ngram --draft-p-min 1.5", "--draft-p-min: Value 1.5 not in range"},
      {"--spec ngram --draft-p-min -0.1", "--draft-p-min: Value -0.1 not in range"},
      {"--spec self:skip:0-5", "skips every block"},
      {"--spec self:skip:9", "outside the model's 6 blocks"},
      {"--spec self:exit:5", "the exit block must be in [0, 4]"},
      {"--spec self:exit:x", "the exit block must be in"},
      {"--spec beam", "--spec 'beam': unknown type"},
      {"--spec ngram:3-2", "write ngram:MIN-MAX"},
      {"--spec ngram:0", "write ngram:MIN-MAX"},
      {"--spec ngram:x-4", "write ngram:MIN-MAX"},
      {"--spec draft:/nonexistent/model.gguf", "/nonexistent/model.gguf"},
      {"--spec self:skip:auto:2", "needs --spec-calib TEXT"},
      {"--spec self:skip:auto --spec-calib " + test::shared_path("data/calib/docs-calib.txt"), "write self:skip:auto:N"},
      {"--spec self:skip:auto:6 --spec-calib " + test::shared_path("data/calib/docs-calib.txt"), "it must be in [1, 5]"},
  };
  for (const auto& [args, msg] : cases) test::expect_cli_error(g + args, msg);
  // serve checks --spec before it listens.
  test::expect_cli_error("serve " + lmp + " --port 0 --spec self:skip:0-5", "skips every block");
}

// bench --spec: plain and speculative runs of the same prompt (bench checks
// their tokens are equal), the drafts' statistics summed over the timed runs.
TEST(SpeculativeCli, BenchTimesSpeculativeAgainstPlainDecoding) {
  if (!test::have_shared("models/lmp-8m-w256/config.json")) GTEST_SKIP() << "no lmp-8m-w256";
  const std::string w256 = test::shared_path("models/lmp-8m-w256");
  const std::string dir = test::temp_dir();
  {
    std::ofstream f(dir + "/prompt.txt");
    f << kPrompt << " " << kPrompt;
  }
  const auto r = test::run_cli("bench " + w256 + " --spec ngram --draft-max 3 -f " + dir +
                               "/prompt.txt -n 16,24 -r 2 -t 2 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const Json j = Json::parse(r.out.substr(r.out.find('[')));
  ASSERT_EQ(j.size(), 2u);
  for (size_t i = 0; i < 2; i++) {
    EXPECT_EQ(j[i]["n_gen"], i ? 24 : 16);
    EXPECT_EQ(j[i]["samples_ts"].size(), 2u);
    EXPECT_EQ(j[i]["plain_samples_ts"].size(), 2u);
    EXPECT_GT(j[i]["avg_ts"].get<double>(), 0);
    const Json& s = j[i]["spec"];
    // Two timed runs, each of n tokens: every pass yields its accepted drafts and one token.
    EXPECT_EQ(s["steps"].get<int>() + s["accepted"].get<int>(), 2 * (j[i]["n_gen"].get<int>() - 1));
    EXPECT_GT(s["drafted"].get<int>(), 0);
  }
  const std::string b = "bench " + w256 + " -n 8 -r 1 ";
  test::expect_cli_error(b + "--spec ngram", "bench --spec needs -f PROMPT");
  test::expect_cli_error(b + "--spec ngram -f " + dir + "/prompt.txt -p 64", "drop -p and -d");
  test::expect_cli_error(b + "-f " + dir + "/prompt.txt", "the prompt is for --spec only");
  test::expect_cli_error(b + "--spec self:exit:9 -f " + dir + "/prompt.txt", "the exit block must be in [0, 6]");
}

// kld of a model against itself with an early exit: a threshold never reached
// costs nothing (the decoded tokens' logits equal the batch's but for
// rounding), one often reached exits some tokens and costs KL divergence, the
// more the lower the threshold; generate reports the exits and, never
// exiting, decodes plain decoding's tokens.
TEST(EarlyExitCli, KldAgainstFullDepthAndGenerate) {
  if (!test::have_shared("models/lmp-8m/config.json")) GTEST_SKIP() << "no lmp-8m";
  const std::string lmp = test::shared_path("models/lmp-8m");
  const std::string kld = "kld " + lmp + " " + lmp + " -f " + test::shared_path("data/calib/docs-calib.txt") +
                          " -c 128 --chunks 2 --json -t 2 --exit-layer 3 --early-exit ";
  const auto run = [&](const std::string& t) {
    const auto r = test::run_cli(kld + t);
    EXPECT_EQ(r.status, 0) << r.out;
    return r.status ? Json() : Json::parse(r.out.substr(r.out.find('{')));
  };
  const Json never = run("1"), some = run("0.5"), more = run("0.2");
  ASSERT_TRUE(never.contains("early_exit") && some.contains("early_exit") && more.contains("early_exit"));
  EXPECT_EQ(never["early_exit"]["steps"], 2 * 64);
  EXPECT_EQ(never["early_exit"]["exited"], 0);
  EXPECT_LT(never["kld"]["value"].get<double>(), 1e-6);
  const int64_t s = some["early_exit"]["exited"], m = more["early_exit"]["exited"];
  EXPECT_GT(s, 0);
  EXPECT_GT(m, s);
  EXPECT_LT(m, 128);
  EXPECT_GT(some["kld"]["value"].get<double>(), 1e-3);
  EXPECT_GT(more["kld"]["value"].get<double>(), some["kld"]["value"].get<double>());

  const Json plain = generate(lmp, ""), full = generate(lmp, "--early-exit 1 --exit-measure state");
  EXPECT_EQ(full["tokens"], plain["tokens"]);
  EXPECT_EQ(full["early_exit"]["exited"], 0);
  EXPECT_EQ(full["early_exit"]["steps"], 47);
  EXPECT_EQ(full["early_exit"]["layer"], 2);  // the default: n_layers / 2 - 1
  const Json ee = generate(lmp, "--early-exit 0.2 --exit-layer 4");
  EXPECT_GT(ee["early_exit"]["exited"].get<int>(), 0);
  EXPECT_EQ(ee["tokens"].size(), 48u);
}

TEST(EarlyExitCli, BadOptionsAreErrors) {
  if (!test::have_shared("models/lmp-8m/config.json")) GTEST_SKIP() << "no lmp-8m";
  const std::string lmp = test::shared_path("models/lmp-8m");
  const std::string g = "generate " + lmp + " -p hi -n 4 ";
  const std::pair<std::string, std::string> cases[] = {
      {"--early-exit 0.5 --exit-layer 5", "--exit-layer 5: the exit block must be in [0, 4]"},
      {"--exit-layer 2", "--exit-layer 2 needs --early-exit THRESHOLD"},
      {"--early-exit 0", "--early-exit 0: the confidence threshold must be in (0, 1]"},
      {"--early-exit 1.5", "must be in (0, 1]"},
      {"--early-exit 0.5 --exit-measure entropy", "--exit-measure 'entropy'"},
      {"--early-exit 0.5 --spec ngram", "--early-exit with --spec"},
      {"--early-exit 0.5 --cache-type kivi4 --kv-group 16", "--early-exit with a KIVI cache"},
      {"--early-exit 0.5 --kv-policy sink-window:4,64", "--early-exit with --kv-policy sink-window"},
  };
  for (const auto& [args, msg] : cases) test::expect_cli_error(g + args, msg);
  test::expect_cli_error("perplexity " + lmp + " -f " + test::shared_path("data/calib/docs-calib.txt") +
                             " --early-exit 0.5 --recompute-window 16",
                         "--recompute-window with --early-exit");
}

}  // namespace
}  // namespace lmpress
