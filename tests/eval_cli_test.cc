// `lmpress eval` and `lmpress compare` from the command line: outputs agree
// with the single-purpose commands, bad input fails clearly.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "core/mapped_file.h"
#include "test_util.h"

namespace lmpress {
namespace {

using test::expect_cli_error;
using test::run_cli;

std::string S(const std::string& rel) { return test::shared_path(rel); }

TEST(EvalCli, TasksJsonAndSamples) {
  const std::string d = test::temp_dir();
  auto r = run_cli("eval " + S("models/lmp-8m") + " --task-dir " + S("data/tasks") +
                   " --tasks arc_easy,lambada --limit 10 --json --log-samples " + d + "/s.jsonl");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tasks"]["arc_easy"]["n"], 10);
  EXPECT_TRUE(j["tasks"]["arc_easy"].contains("acc_norm"));
  EXPECT_TRUE(j["tasks"]["lambada_openai"].contains("ppl"));
  // acc is the mean of the per-item decisions written by --log-samples.
  std::istringstream lines(read_text_file(d + "/s.jsonl"));
  std::string line;
  int n = 0, correct = 0;
  while (std::getline(lines, line)) {
    const auto s = nlohmann::json::parse(line);
    n++;
    if (s["task"] == "arc_easy") {
      correct += s["acc"].get<bool>();
      EXPECT_EQ(s["loglik"].size(), s["choices"].size());
    }
  }
  EXPECT_EQ(n, 20);
  EXPECT_DOUBLE_EQ(j["tasks"]["arc_easy"]["acc"].get<double>(), correct / 10.0);
}

TEST(EvalCli, BadInputs) {
  const std::string d = test::temp_dir(), m = S("models/lmp-8m");
  expect_cli_error("eval " + m + " --task-dir " + S("data/tasks") + " --tasks hellaswag", "unknown task 'hellaswag'");
  std::ofstream(d + "/bad.jsonl") << "{\"query\":\"Q\",\"choices\":[\"a\",\"b\"],\"gold\":5}\n";
  expect_cli_error("eval " + m + " --tasks " + d + "/bad.jsonl", "bad.jsonl:1: gold index 5 is out of range");
  std::ofstream(d + "/one.jsonl") << "{\"query\":\"Q\",\"choices\":[\"a\",\"b\"],\"gold\":0}\n"
                                   << "{\"query\":\"Q\",\"choices\":[\"a\"],\"gold\":0}\n";
  expect_cli_error("eval " + m + " --tasks " + d + "/one.jsonl",
                   "one.jsonl:2: \"choices\" has 1 entries; a multiple-choice item needs at least 2");
  expect_cli_error("eval " + m, "nothing to do");
  expect_cli_error("eval " + m + " --tasks , ", "no task named");
  expect_cli_error("compare " + m + " " + m + " -f " + S("data/wikitext-2/wiki.test.raw") + " --labels a",
                   "1 labels for 2 models");
}

// compare's numbers are those of `perplexity` (base row) and `kld` (others).
TEST(EvalCli, CompareAgreesWithPerplexityAndKld) {
  const std::string d = test::temp_dir(), text = S("data/wikitext-2/wiki.test.raw");
  ASSERT_EQ(run_cli("convert " + S("models/lmp-8m") + " " + d + "/f32.gguf --dtype f32").status, 0);
  ASSERT_EQ(run_cli("quantize " + d + "/f32.gguf " + d + "/q.gguf --type q4_0").status, 0);
  const std::string w = " -f " + text + " -c 128 --chunks 4";
  auto r = run_cli("compare " + d + "/f32.gguf " + d + "/q.gguf" + w + " --task-dir " + S("data/tasks") +
                   " --tasks piqa --limit 6 --labels f32,q4_0 --out " + d + "/cmp --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  const auto p = nlohmann::json::parse(run_cli("perplexity " + d + "/f32.gguf" + w + " --json").out);
  const auto k = nlohmann::json::parse(run_cli("kld " + d + "/f32.gguf " + d + "/q.gguf" + w + " --json").out);
  EXPECT_DOUBLE_EQ(j[0]["ppl"].get<double>(), p["ppl"].get<double>());
  EXPECT_DOUBLE_EQ(j[1]["kld"].get<double>(), k["kld"]["value"].get<double>());
  EXPECT_DOUBLE_EQ(j[1]["ppl_diff"].get<double>(), k["ppl_diff"]["value"].get<double>());
  EXPECT_DOUBLE_EQ(j[1]["same_top"].get<double>(), k["same_top"]["value"].get<double>());
  EXPECT_EQ(j[1]["label"], "q4_0");
  EXPECT_NEAR(j[1]["bits_per_weight"].get<double>(), 5.2, 0.1);  // Q4_0 blocks (4.5 bits) + the f32 norms and the larger output tensor
  EXPECT_TRUE(j[0]["tasks"].contains("piqa"));
  EXPECT_NE(read_text_file(d + "/cmp.md").find("| q4_0 |"), std::string::npos);
  EXPECT_NE(read_text_file(d + "/cmp.svg").find("</svg>"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(read_text_file(d + "/cmp.json")), j);
}

}  // namespace
}  // namespace lmpress
