#include "runtime/scheduler.h"

#include <gtest/gtest.h>

#include <map>

#include "greedy_reference.h"
#include "model/repack.h"
#include "test_util.h"

namespace lmpress {
namespace {

// lmp-8m in f32 (whose batched and one-token rows differ, so the engine
// splits prompt and decoding tokens) and as Q8_0 repacked as at load (rows
// that do not depend on the batch).
const Model& f32_model() {
  static std::unique_ptr<Model> m = load_for_inference(test::shared_path("models/lmp-8m"));
  return *m;
}

const Model& q8_model() {
  static std::unique_ptr<Model> m = [] {
    const std::string path = test::temp_dir() + "/q8_0.gguf";
    if (test::run_cli("quantize " + test::shared_path("models/lmp-8m") + " " + path + " --type q8_0 --pure").status != 0)
      throw std::runtime_error("quantize failed");
    return load_for_inference(path);
  }();
  return *m;
}

// lmp-8m-w256 as Q6_K: int8 rows with no interleaved layout, whose batched
// rows differ from one-token rows by up to 2%.
const Model& q6k_model() {
  static std::unique_ptr<Model> m = [] {
    const std::string path = test::temp_dir() + "/q6_k.gguf";
    if (test::run_cli("quantize " + test::shared_path("models/lmp-8m-w256") + " " + path + " --type q6_k --pure").status != 0)
      throw std::runtime_error("quantize failed");
    return load_for_inference(path);
  }();
  return *m;
}

std::vector<int32_t> run_alone(Scheduler& sched, const Request& r) {
  sched.submit(r);
  std::vector<int32_t> out;
  for (int i = 0; i < 1000 && !sched.idle(); i++)
    for (const StepEvent& e : sched.step())
      if (e.token >= 0) out.push_back(e.token);
  return out;
}

// A second turn whose prompt holds the first turn's answer: it shares the
// first prompt's blocks but not the blocks of decoded tokens, whose K/V the
// one-token kernels computed (a lone run computes them as prompt), so its
// output is still the lone greedy one.
TEST(Scheduler, ASecondTurnMatchesLoneGreedyOnQ6K) {
  const Model& m = q6k_model();
  PagedKvCache cache(m.cfg, 64, 4);
  BatchEngine engine(m, cache, 32);
  Scheduler sched(engine, {4, 16});
  Request a;
  a.id = 1;
  a.prompt = m.tokenizer->encode("Lily and Ben were friends. They liked to play", true, false);
  a.max_tokens = 12;
  a.ignore_eos = true;
  const auto out_a = run_alone(sched, a);
  EXPECT_EQ(out_a, test::greedy_reference(m, a.prompt, 12).greedy);
  Request b = a;
  b.id = 2;
  b.prompt.insert(b.prompt.end(), out_a.begin(), out_a.end());
  const auto more = m.tokenizer->encode(" The next day", false, false);
  b.prompt.insert(b.prompt.end(), more.begin(), more.end());
  const int64_t hits = cache.prefix_hit_tokens();
  EXPECT_EQ(run_alone(sched, b), test::greedy_reference(m, b.prompt, 12).greedy);
  EXPECT_EQ(cache.prefix_hit_tokens() - hits, int64_t(a.prompt.size()) / 4 * 4);
  EXPECT_EQ(cache.used_blocks(), 0);
}

std::vector<std::vector<int32_t>> prompts(const Model& m) {
  const char* texts[] = {
      "Once upon a time",
      "The history of the city begins with a small port on the river",
      "Tom had a ball",
      "In the morning the little girl went to the garden and saw a big red flower. She wanted to pick it",
      "One day a cat",
      "Lily and Ben were friends. They liked to play in the park with their toys",
      "The sun was hot",
  };
  std::vector<std::vector<int32_t>> out;
  for (const char* t : texts) out.push_back(m.tokenizer->encode(t, true, false));
  // Three that share the fourth's first 20 tokens.
  for (const char* tail : {" and a dog", " but the wind", " so she ran home to tell her mother"}) {
    auto p = std::vector<int32_t>(out[3].begin(), out[3].begin() + 20);
    const auto t = m.tokenizer->encode(tail, false, false);
    p.insert(p.end(), t.begin(), t.end());
    out.push_back(p);
  }
  return out;
}

// Ten requests through a pool too small to hold them at once: admission waits,
// the youngest are preempted and recomputed, and every request still gets the
// lone reference's greedy tokens; the pool ends empty.
void many_requests_in_a_tiny_pool(const Model& m, const DraftSource* spec = nullptr) {
  const auto ps = prompts(m);
  std::vector<test::GreedyReference> refs;
  std::vector<int64_t> n_gen;
  for (size_t i = 0; i < ps.size(); i++) {
    n_gen.push_back(6 + int64_t(i % 4) * 3);
    refs.push_back(test::greedy_reference(m, ps[i], n_gen.back()));
  }
  PagedKvCache cache(m.cfg, 18, 4);  // 72 positions; the longest request needs about 40
  BatchEngine engine(m, cache, 32);
  Scheduler sched(engine, {4, 12, spec});
  for (size_t i = 0; i < ps.size(); i++) {
    Request r;
    r.id = int64_t(i) + 100;
    r.prompt = ps[i];
    r.max_tokens = n_gen[i];
    r.ignore_eos = true;
    sched.submit(r);
  }
  std::map<int64_t, std::vector<int32_t>> out;
  std::map<int64_t, FinishReason> why;
  int64_t steps = 0;
  for (; !sched.idle() && steps < 2000; steps++)
    for (const StepEvent& e : sched.step()) {
      if (e.token >= 0) out[e.id].push_back(e.token);
      if (e.finished != FinishReason::None) why[e.id] = e.finished;
      EXPECT_LE(sched.n_running(), 4);
    }
  EXPECT_TRUE(sched.idle());
  for (size_t i = 0; i < ps.size(); i++) {
    EXPECT_EQ(out[int64_t(i) + 100], refs[i].greedy) << "request " << i;
    EXPECT_EQ(why[int64_t(i) + 100], FinishReason::Length);
  }
  EXPECT_GT(sched.preemptions(), 0) << "the pool was meant to run out";
  EXPECT_GT(cache.prefix_hit_tokens(), 0);
  EXPECT_EQ(cache.used_blocks(), 0);
  std::printf("%lld steps, %lld preemptions, %lld prefix tokens reused\n", (long long)steps,
              (long long)sched.preemptions(), (long long)cache.prefix_hit_tokens());
  if (spec) {
    const SpecStats& st = sched.spec_stats();
    std::printf("speculative: %lld passes, %lld drafted, %lld accepted\n", (long long)st.steps, (long long)st.drafted,
                (long long)st.accepted);
    EXPECT_GT(st.drafted, 0);
    EXPECT_GT(st.accepted, 0);
    EXPECT_LT(st.accepted, st.drafted);
  }
}

// The same with speculative decoding in the steps: each decoding sequence's
// drafts verified in the shared batch, rejected ones cut from its blocks.
TEST(Scheduler, SpeculativeStepsMatchLoneGreedy) {
  for (const char* type : {"ngram", "self:skip:3"}) {
    SpecOptions o;
    o.type = type;
    o.draft_max = 3;
    o.p_min = 0.2f;
    {
      SCOPED_TRACE(std::string("q8_0 ") + type);
      const DraftSource src(o, q8_model(), 256);
      many_requests_in_a_tiny_pool(q8_model(), &src);
    }
    SCOPED_TRACE(std::string("f32 ") + type);
    const DraftSource src(o, f32_model(), 256);
    many_requests_in_a_tiny_pool(f32_model(), &src);
  }
}

TEST(Scheduler, ManyRequestsInATinyPoolMatchLoneGreedy) {
  {
    SCOPED_TRACE("q8_0");
    many_requests_in_a_tiny_pool(q8_model());
  }
  SCOPED_TRACE("f32");
  many_requests_in_a_tiny_pool(f32_model());
}

TEST(Scheduler, CancelGivesBlocksBackAndOthersGoOn) {
  const Model& m = q8_model();
  const auto ps = prompts(m);
  const auto ref = test::greedy_reference(m, ps[1], 8);
  PagedKvCache cache(m.cfg, 32, 4);
  BatchEngine engine(m, cache, 32);
  Scheduler sched(engine, {4, 16});
  Request a, b, c;
  a.id = 1, a.prompt = ps[3], a.max_tokens = 50, a.ignore_eos = true;
  b.id = 2, b.prompt = ps[1], b.max_tokens = 8, b.ignore_eos = true;
  c.id = 3, c.prompt = ps[0], c.max_tokens = 4;
  sched.submit(a);
  sched.submit(b);
  sched.submit(c);
  std::vector<int32_t> got;
  for (int i = 0; i < 3; i++)
    for (const StepEvent& e : sched.step())
      if (e.id == 2 && e.token >= 0) got.push_back(e.token);
  EXPECT_TRUE(sched.cancel(1));
  EXPECT_TRUE(sched.cancel(3));
  EXPECT_FALSE(sched.cancel(1));
  for (int i = 0; i < 100 && !sched.idle(); i++)
    for (const StepEvent& e : sched.step())
      if (e.id == 2 && e.token >= 0) got.push_back(e.token);
  EXPECT_EQ(got, ref.greedy);
  EXPECT_EQ(cache.used_blocks(), 0);
}

TEST(Scheduler, BadRequestsAreErrors) {
  const Model& m = q8_model();
  PagedKvCache cache(m.cfg, 4, 4);
  BatchEngine engine(m, cache, 8);
  test::expect_error([&] { Scheduler(engine, {0, 8}); }, "running");
  test::expect_error([&] { Scheduler(engine, {2, 9}); }, "token budget");
  Scheduler sched(engine, {2, 8});
  Request r;
  r.id = 1;
  test::expect_error([&] { sched.submit(r); }, "prompt is empty");
  r.prompt = {1, 2, 3};
  r.max_tokens = 0;
  test::expect_error([&] { sched.submit(r); }, "max_tokens");
  r.max_tokens = 15;
  test::expect_error([&] { sched.submit(r); }, "exceed the KV pool");
  r.max_tokens = 4;
  r.prompt = {1, -5};
  test::expect_error([&] { sched.submit(r); }, "outside the vocabulary");
  r.prompt = {1, 2};
  sched.submit(r);
  test::expect_error([&] { sched.submit(r); }, "already in use");
}

}  // namespace
}  // namespace lmpress

namespace lmpress {
namespace {

// Under sink-window a prompt longer than the cache is computed in steps the
// window allows (all that fits, then the policy's step, as InferenceState
// does), each evicting before it runs: never more positions than capacity(),
// never the step's own; the greedy output is a lone InferenceState's.
TEST(Scheduler, SinkWindowStepsALongPrompt) {
  const Model& m = f32_model();
  const KvPolicy policy = parse_kv_policy("sink-window:4,28");  // capacity 47, step 7
  PagedKvCache cache(m.cfg, 8, 16, {}, policy);
  BatchEngine engine(m, cache, 512);
  Scheduler sched(engine, {2, 512});
  Request r;
  r.id = 1;
  for (int i = 0; i < 58; i++) r.prompt.push_back(int32_t(100 + (i * 37) % 3000));
  r.max_tokens = 40;
  r.ignore_eos = true;
  sched.submit(r);
  std::vector<int64_t> steps;
  std::vector<int32_t> out;
  while (!sched.idle()) {
    const int64_t before = cache.has(1) ? cache.n_computed(1) : 0;
    for (const StepEvent& e : sched.step())
      if (e.token >= 0) out.push_back(e.token);
    if (cache.has(1)) steps.push_back(cache.n_computed(1) - before);
  }
  ASSERT_GE(steps.size(), 3u);
  EXPECT_EQ(steps[0], 47);  // what fits
  EXPECT_EQ(steps[1], 7);   // then the policy's step
  InferenceState st(m, 64, 512, {}, policy);
  std::vector<float> logits(size_t(m.cfg.n_vocab));
  st.eval(r.prompt.data(), int64_t(r.prompt.size()), logits.data(), false);
  std::vector<int32_t> want;
  for (int i = 0; i < 40; i++) {
    want.push_back(test::argmax_of(logits.data(), m.cfg.n_vocab));
    if (i + 1 < 40) st.eval(&want.back(), 1, logits.data(), false);
  }
  EXPECT_EQ(out, want);
}

}  // namespace
}  // namespace lmpress
