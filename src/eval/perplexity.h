// Perplexity with llama.cpp's protocol: tokenize the whole text (with BOS),
// cut it into non-overlapping windows of n_ctx tokens, put BOS at the start of
// each window when the model adds BOS, and score only the second half of each
// window, so every scored token has at least n_ctx/2 tokens of context.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"

namespace lmpress {

struct PerplexityOptions {
  int64_t n_ctx = 512;
  int64_t n_chunks = -1;  // -1: all
  int64_t n_batch = 2048;
};

struct PerplexityResult {
  double ppl = 0;
  double ppl_stderr = 0;  // llama.cpp's "+/-" (delta method on the mean NLL)
  double mean_nll = 0;
  int64_t n_tokens_scored = 0;
  int64_t n_chunks = 0;
  int64_t n_tokens_total = 0;  // tokens in the tokenized text
  std::vector<double> running_ppl;  // after each chunk
  double seconds = 0;
};

// `on_chunk(i, running_ppl)` is called after each chunk (for streaming output).
PerplexityResult perplexity(const Model& m, const std::vector<int32_t>& tokens, const PerplexityOptions& opt,
                            const std::function<void(int64_t, double)>& on_chunk = {});

// -log softmax(logits)[target], in double.
double token_nll(const float* logits, int64_t n_vocab, int32_t target);

}  // namespace lmpress
