// KL divergence of a candidate model's next-token distributions from a base
// model's, with llama.cpp's protocol and statistics (llama-perplexity
// --kl-divergence): the same windows as perplexity (second half of each
// window scored), per token KL(base ‖ candidate) over the full vocabulary,
// whether both models' most likely token agree, and the change Δp of the
// probability of the actual next token; means with llama.cpp's uncertainties.
#pragma once
#include <cstdint>
#include <vector>

#include "eval/perplexity.h"
#include "model/model.h"

namespace lmpress {

// Running sums, as llama.cpp's kl_divergence_result.
struct KldSums {
  double sum_nll = 0, sum_nll2 = 0, sum_nll_base = 0, sum_nll_base2 = 0, sum_nll_nll_base = 0;
  double sum_kld = 0, sum_kld2 = 0, sum_p_diff = 0, sum_p_diff2 = 0, sum_p_diff4 = 0;
  double max_p_diff = 0;
  int64_t n_same_top = 0, count = 0;
  std::vector<float> kld_values, p_diff_values;

  // One scored token: logits of both models over n_vocab, and the actual next token.
  void add(const float* base_logits, const float* cand_logits, int64_t n_vocab, int32_t next);
};

struct ValueUnc {
  double value = 0, unc = 0;
};

struct KldResult {
  int64_t n_tokens = 0, n_chunks = 0;
  ValueUnc ppl, ppl_base, ln_ppl_ratio, ppl_ratio, ppl_diff;
  double ln_ppl_correlation = 0;
  ValueUnc kld, p_diff, rms_p_diff, same_top;
  // Quantiles of the per-token KLD and Δp: fractions 0, .001, .01, .05, .1, .5, .9, .95, .99, .999, 1
  // (Δp also .25 and .75), as llama.cpp prints them.
  std::vector<std::pair<double, double>> kld_quantiles, p_diff_quantiles;
};

KldResult summarize_kld(KldSums s);

// Evaluates both models on the windows of `tokens` (tokenized by the base).
// Fails when the vocabularies differ.
KldResult kl_divergence(const Model& base, const Model& cand, const std::vector<int32_t>& tokens,
                        const PerplexityOptions& opt);

}  // namespace lmpress
