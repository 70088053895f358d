#include "runtime/speculative.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.h"
#include "model/repack.h"
#include "runtime/generate.h"
#include "test_util.h"

namespace lmpress {
namespace {

TEST(NgramDrafter, ProposesWhatFollowedTheLatestEarlierOccurrence) {
  NgramDrafter d(1, 3);
  std::vector<int32_t> draft;
  std::vector<Sampler::Dist> q;
  // "1 2 3" occurs at 0 and at 5; the sequence ends in "1 2 3": the latest
  // earlier one (at 5) is followed by 9 9.
  d.propose({1, 2, 3, 4, 7, 1, 2, 3, 9, 9, 1, 2, 3}, 8, draft, q);
  EXPECT_EQ(draft, (std::vector<int32_t>{9, 9, 1, 2, 3}));
  EXPECT_TRUE(q.empty());
  d.propose({1, 2, 3, 4, 7, 1, 2, 3, 9, 9, 1, 2, 3}, 2, draft, q);
  EXPECT_EQ(draft, (std::vector<int32_t>{9, 9}));
  // No 3-gram or 2-gram match: the last token alone (5) matches at 1.
  d.propose({4, 5, 6, 8, 5}, 4, draft, q);
  EXPECT_EQ(draft, (std::vector<int32_t>{6, 8, 5}));
  d.propose({1, 2, 3}, 4, draft, q);
  EXPECT_TRUE(draft.empty());
}

// Greedy verification against a known text: from its first `start` tokens, each pass keeps the drafts that match
// the text and the text's next token. Returns the tokens drafted and accepted.
std::pair<int64_t, int64_t> lookup_run(NgramDrafter& d, const std::vector<int32_t>& text, size_t start, int64_t max) {
  std::vector<int32_t> seq(text.begin(), text.begin() + int64_t(start)), draft;
  std::vector<Sampler::Dist> q;
  int64_t drafted = 0, accepted = 0;
  while (seq.size() < text.size()) {
    d.propose(seq, max, draft, q);
    size_t a = 0;
    while (a < draft.size() && seq.size() + a < text.size() && draft[a] == text[seq.size() + a]) a++;
    drafted += int64_t(draft.size()), accepted += int64_t(a);
    seq.insert(seq.end(), text.begin() + int64_t(seq.size()), text.begin() + int64_t(std::min(text.size(), seq.size() + a + 1)));
  }
  return {drafted, accepted};
}

// Adaptive lookup: a length whose drafts miss stops drafting (its candidates
// still scored), and drafts again once they would have been accepted.
TEST(NgramDrafter, StopsDraftingWhatTheTargetRejectsAndRecovers) {
  // "1 k": after each 1 the latest earlier 1 was followed by k − 1, never by k.
  std::vector<int32_t> text;
  for (int32_t k = 2; k < 40; k++) text.insert(text.end(), {1, k});
  NgramDrafter always(1, 1, 0.0f), adaptive(1, 1, 0.75f);
  const auto [d0, a0] = lookup_run(always, text, 3, 2);
  const auto [d1, a1] = lookup_run(adaptive, text, 3, 2);
  EXPECT_EQ(a0, 0);
  EXPECT_EQ(a1, 0);
  EXPECT_GE(d0, 60);  // every "1" drafted two tokens
  EXPECT_EQ(d1, 4);   // two misses: (4 + 0) / (4 + 1) = 0.8, then 4 / 6 < 0.75
  EXPECT_NEAR(adaptive.estimate(1, 0), 4.0 / (4 + 36), 1e-12);  // 37 candidates, the last one never scored
  // Then a text whose unigram continuations hold ("1 9" repeated): the withheld candidates are scored as hits
  // and drafting resumes.
  std::vector<int32_t> more = text;
  for (int i = 0; i < 200; i++) more.insert(more.end(), {1, 9});
  NgramDrafter later(1, 1, 0.75f);
  const auto [d2, a2] = lookup_run(later, more, 3, 2);
  EXPECT_GT(later.estimate(1, 0), 0.75);
  EXPECT_GT(a2, 100);
  EXPECT_GE(double(a2) / double(d2), 0.9);
}

TEST(LayerSet, ParsesListsAndRangesAndRefusesTheRest) {
  EXPECT_EQ(parse_layer_set("1,3-4", 6, "x"), (std::vector<bool>{false, true, false, true, true, false}));
  test::expect_error([] { parse_layer_set("0-5", 6, "--spec self:skip"); }, "skips every block");
  test::expect_error([] { parse_layer_set("6", 6, "--spec self:skip"); }, "outside the model's 6 blocks");
  test::expect_error([] { parse_layer_set("2,x", 6, "--spec self:skip"); }, "'x' is not a block number");
  test::expect_error([] { parse_layer_set("4-2", 6, "--spec self:skip"); }, "backwards");
  test::expect_error([] { parse_layer_set("", 6, "--spec self:skip"); }, "is not a block number");
}

// Pearson's statistic of counts against probabilities.
template <class K>
double chi_square(const std::map<K, int64_t>& counts, const std::map<K, double>& p, int64_t n) {
  double x2 = 0;
  for (const auto& [id, pr] : p) {
    const double e = pr * double(n);
    const auto it = counts.find(id);
    const double o = it == counts.end() ? 0.0 : double(it->second);
    x2 += (o - e) * (o - e) / e;
  }
  return x2;
}

// The acceptance rule's output is distributed as p whatever q proposed:
// drafts drawn from q (sampled, and a fixed proposal), 60000 trials, Pearson's
// chi-square against p with 5 degrees of freedom below 20.5 (p-value 0.001).
TEST(SpeculativeAccept, OutputIsDistributedAsTheTarget) {
  const Sampler::Dist p = {{0, 0.35}, {1, 0.25}, {2, 0.2}, {3, 0.1}, {4, 0.06}, {5, 0.04}};
  const Sampler::Dist q = {{0, 0.1}, {1, 0.5}, {3, 0.3}, {5, 0.05}, {6, 0.05}};  // 6: a token p never gives
  std::map<int32_t, double> pm(p.begin(), p.end());
  SamplerOptions o;
  o.temperature = 1.0f;
  o.seed = 11;
  Sampler s(o);
  std::vector<double> dense(8, 0.0);
  const int64_t n = 60000;
  for (bool fixed : {false, true}) {
    std::map<int32_t, int64_t> counts;
    int64_t accepted = 0;
    for (int64_t i = 0; i < n; i++) {
      const int32_t x = fixed ? 1 : s.draw(q);
      int32_t out = -1;
      if (speculative_accept(s, p, fixed ? Sampler::Dist{} : q, x, out, dense)) {
        out = x;
        accepted++;
      }
      counts[out]++;
    }
    EXPECT_EQ(counts.count(6), 0u);
    EXPECT_LT(chi_square(counts, pm, n), 20.5) << (fixed ? "fixed proposal" : "sampled proposal");
    // Acceptance: sum min(p, q) for a sampled q; p(x) for a fixed x.
    const double want = fixed ? 0.25 : 0.1 + 0.25 + 0.1 + 0.04;
    EXPECT_NEAR(double(accepted) / double(n), want, 0.01);
    for (double d : dense) EXPECT_EQ(d, 0.0);
  }
}

std::string model_path(const char* name) {
  return name[0] == 's' ? test::shared_path("models/stories260K/stories260K.gguf") : test::shared_path("models/lmp-8m");
}

// Whole generations, sampled through speculative decoding with a draft that
// differs from the target (its first four blocks of five): the joint distribution
// of the first three tokens equals the target's, computed exactly from its
// logits (top-k 2 at temperature 1.5: 8 sequences), by chi-square over 2000
// seeded runs (7 degrees of freedom, below 24.3: p-value 0.001).
TEST(SpeculativeGenerate, SampledSequencesAreDistributedAsTheTargets) {
  if (!test::have_shared("models/stories260K/stories260K.gguf")) GTEST_SKIP() << "no stories260K";
  auto m = load_for_inference(model_path("stories"));
  SamplerOptions so;
  so.temperature = 1.5f;
  so.top_k = 2;
  so.top_p = 1.0f;
  so.min_p = 0.0f;
  const std::string prompt = "Once upon a time";
  const std::vector<int32_t> ptoks = m->tokenizer->encode(prompt, true, true);
  const int64_t V = m->cfg.n_vocab;
  // The exact joint of three tokens: p(a) p(b|a) p(c|a,b).
  std::map<std::vector<int32_t>, double> exact;
  Sampler dist_of(so);
  std::vector<float> logits(static_cast<size_t>(V));
  auto dist_after = [&](const std::vector<int32_t>& seq) {
    InferenceState st(*m, 64);
    st.eval(seq.data(), int64_t(seq.size()), logits.data(), false);
    Sampler::Dist d;
    dist_of.distribution(logits.data(), V, d);
    return d;
  };
  for (const auto& [a, pa] : dist_after(ptoks)) {
    auto sa = ptoks;
    sa.push_back(a);
    for (const auto& [b, pb] : dist_after(sa)) {
      auto sb = sa;
      sb.push_back(b);
      for (const auto& [c, pc] : dist_after(sb)) exact[{a, b, c}] = pa * pb * pc;
    }
  }
  ASSERT_EQ(exact.size(), 8u);
  const int64_t n = 2000;
  std::map<std::vector<int32_t>, int64_t> counts;
  int64_t drafted = 0, accepted = 0;
  for (int64_t i = 0; i < n; i++) {
    GenerateOptions g;
    g.n_predict = 4;  // the first pass drafts two: tokens 2 and 3 both go through the rule
    g.n_ctx = 64;
    g.sampling = so;
    g.sampling.seed = uint64_t(1000 + i);
    g.stop_at_eos = false;
    SpecOptions sp;
    sp.type = "self:exit:3";
    sp.draft_max = 3;
    sp.p_min = 0.0f;
    const DraftSource source(sp, *m, 64);
    const std::unique_ptr<Drafter> d = source.make(g.sampling);
    g.drafter = d.get();
    g.draft_max = sp.draft_max;
    const GenerateStats s = generate(*m, prompt, g, nullptr);
    ASSERT_EQ(s.tokens.size(), 4u);
    counts[{s.tokens[0], s.tokens[1], s.tokens[2]}]++;
    drafted += s.spec.drafted;
    accepted += s.spec.accepted;
  }
  // Every sampled sequence is one the target can give (two of the eight have
  // expected counts below 1 and may not appear).
  for (const auto& [seq, c] : counts) EXPECT_EQ(exact.count(seq), 1u);
  EXPECT_LT(chi_square(counts, exact, n), 24.3);
  // The draft is a real one: it proposes, and the target turns some down.
  EXPECT_GT(drafted, n);
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, drafted);
}

}  // namespace
}  // namespace lmpress
