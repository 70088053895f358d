#include "eval/perplexity.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

// Rows as Hugging Face's wikitext loader yields them: "a\n", "" (the blank
// line), "b c\n", "" (whitespace only) — joined with "\n\n".
TEST(GptqProtocol, TextJoinedLikeTheGptqCode) {
  EXPECT_EQ(gptq_protocol_text("a\n\nb c\n \n"), "a\n\n\n\n\nb c\n\n\n");
  EXPECT_EQ(gptq_protocol_text("x"), "x");
  EXPECT_EQ(gptq_protocol_text(""), "");
  EXPECT_EQ(parse_ppl_protocol("gptq"), PplProtocol::Gptq);
  EXPECT_EQ(parse_ppl_protocol("llama.cpp"), PplProtocol::LlamaCpp);
  EXPECT_THROW(parse_ppl_protocol("wikitext"), Error);
}

// Both protocols against the double-precision reference forward pass: the
// GPTQ protocol scores every prediction of each window (no BOS inserted),
// llama.cpp's the second half with BOS in front.
TEST(PerplexityProtocol, BothMatchReferenceForwardPass) {
  const std::string dir = test::temp_dir();
  test::write_synthetic_hf(dir, test::SyntheticSpec{});
  auto m = load_model(dir);
  const auto tokens = m->tokenizer->encode(
      gptq_protocol_text("The quick brown fox jumps over the lazy dog.\nPack my box with five dozen liquor jugs.\n"
                         "\nSphinx of black quartz, judge my vow. How vexingly quick daft zebras jump!\n"),
      true, false);
  const int64_t n_ctx = 16, V = m->cfg.n_vocab;
  ASSERT_GE(int64_t(tokens.size()), 3 * n_ctx);
  const int64_t n_win = int64_t(tokens.size()) / n_ctx;
  const int32_t bos = m->tokenizer->vocab().bos;
  for (PplProtocol proto : {PplProtocol::Gptq, PplProtocol::LlamaCpp}) {
    const bool gptq = proto == PplProtocol::Gptq;
    double nll = 0;
    int64_t count = 0;
    for (int64_t w = 0; w < n_win; w++) {
      std::vector<int32_t> win(tokens.begin() + w * n_ctx, tokens.begin() + (w + 1) * n_ctx);
      if (!gptq && m->tokenizer->vocab().add_bos) win[0] = bos;
      const auto logits = test::reference_logits(dir, win);
      for (int64_t j = gptq ? 0 : n_ctx / 2; j < n_ctx - 1; j++) {
        const auto& l = logits[size_t(j)];
        double mx = l[0], s = 0;
        for (double v : l) mx = std::max(mx, v);
        for (double v : l) s += std::exp(v - mx);
        nll += std::log(s) + mx - l[size_t(tokens[size_t(w * n_ctx + j + 1)])];
        count++;
      }
    }
    ASSERT_EQ(int64_t(m->cfg.n_vocab), V);
    const auto r = perplexity(*m, tokens, PerplexityOptions{n_ctx, -1, 7, proto, KvType::F32});
    EXPECT_EQ(r.n_tokens_scored, count);
    EXPECT_EQ(r.n_chunks, n_win);
    EXPECT_NEAR(r.ppl, std::exp(nll / double(count)), 1e-4 * r.ppl) << (gptq ? "gptq" : "llama.cpp");
  }
  // One window is enough text for the GPTQ protocol; llama.cpp's needs two.
  std::vector<int32_t> one(tokens.begin(), tokens.begin() + n_ctx);
  EXPECT_EQ(perplexity(*m, one, PerplexityOptions{n_ctx, -1, 64, PplProtocol::Gptq}).n_tokens_scored, n_ctx - 1);
  EXPECT_THROW(perplexity(*m, one, PerplexityOptions{n_ctx, -1, 64, PplProtocol::LlamaCpp}), Error);
}

}  // namespace
}  // namespace lmpress
