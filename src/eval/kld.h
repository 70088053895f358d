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
  double sum_topk_mass = 0;  // add_topk: base probability held by the saved top k
  std::vector<float> kld_values, p_diff_values;

  // One scored token: logits of both models over n_vocab, and the actual next token.
  void add(const float* base_logits, const float* cand_logits, int64_t n_vocab, int32_t next);
  // One scored token against a saved base (kld_base.h): the base's k most
  // likely tokens (ids, logits, in descending order), its log-sum-exp and the
  // logit of the next token. The KLD over the full vocabulary becomes the KLD
  // of the distributions coarsened to {top k, rest}: exact when k = n_vocab, a
  // lower bound otherwise (data-processing inequality), close when the top k
  // hold nearly all of the base's mass.
  void add_topk(const int32_t* ids, const float* logits, int64_t k, double lse, double next_logit,
                const float* cand_logits, int64_t n_vocab, int32_t next);

 private:
  void add_token(double nll, double nll_base, double kld, bool same_top);
};

struct ValueUnc {
  double value = 0, unc = 0;
};

struct KldResult {
  int64_t n_tokens = 0, n_chunks = 0;
  ValueUnc ppl, ppl_base, ln_ppl_ratio, ppl_ratio, ppl_diff;
  double ln_ppl_correlation = 0;
  ValueUnc kld, p_diff, rms_p_diff, same_top;
  double top_k_mass = -1;  // saved base: mean base probability in the top k (-1: full vocabulary)
  // Quantiles of the per-token KLD and Δp: fractions 0, .001, .01, .05, .1, .5, .9, .95, .99, .999, 1
  // (Δp also .25 and .75), as llama.cpp prints them.
  std::vector<std::pair<double, double>> kld_quantiles, p_diff_quantiles;
  EarlyExitStats early_exit;  // the candidate's, with an early exit
};

KldResult summarize_kld(KldSums s);

// The windows llama.cpp's protocol scores, shared by kl_divergence and the
// saved-base path: n_chunks windows of n_ctx tokens, BOS in front when the
// model adds one, positions first .. n_ctx-2 scored.
struct KldWindows {
  int64_t n_ctx = 0, n_chunks = 0, first = 0;
  bool add_bos = false;
  int32_t bos = -1;
  int64_t scored_per_chunk() const { return n_ctx - 1 - first; }
  // Window c of `tokens` with BOS applied.
  void fill(const std::vector<int32_t>& tokens, int64_t c, std::vector<int32_t>& window) const;
};
// Validates the text length against the context; fails with a clear message.
KldWindows plan_kld_windows(const Model& base, const std::vector<int32_t>& tokens, const PerplexityOptions& opt);
// Fails unless cand has base's vocabulary (size, and tokens when both have a tokenizer).
void check_same_vocab(const Model& base, const Model& cand);

// Evaluates both models on the windows of `tokens` (tokenized by the base).
// Fails when the vocabularies differ.
KldResult kl_divergence(const Model& base, const Model& cand, const std::vector<int32_t>& tokens,
                        const PerplexityOptions& opt);

}  // namespace lmpress
