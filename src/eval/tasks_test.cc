#include "eval/tasks.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "core/error.h"
#include "eval/perplexity.h"
#include "model/forward.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

std::string write(const std::string& dir, const std::string& name, const std::string& content) {
  const std::string p = dir + "/" + name;
  std::ofstream(p) << content;
  return p;
}

using test::expect_error;

TEST(Tasks, ReadsBothShapesAndRejectsBadItems) {
  const std::string d = test::temp_dir();
  const auto mc = read_task_file(
      write(d, "mc.jsonl", "{\"query\":\"Q: 1+1?\",\"choices\":[\"2\",\"3\"],\"gold\":0}\n\n"
                           "{\"query\":\"Q\",\"choices\":[\"a\",\"b\",\"c\"],\"gold\":2}\n"),
      "mc");
  EXPECT_EQ(mc.kind, TaskKind::MultipleChoice);
  ASSERT_EQ(mc.items.size(), 2u);
  EXPECT_EQ(mc.items[1].gold, 2);
  EXPECT_EQ(mc.items[1].choices[2], "c");
  const auto lam = read_task_file(write(d, "l.jsonl", "{\"context\":\"a b\",\"continuation\":\"c\"}\n"), "l");
  EXPECT_EQ(lam.kind, TaskKind::Lambada);
  EXPECT_EQ(lam.items[0].choices, std::vector<std::string>{"c"});
  EXPECT_EQ(read_task_file(test::shared_path("data/tasks/piqa.jsonl"), "piqa", 7).items.size(), 7u);

  const std::string ok = "{\"query\":\"Q\",\"choices\":[\"a\",\"b\"],\"gold\":1}\n";
  expect_error([&] { read_task_file(write(d, "g.jsonl", ok + "{\"query\":\"Q\",\"choices\":[\"a\",\"b\"],\"gold\":2}\n"), "g"); },
               "g.jsonl:2: gold index 2 is out of range for 2 choices");
  // One choice (or none) is always "right": the item would count without scoring anything.
  expect_error([&] { read_task_file(write(d, "one.jsonl", ok + "{\"query\":\"Q\",\"choices\":[\"a\"],\"gold\":0}\n"), "one"); },
               "one.jsonl:2: \"choices\" has 1 entries; a multiple-choice item needs at least 2");
  expect_error([&] { read_task_file(write(d, "none.jsonl", "{\"query\":\"Q\",\"choices\":[],\"gold\":0}\n"), "none"); },
               "none.jsonl:1: \"choices\" has 0 entries");
  expect_error([&] { read_task_file(write(d, "m.jsonl", ok + "{\"query\":\"Q\",\"gold\":0}\n"), "m"); }, "\"choices\"");
  expect_error([&] { read_task_file(write(d, "q.jsonl", "{\"choices\":[\"a\"],\"gold\":0}\n"), "q"); },
               "missing field \"query\"");
  expect_error([&] { read_task_file(write(d, "j.jsonl", ok + "{\"query\": \"Q\", \n"), "j"); }, "j.jsonl:2: bad JSON");
  // A number past double's range: nlohmann's out_of_range, not a parse_error.
  expect_error([&] { read_task_file(write(d, "o.jsonl", ok + "{\"query\":\"Q\",\"choices\":[\"a\"],\"gold\":1e999}\n"), "o"); },
               "o.jsonl:2: bad JSON");
  expect_error([&] { read_task_file(write(d, "e.jsonl", "\n\n"), "e"); }, "no items");
  expect_error([&] { read_task_file(write(d, "x.jsonl", "{\"text\":\"a\"}\n"), "x"); }, "neither");
  expect_error([&] { read_task_file(write(d, "c.jsonl", "{\"context\":\"a\",\"continuation\":\"\"}\n"), "c"); },
               "empty \"continuation\"");
  expect_error([&] { load_task("hellaswag", test::shared_path("data/tasks")); }, "only ");
}

// The harness's request: trailing whitespace of the context moves into the
// continuation; the context is tokenized alone, the continuation is the rest
// of the joint tokenization.
TEST(Tasks, RequestTokensFollowTheHarness) {
  auto m = load_model(test::shared_path("models/lmp-8m"));
  auto [toks, n] = task_request_tokens(*m, "Question: Why?\n", " Because.");
  const auto ctx = m->tokenizer->encode("Question: Why?", true, false);
  const auto whole = m->tokenizer->encode("Question: Why?\n Because.", true, false);
  ASSERT_EQ(n, int64_t(ctx.size()));
  EXPECT_EQ(std::vector<int32_t>(toks.begin(), toks.begin() + n), ctx);
  EXPECT_EQ(std::vector<int32_t>(toks.begin() + n, toks.end()), std::vector<int32_t>(whole.begin() + n, whole.end()));
}

// Reference: every request evaluated alone by the plain forward pass, its
// window cut from the left as lm-evaluation-harness cuts it (the last max_len
// tokens before the final one), the continuation's log-probabilities summed.
void check_against_reference(const Model& m, const Task& task) {
  const auto r = evaluate_task(m, task);
  ASSERT_EQ(r.items.size(), task.items.size());
  const int64_t V = m.cfg.n_vocab, max_len = m.cfg.ctx_len;
  int64_t acc = 0, acc_norm = 0;
  for (size_t i = 0; i < task.items.size(); i++) {
    const auto& it = task.items[i];
    std::vector<double> ll;
    bool greedy = true;
    for (size_t c = 0; c < it.choices.size(); c++) {
      auto [seq, n_ctx] = task_request_tokens(m, it.context, " " + it.choices[c]);
      const int64_t start = std::max<int64_t>(0, int64_t(seq.size()) - 1 - max_len);
      const int64_t len = int64_t(seq.size()) - 1 - start;
      ASSERT_LT(start, n_ctx);
      InferenceState st(m, len, len);
      std::vector<float> logits(static_cast<size_t>(len * V));
      st.eval(seq.data() + start, len, logits.data(), true);
      double sum = 0;
      for (int64_t p = n_ctx; p < int64_t(seq.size()); p++) {
        const float* row = logits.data() + (p - 1 - start) * V;
        sum -= token_nll(row, V, seq[size_t(p)]);
        greedy = greedy && std::max_element(row, row + V) - row == seq[size_t(p)];
      }
      ll.push_back(sum);
      EXPECT_NEAR(r.items[i].scores[c].loglik, sum, 2e-3 + 1e-5 * std::fabs(sum)) << task.name << " " << i;
    }
    size_t best = 0, best_norm = 0;
    for (size_t c = 1; c < ll.size(); c++) {
      if (ll[c] > ll[best]) best = c;
      if (ll[c] / double(it.choices[c].size()) > ll[best_norm] / double(it.choices[best_norm].size())) best_norm = c;
    }
    if (task.kind == TaskKind::Lambada) {
      EXPECT_EQ(r.items[i].acc, greedy) << i;
      acc += greedy;
    } else {
      EXPECT_EQ(r.items[i].pred, int64_t(best)) << task.name << " " << i;
      EXPECT_EQ(r.items[i].pred_norm, int64_t(best_norm)) << task.name << " " << i;
      acc += int64_t(best) == it.gold;
      acc_norm += int64_t(best_norm) == it.gold;
    }
  }
  const double n = double(task.items.size());
  EXPECT_DOUBLE_EQ(r.acc.value, double(acc) / n);
  if (task.kind == TaskKind::MultipleChoice) {
    EXPECT_DOUBLE_EQ(r.acc_norm.value, double(acc_norm) / n);
    EXPECT_NEAR(r.acc.stderr_, std::sqrt(r.acc.value * (1 - r.acc.value) / (n - 1)), 1e-12);
  }
}

TEST(Tasks, ScoresMatchPlainForwardPass) {
  auto m = load_model(test::shared_path("models/lmp-8m"));
  for (const char* name : {"arc_easy", "piqa", "lambada"})
    check_against_reference(*m, load_task(name, test::shared_path("data/tasks"), 12));
}

// A 64-token window: long contexts take the cut-from-the-left path; a
// continuation longer than the window is refused, as the harness refuses it.
TEST(Tasks, LongRequestsCutFromTheLeft) {
  const std::string dir = test::temp_dir();
  test::write_synthetic_hf(dir, test::SyntheticSpec{});
  auto m = load_model(dir);
  ASSERT_EQ(m->cfg.ctx_len, 64);
  Task t;
  t.name = "long";
  t.items.push_back({std::string(300, 'a') + " end", {"yes", "no thanks"}, 1});
  t.items.push_back({"short", {std::string(60, 'z'), "b"}, 0});  // 61 tokens: the window keeps 4 of the context's
  t.items.push_back({"mid", {"a b c", "d"}, 0});
  check_against_reference(*m, t);
  Task too_long{"too_long", "", TaskKind::MultipleChoice, {{"short", {std::string(90, 'z'), "b"}, 0}}};
  expect_error([&] { evaluate_task(*m, too_long); },
               "task too_long: item 0: a choice has 91 tokens, more than the model's context of 64");
}

}  // namespace
}  // namespace lmpress
