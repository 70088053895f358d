// The KV-cache options from the command line: what generate, kld and bench
// report about the cache, and every bad option an error naming it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace lmpress {
namespace {

using Json = nlohmann::json;

Json json_of(const test::CliResult& r) { return Json::parse(r.out.substr(r.out.find('{'))); }

TEST(KvCacheCli, ReportsTheCache) {
  if (!test::have_shared("models/lmp-8m-w256/config.json")) GTEST_SKIP() << "no lmp-8m-w256";
  const std::string w256 = test::shared_path("models/lmp-8m-w256");
  // generate: bytes per token over 8 layers of 128 values, K and V.
  auto r = test::run_cli("generate " + w256 + " -p 'Once upon a time' -n 4 --json -c 64 --cache-type-k q8_0 --cache-type-v q4_0");
  ASSERT_EQ(r.status, 0) << r.out;
  Json kv = json_of(r)["kv_cache"];
  EXPECT_EQ(kv["type_k"], "q8_0");
  EXPECT_EQ(kv["type_v"], "q4_0");
  EXPECT_DOUBLE_EQ(kv["bytes_per_token"].get<double>(), 8 * (4 * 34 + 4 * 18));  // 128 values: 4 blocks each
  EXPECT_EQ(kv["bytes"].get<double>(), 64 * 8 * (4 * 34 + 4 * 18));
  r = test::run_cli("generate " + w256 + " -p 'Once upon a time' -n 4 --json -c 64 --cache-type kivi4");
  ASSERT_EQ(r.status, 0) << r.out;
  kv = json_of(r)["kv_cache"];
  // 4.5 bits a value, plus the f16 rows of one group for each layer.
  EXPECT_EQ(kv["bytes"].get<double>(), 64 * 8 * 2 * 128 * 4.5 / 8 + 8 * 64 * 128 * 2 * 2);
  // kld: bits per value of the candidate's cache.
  r = test::run_cli("kld " + w256 + " " + w256 + " -f " + test::shared_path("data/wikitext-2/wiki.test.raw") +
                    " -c 128 --chunks 2 --json --base-cache-type f32 --cache-type kivi2 --kv-group 32");
  ASSERT_EQ(r.status, 0) << r.out;
  const Json k = json_of(r);
  EXPECT_DOUBLE_EQ(k["kv_cache"]["bits_per_value"].get<double>(), 3.0);  // 2 + 32 / 32
  EXPECT_GT(k["kld"]["value"].get<double>(), 0.0);
}

TEST(KvCacheCli, BadOptionsAreErrors) {
  if (!test::have_shared("models/lmp-8m-w256/config.json")) GTEST_SKIP() << "no lmp-8m-w256";
  const std::string w256 = test::shared_path("models/lmp-8m-w256"), lmp = test::shared_path("models/lmp-8m");
  const std::string g = "generate " + w256 + " -p hi -n 2 ";
  const std::pair<std::string, std::string> cases[] = {
      {"--cache-type q3_k", "--cache-type: q3_k not in"},
      {"--cache-type-v q9", "--cache-type-v: q9 not in"},
      {"--kv-rotate maybe", "--kv-rotate: maybe not in"},
      {"--cache-type kivi4 --kv-group 0", "--kv-group 0: KIVI's group must be"},
      {"--cache-type kivi4 --kv-group 48", "--kv-group 48: KIVI's group must be a multiple of 4 up to 256 that divides "
                                           "the model's head size of 64"},
      {"--cache-type kivi4 --kv-residual -3", "--kv-residual -3: it must be in 0..4096"},
      {"--cache-type kivi4 --kv-group 64 -c 32", "--kv-group 64 is larger than the context of 32"},
      {"--cache-type kivi4 --kv-group 16 --kv-residual 100 -c 64", "--kv-residual 100 is larger than the context of 64"},
      {"--cache-type-k kivi4 --cache-type-v f16", "--cache-type-k kivi4 with --cache-type-v f16: a KIVI cache is KIVI for both"},
  };
  for (const auto& [args, msg] : cases) test::expect_cli_error(g + args, msg);
  test::expect_cli_error("generate " + lmp + " -p hi -n 2 --cache-type q4_0",
                         "--cache-type-k q4_0: its blocks of 32 values do not divide the model's head size of 48");
  test::expect_cli_error("perplexity " + lmp + " -f " + test::shared_path("data/wikitext-2/wiki.test.raw") +
                             " -c 64 --cache-type-v iq4_nl",
                         "--cache-type-v iq4_nl: its blocks of 32 values do not divide the model's head size of 48");
  // serve checks before it listens.
  test::expect_cli_error("serve " + w256 + " --port 0 --cache-type kivi2 --kv-group 12", "--kv-group 12");
  test::expect_cli_error("serve " + w256 + " --port 0 -c 4096 --kv-memory 1", "--kv-memory 1.0 MiB holds");
  test::expect_cli_error("serve " + w256 + " --port 0 --kv-memory 64 --kv-blocks 100", "give one of them");
}

// Eviction: generation runs past the context in a bounded cache, and every
// bad policy is an error naming --kv-policy.
TEST(KvCacheCli, EvictionPolicies) {
  if (!test::have_shared("models/lmp-8m/config.json")) GTEST_SKIP() << "no lmp-8m";
  const std::string lmp = test::shared_path("models/lmp-8m"), wiki = test::shared_path("data/wikitext-2/wiki.test.raw");
  auto r = test::run_cli("generate " + lmp + " -p 'Once upon a time' -n 100 --ignore-eos --json -c 64 "
                         "--kv-policy sink-window:4,28");
  ASSERT_EQ(r.status, 0) << r.out;
  Json j = json_of(r);
  EXPECT_EQ(j["n_generated"], 100);  // more than the context of 64
  EXPECT_EQ(j["stopped"], "length");
  EXPECT_EQ(j["kv_cache"]["policy"], "sink-window:4,28");
  // 4 + 28 + 15 positions (the window cut at multiples of 16), 6 layers, K+V, f16, 96 values.
  EXPECT_EQ(j["kv_cache"]["bytes"].get<double>(), 47 * 6 * 2 * 2 * 96);
  r = test::run_cli("generate " + lmp + " -p 'Once upon a time' -n 100 --ignore-eos --json -c 64");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(json_of(r)["stopped"], "context");
  r = test::run_cli("perplexity " + lmp + " -f " + wiki + " -c 128 --chunks 2 --json --kv-policy h2o:64");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_GT(json_of(r)["ppl"].get<double>(), 1.0);

  // The recomputed window: as long as the context, every scored token sees what the one pass over the window
  // shows it (the same perplexity); 8 tokens of context score worse (lmp-8m: 204 against 186).
  const auto ppl = [&](const std::string& extra) {
    auto p = test::run_cli("perplexity " + lmp + " -f " + wiki + " -c 64 --chunks 2 --json " + extra);
    EXPECT_EQ(p.status, 0) << p.out;
    return p.status == 0 ? json_of(p)["ppl"].get<double>() : 0.0;
  };
  const double plain = ppl("");
  EXPECT_NEAR(ppl("--recompute-window 64"), plain, plain * 1e-5);
  EXPECT_GT(ppl("--recompute-window 8"), plain * 1.05);

  const std::pair<std::string, std::string> cases[] = {
      {"generate " + lmp + " -p hi -n 2 --kv-policy h2o", "--kv-policy h2o: expected a count after the colon"},
      {"perplexity " + lmp + " -f " + wiki + " -c 64 --recompute-window 65", "--recompute-window 65: expected 1..64"},
      {"perplexity " + lmp + " -f " + wiki + " -c 64 --recompute-window 32 --kv-policy h2o:32",
       "--recompute-window with --kv-policy h2o:32,16"},
      {"generate " + lmp + " -p hi -n 2 -c 64 --kv-policy sink-window:4,64",
       "--kv-policy sink-window:4,64: it keeps up to 83 positions, more than the context of 64"},
      {"generate " + lmp + " -p hi -n 2 --kv-policy snapkv:60,16 --spec ngram",
       "--kv-policy snapkv:60,16 with speculative decoding"},
      {"perplexity " + lmp + " -f " + wiki + " -c 64 --cache-type kivi4 --kv-group 16 --kv-policy h2o:32",
       "--kv-policy h2o:32,16 with --cache-type kivi4"},
      {"kld " + lmp + " " + lmp + " -f " + wiki + " -c 64 --kv-policy window:3", "--kv-policy 'window:3': expected"},
  };
  for (const auto& [cmd, msg] : cases) test::expect_cli_error(cmd, msg);
}

}  // namespace
}  // namespace lmpress
