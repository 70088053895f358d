#include "runtime/batch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "model/export.h"
#include "model/random_model.h"
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
  // The rows generate() computes (decoding steps, the last prompt token): the
  // largest absolute difference; the other prompt rows: the largest relative
  // RMS difference.
  double max_diff_generate = 0, max_rel_prompt = 0;
  int64_t rows = 0, cached = 0, mixed_batches = 0;
  bool kinds_shared = false;  // the engine gives prompt and decoding tokens one kind
};

Outcome run_interleaved(const Model& m, const std::vector<Reference>& refs, const std::vector<int64_t>& start,
                        int64_t n_gen, int64_t budget, int64_t block_size, const KvCacheSpec& kv = {},
                        const KvPolicy& policy = {}) {
  const int64_t V = m.cfg.n_vocab;
  PagedKvCache cache(m.cfg, 64, block_size, kv, policy);
  BatchEngine engine(m, cache, budget);
  struct Live {
    bool opened = false, done = false;
    int64_t fed = 0;
    std::vector<int32_t> out;
  };
  std::vector<Live> live(refs.size());
  Outcome run;
  run.kinds_shared = engine.token_kind(true) == engine.token_kind(false);
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
      double num = 0, den = 0, most = 0;
      for (int64_t v = 0; v < V; v++) {
        const double d = std::fabs(row[v] - want[v]);
        most = std::max(most, d);
        num += d * d;
        den += double(want[v]) * want[v];
      }
      if (t.pos + 1 >= int64_t(r.prompt.size()))
        run.max_diff_generate = std::max(run.max_diff_generate, most);
      else
        run.max_rel_prompt = std::max(run.max_rel_prompt, std::sqrt(num / den));
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

std::vector<Reference> references(const Model& m, int64_t n_gen, const KvCacheSpec& kv = {}, const KvPolicy& policy = {}) {
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
  for (const auto& pr : prompts) refs.push_back(test::greedy_reference(m, pr, n_gen, kv, policy));
  // A fifth is the third's second turn: its prompt, its answer, a new line.
  p = refs[2].prompt;
  p.insert(p.end(), refs[2].greedy.begin(), refs[2].greedy.end());
  const auto next = m.tokenizer->encode(" The next day", false, false);
  p.insert(p.end(), next.begin(), next.end());
  refs.push_back(test::greedy_reference(m, p, n_gen, kv, policy));
  return refs;
}

// The key check: batched, interleaved, prefix-shared sequences against lone
// InferenceStates, on lmp-8m in f32 and as Q8_0 / Q4_0 (repacked as at load
// into the interleaved layouts), and on lmp-8m-w256 as Q6_K (no interleaved
// layout: batched and one-token int8 rows differ by up to 2%).
TEST(BatchEngine, MatchesLoneInferenceStatePerSequence) {
  const std::string d = test::temp_dir();
  const struct {
    const char *model, *type;
  } cases[] = {{"lmp-8m", "f32"}, {"lmp-8m", "q8_0"}, {"lmp-8m", "q4_0"}, {"lmp-8m-w256", "q6_k"}};
  for (const auto& c : cases) {
    const std::string type = c.type, src = test::shared_path(std::string("models/") + c.model);
    SCOPED_TRACE(type);
    std::string path = src;
    if (type != "f32") {
      path = d + "/" + type + ".gguf";
      ASSERT_EQ(test::run_cli("quantize " + src + " " + path + " --type " + type + " --pure").status, 0);
    }
    auto m = load_for_inference(path);
    const int64_t n_gen = 12;
    const auto refs = references(*m, n_gen);
    const int64_t P2 = int64_t(refs[2].prompt.size());
    ASSERT_GT(P2, 40);
    // The fourth sequence starts once the third's prompt is in the cache, the
    // fifth once the third has ended.
    const Outcome run = run_interleaved(*m, refs, {0, 1, 2, 12, 60}, n_gen, 16, 16);
    // The fourth shares two full blocks of the third's prompt. The fifth
    // shares the full blocks of the third's prompt, and the blocks that hold
    // its decoded tokens only where both kinds of tokens are computed by the
    // same kernels.
    EXPECT_EQ(run.cached, 32 + (run.kinds_shared ? (P2 + n_gen - 1) / 16 * 16 : P2 / 16 * 16));
    EXPECT_GT(run.mixed_batches, 3);
    int64_t rows = -run.cached;
    for (const auto& r : refs) rows += int64_t(r.prompt.size()) + n_gen - 1;
    EXPECT_EQ(run.rows, rows);
    std::printf("%s: rows generate() computes differ by %.3g, other prompt rows by %.3g (relative RMS)\n",
                type.c_str(), run.max_diff_generate, run.max_rel_prompt);
    // Every row generate() computes is equal: paged attention reads keys in
    // InferenceState's blocks, and every linear row comes from the kernel
    // InferenceState uses for it (the interleaved layouts' rows do not depend
    // on the batch at all; for f32 and Q6_K the engine splits prompt and
    // decoding tokens). The other prompt rows' logits come from the one-token
    // kernels here and the batched ones in the reference: equal for the
    // interleaved layouts, summation order for f32 (measured 1e-6), for Q6_K
    // Q8_K activations against the prompt panels' Q8_0 ones (or f32 where the
    // packed GEMM runs: no AVX2) (up to 2%, as DecodeKernels measures).
    // On every target: without SIMD the packed GEMM's plain tiles sum as the SIMD ones do, whatever the batch.
    EXPECT_EQ(run.max_diff_generate, 0.0);
    if (type == "f32")
      EXPECT_LT(run.max_rel_prompt, 1e-5);
    else if (type == "q6_k")
      EXPECT_LT(run.max_rel_prompt, 0.02);
    else
      EXPECT_EQ(run.max_rel_prompt, 0.0);
  }
}

// generate()'s rows bit for bit (the packed f32 GEMM sums as InferenceState's batches do).
void expect_lone_results(const Outcome& run) {
  EXPECT_EQ(run.max_diff_generate, 0.0);
  EXPECT_LT(run.max_rel_prompt, 1e-5);
}

// A KIVI cache reads each position quantized or f16 by its position alone
// (model/kivi_stage.h), so the engine's interleaved chunks compute what a lone
// InferenceState computes; no prefix is shared.
TEST(BatchEngine, KiviCacheMatchesLoneInferenceState) {
  auto m = load_for_inference(test::shared_path("models/lmp-8m-w256"));
  for (KvType t : {KvType::KIVI4, KvType::KIVI2}) {
    SCOPED_TRACE(kv_type_name(t));
    KvCacheSpec kv(t);
    kv.group = 16;
    kv.residual = 8;
    const int64_t n_gen = 12;
    const auto refs = references(*m, n_gen, kv);
    const Outcome run = run_interleaved(*m, refs, {0, 1, 2, 12, 60}, n_gen, 16, 32, kv);
    EXPECT_EQ(run.cached, 0);
    EXPECT_GT(run.mixed_batches, 3);
    expect_lone_results(run);
  }
}

// sink-window in the paged cache (whole blocks evicted, the sinks moved to
// blocks of their own, the window read from first_slot()) computes what a lone
// InferenceState with the same policy computes, while each sequence evicts as
// it decodes between the others' prompt chunks. Prompts fit the cache (their
// chunking would otherwise decide where they evict); 70 generated tokens take
// every sequence past it.
TEST(BatchEngine, SinkWindowMatchesLoneInferenceState) {
  auto m = load_for_inference(test::shared_path("models/lmp-8m"));
  for (const char* p : {"sink-window:4,80", "sink-window:0,80", "sink-window:20,80"}) {
    SCOPED_TRACE(p);
    const KvPolicy policy = parse_kv_policy(p);
    const int64_t n_gen = 70;
    auto refs = references(*m, n_gen, {}, policy);
    refs.resize(4);  // the fifth's prompt is longer than the cache
    for (const auto& r : refs) ASSERT_LT(int64_t(r.prompt.size()), policy.capacity());
    const Outcome run = run_interleaved(*m, refs, {0, 1, 2, 12}, n_gen, 16, 16, {}, policy);
    EXPECT_EQ(run.cached, 0);  // nothing shared under a policy
    expect_lone_results(run);
  }
}

// Gemma's sliding-window layers (a window of 12, shorter than every prompt),
// soft-capping (Gemma 2), post-norms and GeGLU in the engine: random small
// Gemma 2 / 3 models, sequences interleaved and prefixes shared as above.
TEST(BatchEngine, GemmaSlidingWindowsMatchLoneInferenceState) {
  const std::string d = test::temp_dir();
  for (const char* shape : {"gemma2-2b", "gemma3-1b"}) {
    SCOPED_TRACE(shape);
    ModelConfig c = find_model_shape(shape);
    c.n_vocab = 512, c.dim = 128, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = c.rope_dim = 32, c.ffn_dim = 256;
    c.n_layers = 3, c.sliding_window = 12, c.embed_scale = std::sqrt(128.0f);
    c.layer_swa = {1, 0, 1};
    auto random = make_random_model(c, shape);
    ExportOptions eo;
    eo.values = [](const Tensor& t) { return random_tensor_values(t, 7); };
    const std::string path = d + "/" + shape + ".gguf";
    write_gguf_model(*random, path, eo);
    auto m = load_for_inference(path);
    ASSERT_EQ(m->cfg.window(0), 12);
    ASSERT_EQ(m->cfg.window(1), 0);
    const int64_t n_gen = 12;
    const auto refs = references(*m, n_gen);
    const Outcome run = run_interleaved(*m, refs, {0, 1, 2, 12, 60}, n_gen, 16, 16);
    EXPECT_GT(run.cached, 0);
    EXPECT_GT(run.mixed_batches, 3);
    expect_lone_results(run);
  }
}

// QuaRot's R4 (an online Hadamard rotation of ffn_down's input, `rotate
// --rotate hadamard:SEED,r4`) runs in the engine's steps as in a lone
// InferenceState: lmp-8m rotated (f32) and then quantized to Q8_0.
TEST(BatchEngine, OnlineRotationMatchesLoneInferenceState) {
  if (!test::have_shared("models/lmp-8m/model.safetensors")) GTEST_SKIP();
  const std::string d = test::temp_dir();
  auto r = test::run_cli("rotate " + test::shared_path("models/lmp-8m") + " " + d + "/r.gguf --rotate hadamard:3,r4");
  ASSERT_EQ(r.status, 0) << r.out;
  r = test::run_cli("quantize " + d + "/r.gguf " + d + "/q.gguf --type q8_0 --pure");
  ASSERT_EQ(r.status, 0) << r.out;
  for (const char* f : {"/r.gguf", "/q.gguf"}) {
    SCOPED_TRACE(f);
    auto m = load_for_inference(d + f);
    ASSERT_TRUE(m->cfg.down_rotation);
    EXPECT_EQ(m->cfg.down_rotation->seed(), 5u);
    const int64_t n_gen = 12;
    const auto refs = references(*m, n_gen);
    const Outcome run = run_interleaved(*m, refs, {0, 1, 2, 12, 60}, n_gen, 16, 16);
    EXPECT_GT(run.mixed_batches, 3);
    expect_lone_results(run);
  }
}

// Mixtures of experts: each token's experts run on the rows routed to them
// (padded to the batched kernels for prompt rows, one-token kernels for
// decoding rows), so a token's logits do not depend on which other
// sequences' tokens shared its experts in a step. Random small Qwen3-MoE (8
// experts, 3 per token, renormalized), Qwen2-MoE (shared expert, weights
// not renormalized) and gpt-oss (sinks, biases, a window of 12 on even layers) models, f32 and Q8_0.
TEST(BatchEngine, MixtureOfExpertsMatchesLoneInferenceState) {
  const std::string d = test::temp_dir();
  for (const char* shape : {"qwen3-30b-a3b", "qwen1.5-moe-a2.7b", "gpt-oss-20b"})
    for (const DType type : {DType::F32, DType::Q8_0}) {
      SCOPED_TRACE(std::string(shape) + " " + dtype_name(type));
      ModelConfig c = find_model_shape(shape);
      c.n_vocab = 512, c.dim = 128, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = c.rope_dim = 32, c.ffn_dim = 256;
      c.n_layers = 2, c.n_experts = 8, c.n_experts_used = 3, c.expert_ffn = 64;
      if (c.shared_ffn) c.shared_ffn = 96;
      if (c.sliding_window) c.sliding_window = 12, c.layer_swa = {1, 0};
      auto random = make_random_model(c, shape);
      ExportOptions eo;
      eo.values = [](const Tensor& t) { return random_tensor_values(t, 11); };
      eo.type_of = [type](const Tensor& t) {
        return t.shape.size() == 2 && t.name.ends_with(".weight") && !t.name.ends_with("norm.weight") &&
                       t.name.find("gate_inp") == std::string::npos
                   ? type
                   : DType::F32;
      };
      const std::string path = d + "/" + shape + ".gguf";
      write_gguf_model(*random, path, eo);
      auto m = load_for_inference(path);
      ASSERT_EQ(m->cfg.n_experts, 8);
      ASSERT_EQ(m->layers[1].experts.size(), 8u);
      const int64_t n_gen = 10;
      const auto refs = references(*m, n_gen);
      const Outcome run = run_interleaved(*m, refs, {0, 1, 2, 12, 60}, n_gen, 16, 16);
      EXPECT_GT(run.mixed_batches, 3);
      expect_lone_results(run);
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
