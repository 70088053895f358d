// `lmpress finetune` end to end on lmp-8m: distillation of a 2:4-pruned copy
// towards the original (its zeros kept, the held-out perplexity and the KL
// divergence to the teacher lowered), and bad input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "kernels/to_f32.h"
#include "model/model.h"
#include "test_util.h"

namespace lmpress {
namespace {

using test::expect_cli_error;
using test::run_cli;

std::string S(const std::string& rel) { return test::shared_path(rel); }

double kld(const std::string& base, const std::string& cand, const std::string& text) {
  auto r = run_cli("kld " + base + " " + cand + " -f " + text + " -c 64 --chunks 8 --json");
  EXPECT_EQ(r.status, 0) << r.out;
  return nlohmann::json::parse(r.out)["kld"]["value"].get<double>();
}

TEST(FinetuneCli, DistillsAPrunedModelKeepingItsZeros) {
  const std::string d = test::temp_dir();
  const std::string text = S("data/calib/docs-calib.txt");
  const std::string model = S("models/lmp-8m");
  ASSERT_EQ(run_cli("prune " + model + " " + d + "/sp.gguf --method magnitude --nm 2:4").status, 0);
  auto r = run_cli("finetune " + d + "/sp.gguf " + d + "/kd.gguf --teacher " + model + " --loss kl --data " + text +
                   " --eval " + text + " --eval-windows 6 --steps 12 --batch 4 --ctx 64 --lr 3e-4 --warmup 2 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["points"].size(), 12u);
  EXPECT_EQ(j["tokens"].get<int64_t>(), 12 * 4 * 63);
  EXPECT_LT(j["eval_ppl_after"].get<double>(), j["eval_ppl_before"].get<double>());
  // Half of every block linear is frozen at zero, and stays so in the file written.
  EXPECT_EQ(j["frozen_zeros"].get<int64_t>() * 2, 6 * (2 * 288 * 288 + 2 * 96 * 288 + 3 * 288 * 768));
  auto before = load_model(d + "/sp.gguf"), after = load_model(d + "/kd.gguf");
  int64_t moved = 0;
  for (const auto& t : before->tensors) {
    if (t.name.rfind("blk.", 0) != 0 || t.shape.size() != 2) continue;
    const auto a = to_f32(t), b = to_f32(after->tensor(t.name));
    for (size_t i = 0; i < a.size(); i++) {
      if (a[i] == 0.0f) ASSERT_EQ(b[i], 0.0f) << t.name << " element " << i;
      moved += a[i] != b[i];
    }
  }
  EXPECT_GT(moved, 0);
  // What the distillation optimizes, measured by kld on the same text.
  EXPECT_LT(kld(model, d + "/kd.gguf", text), kld(model, d + "/sp.gguf", text));
  // --dense lets the zeros train.
  r = run_cli("finetune " + d + "/sp.gguf " + d + "/dense.gguf --data " + text +
              " --steps 1 --batch 2 --ctx 32 --dense --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["frozen_zeros"].get<int64_t>(), 0);
}

TEST(FinetuneCli, BadInputIsAClearErrorAndWritesNothing) {
  const std::string d = test::temp_dir();
  const std::string model = S("models/lmp-8m"), text = S("data/calib/docs-calib.txt");
  const std::string out = d + "/o.gguf";
  {
    std::ofstream(d + "/short.txt") << "too short";
  }
  const std::string base = "finetune " + model + " " + out + " ";
  expect_cli_error(base + "--data " + d + "/short.txt --ctx 64", "too short");
  expect_cli_error(base + "--data " + text + " --loss kl", "--teacher");
  expect_cli_error(base + "--data " + text + " --loss mix:2 --teacher " + model, "mix:A takes A in [0, 1]");
  expect_cli_error(base + "--data " + text + " --loss hinge", "expected ce, kl, rkl or mix:A");
  expect_cli_error(base + "--data " + text + " --steps 0", "--steps must be at least 1");
  expect_cli_error(base + "--data " + text + " --ctx 4096", "exceeds");
  expect_cli_error(base + "--data " + text + " --lr -1", "--lr must be a positive number");
  expect_cli_error(base + "--data " + text + " --teacher " + model, "--teacher is used by --loss kl");
  expect_cli_error(base + "--data " + text + " --loss kl --teacher " + S("models/stories260K/stories260K.gguf"),
                   "vocabulary");
  expect_cli_error("finetune " + model + " " + model + "/model.safetensors --data " + text, "error:");
  EXPECT_FALSE(std::filesystem::exists(out));
  // An architecture the trainer does not run yet.
  const std::string g = d + "/gemma";
  ASSERT_EQ(run_cli("make-model " + g + ".gguf --shape gemma3-1b --layers 1 --vocab 512").status, 0);
  expect_cli_error("finetune " + g + ".gguf " + out + " --data " + text, "training does not support q/k norms");
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace lmpress
