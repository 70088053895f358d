#include "runtime/batch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "model/repack.h"
#include "greedy_reference.h"
#include "test_util.h"

namespace lmpress {
namespace {

using test::argmax_of;
using Reference = test::GreedyReference;

// Sequences started at different steps, their prompts fed in chunks that
// share each step's token budget with the others' decoding steps; every logit
// row is compared with the lone reference, and the greedy tokens too. Returns
// the largest absolute logit difference.
struct Outcome {
  double max_diff = 0, max_diff_decode = 0;  // all rows; the rows of decoding steps
  int64_t rows = 0, cached = 0, mixed_batches = 0;
};

Outcome run_interleaved(const Model& m, const std::vector<Reference>& refs, const std::vector<int64_t>& start,
                    int64_t n_gen, int64_t budget, int64_t block_size) {
  const int64_t V = m.cfg.n_vocab;
  PagedKvCache cache(m.cfg, 64, block_size);
  BatchEngine engine(m, cache, budget);
  struct Live {
    bool opened = false, done = false;
    int64_t fed = 0;
    std::vector<int32_t> out;
  };
  std::vector<Live> live(refs.size());
  Outcome run;
  std::vector<float> logits;
  for (int64_t step = 0; step < 1000; step++) {
    std::vector<BatchToken> batch;
    int64_t left = budget, prompt_rows = 0, decode_rows = 0;
    for (size_t s = 0; s < refs.size(); s++) {
      Live& L = live[s];
      const auto& P = refs[s].prompt;
      if (L.done || step < start[s]) continue;
      if (!L.opened) {
        const std::vector<uint8_t> kinds(P.size(), engine.token_kind(P.size() >= 4));
        L.fed = cache.open(int64_t(s), P.data(), int64_t(P.size()), kinds.data());
        run.cached += L.fed;
        L.opened = true;
      }
      if (L.fed < int64_t(P.size())) {
        // Chunks of at most 7 tokens: prompts span several steps and chunk
        // boundaries fall inside blocks.
        const int64_t c = std::min({int64_t(P.size()) - L.fed, left, int64_t(7)});
        for (int64_t i = 0; i < c; i++, L.fed++) batch.push_back({P[size_t(L.fed)], int64_t(s), L.fed, true, P.size() >= 4});
        left -= c;
        prompt_rows += c;
      } else if (left > 0) {
        batch.push_back({L.out.back(), int64_t(s), L.fed++, true});
        left--;
        decode_rows++;
      }
    }
    if (batch.empty()) {
      if (std::all_of(live.begin(), live.end(), [](const Live& L) { return L.done; })) break;
      continue;
    }
    run.mixed_batches += prompt_rows > 0 && decode_rows > 0;
    logits.resize(batch.size() * size_t(V));
    engine.forward(batch, logits.data());
    for (size_t i = 0; i < batch.size(); i++) {
      const BatchToken& t = batch[i];
      const Reference& r = refs[size_t(t.seq)];
      Live& L = live[size_t(t.seq)];
      const float* row = logits.data() + i * V;
      const float* want = r.logits.data() + t.pos * V;
      for (int64_t v = 0; v < V; v++) {
        const double d = std::fabs(row[v] - want[v]);
        run.max_diff = std::max(run.max_diff, d);
        if (t.pos >= int64_t(r.prompt.size())) run.max_diff_decode = std::max(run.max_diff_decode, d);
      }
      run.rows++;
      if (t.pos + 1 >= int64_t(r.prompt.size())) {
        L.out.push_back(argmax_of(row, V));
        if (int64_t(L.out.size()) == n_gen) {
          L.done = true;
          cache.close(t.seq);
        }
      }
    }
  }
  for (size_t s = 0; s < refs.size(); s++) {
    EXPECT_TRUE(live[s].done) << "sequence " << s;
    EXPECT_EQ(live[s].out, refs[s].greedy) << "sequence " << s;
  }
  EXPECT_EQ(cache.used_blocks(), 0);
  return run;
}

std::vector<Reference> references(const Model& m, int64_t n_gen) {
  const char* texts[] = {
      "Once upon a time",
      "The history of the city begins with a small port on the river, where traders met",
      "In the morning the little girl went to the garden and saw a big red flower. She wanted to pick it, but her "
      "mother said that the flower should stay in the garden so that everyone could see it.",
  };
  std::vector<std::vector<int32_t>> prompts;
  for (const char* t : texts) prompts.push_back(m.tokenizer->encode(t, true, false));
  // A fourth prompt shares the third's first 40 tokens (a system prompt).
  auto p = std::vector<int32_t>(prompts[2].begin(), prompts[2].begin() + 40);
  const auto tail = m.tokenizer->encode(" and then the dog ran away", false, false);
  p.insert(p.end(), tail.begin(), tail.end());
  prompts.push_back(p);
  std::vector<Reference> refs;
  for (const auto& pr : prompts) refs.push_back(test::greedy_reference(m, pr, n_gen));
  return refs;
}

// The key check: batched, interleaved, prefix-shared sequences against lone
// InferenceStates, on f32 weights and on Q8_0 / Q4_0 repacked as at load.
TEST(BatchEngine, MatchesLoneInferenceStatePerSequence) {
  const std::string d = test::temp_dir();
  const std::string src = test::shared_path("models/lmp-8m");
  for (const char* type : {"f32", "q8_0", "q4_0"}) {
    SCOPED_TRACE(type);
    std::string path = src;
    if (std::string(type) != "f32") {
      path = d + "/" + type + ".gguf";
      ASSERT_EQ(test::run_cli("quantize " + src + " " + path + " --type " + type + " --pure").status, 0);
    }
    auto m = load_for_inference(path);
    const int64_t n_gen = 12;
    const auto refs = references(*m, n_gen);
    ASSERT_GT(refs[2].prompt.size(), 40u);
    // The fourth sequence starts once the third's prompt is in the cache.
    const Outcome run = run_interleaved(*m, refs, {0, 1, 2, 12}, n_gen, 16, 16);
    EXPECT_EQ(run.cached, 32);  // two full blocks of the shared 40 tokens
    EXPECT_GT(run.mixed_batches, 3);
    EXPECT_EQ(run.rows, 166);
    std::printf("%s: largest logit difference %.3g, %.3g on decoding steps\n", type, run.max_diff, run.max_diff_decode);
    // Q8_0 and Q4_0 are repacked into the interleaved layouts, whose 4-token
    // and one-token kernels give the same rows bit for bit (quantized
    // activations per token, integer dots, the same float epilogue), and paged
    // attention reads keys in InferenceState's blocks: the logits are equal.
    // f32 rows come from sgemv for one token and the packed GEMM for a batch,
    // which sum in different orders (about 1e-6 relative per matmul); through
    // six layers that measures 1.4e-4 on logits of magnitude up to ~15, so the
    // bound is 1e-3. A wrong position, block or cache row moves logits by O(1).
    if (std::string(type) == "f32")
      EXPECT_LT(run.max_diff, 1e-3);
    else
      EXPECT_EQ(run.max_diff, 0.0);
  }
}

TEST(BatchEngine, BadBatchesAreErrorsAndLeaveTheCacheAsItWas) {
  auto m = load_for_inference(test::shared_path("models/lmp-8m"));
  PagedKvCache cache(m->cfg, 2, 4);
  BatchEngine engine(*m, cache, 8);
  const int32_t prompt[6] = {1, 20, 30, 40, 50, 60};
  cache.open(7, prompt, 6);
  std::vector<float> logits(size_t(8 * m->cfg.n_vocab));
  const auto expect_unchanged = [&] {
    EXPECT_EQ(cache.n_computed(7), 0);
    EXPECT_EQ(cache.used_blocks(), 0);
  };
  test::expect_error([&] { engine.forward({}, logits.data()); }, "empty batch");
  test::expect_error([&] { engine.forward({{1, 8, 0, true}}, logits.data()); }, "sequence 8 is not open");
  test::expect_error([&] { engine.forward({{1, 7, 1, true}}, logits.data()); }, "expects position 0 next");
  test::expect_error([&] { engine.forward({{1, 7, 0}, {2, 7, 2}}, logits.data()); }, "expects position 1 next");
  test::expect_error([&] { engine.forward({{int32_t(m->cfg.n_vocab), 7, 0}}, logits.data()); }, "outside the vocabulary");
  test::expect_error([&] { engine.forward({{-1, 7, 0}}, logits.data()); }, "outside the vocabulary");
  test::expect_error([&] { engine.forward({{1, 7, 0, true}}, nullptr); }, "no buffer");
  std::vector<BatchToken> nine;
  for (int64_t i = 0; i < 9; i++) nine.push_back({prompt[i % 6], 7, i});
  test::expect_error([&] { engine.forward(nine, logits.data()); }, "exceed the batch of 8");
  expect_unchanged();
  // Two blocks of 4 positions: 8 tokens fit, a ninth position does not.
  std::vector<BatchToken> eight(nine.begin(), nine.end() - 1);
  engine.forward(eight, nullptr);
  EXPECT_EQ(cache.n_computed(7), 8);
  test::expect_error([&] { engine.forward({{1, 7, 8, true}}, logits.data()); }, "pool has 0 free");
  EXPECT_EQ(cache.n_computed(7), 8);
  test::expect_error([&] {
    PagedKvCache one_layer(std::vector<int64_t>{96}, 4, 4);
    BatchEngine e(*m, one_layer);
  }, "1 layers, the model 6");
  test::expect_error([&] { BatchEngine(*m, cache, 0); }, "out of range");
}

}  // namespace
}  // namespace lmpress
