// finetune's loop: a run stopped by SIGINT saves a checkpoint, and resuming
// it ends where an uninterrupted run ends; a checkpoint refuses another setup.
#include "train/finetune.h"

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace lmpress::train {
namespace {

FinetuneOptions tiny_run(const std::string& dir) {
  FinetuneOptions o;
  o.data = test::shared_path("data/calib/docs-calib.txt");
  o.steps = 4, o.batch = 2, o.ctx = 32;
  o.adam.lr = 1e-3, o.adam.warmup = 1;
  o.checkpoint = dir;
  return o;
}

TEST(Finetune, ResumingAfterCtrlCEndsWhereAnUninterruptedRunEnds) {
  auto m = load_model(test::shared_path("models/lmp-8m"));
  const std::string d = test::temp_dir();
  std::vector<float> straight, resumed;
  finetune(*m, nullptr, tiny_run(d + "/a"), {}, [&](const TrainModel<float>& tm) { straight = tm.w; });
  // SIGINT during step 2: the run stops after it, saving its checkpoint.
  FinetuneOptions o = tiny_run(d + "/b");
  test::expect_error(
      [&] {
        finetune(*m, nullptr, o, [](const FinetunePoint& p) { if (p.step == 2) std::raise(SIGINT); },
                 [](const TrainModel<float>&) { FAIL() << "an interrupted run wrote its output"; });
      },
      "stopped by a signal after step 2; checkpoint saved to " + d + "/b");
  o.resume = d + "/b";
  const FinetuneReport r = finetune(*m, nullptr, o, {}, [&](const TrainModel<float>& tm) { resumed = tm.w; });
  EXPECT_EQ(r.resumed_from, 2);
  EXPECT_EQ(r.points.size(), 2u);
  ASSERT_EQ(straight.size(), resumed.size());
  for (size_t i = 0; i < straight.size(); i++) ASSERT_NEAR(straight[i], resumed[i], 1e-6f * std::max(1.0f, std::abs(straight[i]))) << i;
  EXPECT_NE(straight, std::vector<float>(straight.size(), 0.0f));
  // The checkpoint holds the end too, and refuses another setup.
  o.batch = 3;
  test::expect_error([&] { finetune(*m, nullptr, o, {}, {}); }, "written with batch = 2, this run has 3");
  o.batch = 2, o.lora = parse_lora("r=2");
  test::expect_error([&] { finetune(*m, nullptr, o, {}, {}); }, "another model or setup");
  o.lora = {}, o.resume = d + "/nothing";
  test::expect_error([&] { finetune(*m, nullptr, o, {}, {}); }, "nothing/state.json");
  // A damaged state.json: an error, not a crash.
  std::filesystem::create_directories(d + "/bad");
  for (const char* text : {R"({"format": "lmpress finetune checkpoint"})",
                           R"({"format": "lmpress finetune checkpoint", "setup": {}, "step": 1, "parameters": -5})", "[1, 2]"}) {
    std::ofstream(d + "/bad/state.json") << text;
    o.resume = d + "/bad";
    test::expect_error([&] { finetune(*m, nullptr, o, {}, {}); }, "--resume " + d + "/bad");
  }
}

}  // namespace
}  // namespace lmpress::train
