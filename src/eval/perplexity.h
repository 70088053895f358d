// Perplexity in two protocols.
// llama.cpp's: tokenize the whole text (with BOS), cut it into non-overlapping
// windows of n_ctx tokens, put BOS at the start of each window when the model
// adds BOS, and score only the second half of each window, so every scored
// token has at least n_ctx/2 tokens of context.
// The GPTQ papers' (GPTQ, AWQ, SparseGPT, Wanda report this one): the dataset
// rows joined with "\n\n" (gptq_protocol_text), tokenized once with BOS, cut
// into windows of n_ctx tokens with no BOS inserted, every prediction in the
// window scored (n_ctx - 1 per window); PPL = exp(mean NLL).
#pragma once
#include <nlohmann/json.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "model/forward.h"
#include "model/model.h"

namespace lmpress {

enum class PplProtocol { LlamaCpp, Gptq };

struct PerplexityOptions {
  int64_t n_ctx = 512;
  int64_t n_chunks = -1;  // -1: all
  int64_t n_batch = 2048;
  PplProtocol protocol = PplProtocol::LlamaCpp;
  KvCacheSpec kv = {};       // the model's cache (kld: the candidate's)
  KvCacheSpec base_kv = {};  // kld: the base model's cache
  KvPolicy policy = {};      // the model's (kld: the candidate's) eviction policy
  // perplexity: > 0 scores each token from scratch after the recompute_window − 1
  // tokens before it, no cache kept between tokens (StreamingLLM's "sliding
  // window with re-computation", the baseline an eviction policy is held against).
  int64_t recompute_window = 0;
  // The model's (kld: the candidate's) early exit: the windows' tokens after
  // `first` are then decoded one at a time, each step free to exit.
  EarlyExit early_exit = {};
};

// Logits rows first..n-1 of a window's tokens[n] on a fresh `st` (the rows
// before may be written too). Without an eviction policy one pass over the
// window; with one, the window is scored as a stream would be: tokens before
// `first` are the prompt (one evaluation: snapkv compresses it), the rest are
// decoded one at a time, evicting as they go; so with an early exit, each
// decoded token free to exit.
void eval_window(InferenceState& st, const int32_t* tokens, int64_t n, int64_t first, float* logits);

struct PerplexityResult {
  double ppl = 0;
  double ppl_stderr = 0;  // llama.cpp's "+/-" (delta method on the mean NLL)
  double mean_nll = 0;
  int64_t n_tokens_scored = 0;
  int64_t n_chunks = 0;
  int64_t n_tokens_total = 0;  // tokens in the tokenized text
  std::vector<double> running_ppl;  // after each chunk
  double seconds = 0;
  EarlyExitStats early_exit;  // with opt.early_exit
};

// `on_chunk(i, running_ppl)` is called after each chunk (for streaming output).
PerplexityResult perplexity(const Model& m, const std::vector<int32_t>& tokens, const PerplexityOptions& opt,
                            const std::function<void(int64_t, double)>& on_chunk = {});

// The text the GPTQ protocol scores: the file's lines as Hugging Face's
// wikitext loader yields them (each with its "\n"; blank lines as "") joined
// with "\n\n", as `"\n\n".join(testdata["text"])` in the GPTQ code.
std::string gptq_protocol_text(const std::string& raw);

// Parses "llama.cpp" or "gptq".
PplProtocol parse_ppl_protocol(const std::string& s);
const char* ppl_protocol_name(PplProtocol p);
// The result as `perplexity --json` prints it (without the model and file).
nlohmann::ordered_json perplexity_report_json(const PerplexityResult& r, const PerplexityOptions& o);

// Fails when a row of logits holds a NaN or Inf: a result computed from it
// would be printed as a number (PPL = nan, KLD = 0). Names the model, the
// window and the position.
void check_finite_logits(const Model& m, const float* logits, int64_t rows, int64_t n_vocab, int64_t window,
                         int64_t first_pos);
// Fails unless n_chunks is -1 (all) or at least 1.
void check_chunks(int64_t n_chunks);

// -log softmax(logits)[target], in double.
double token_nll(const float* logits, int64_t n_vocab, int32_t target);

}  // namespace lmpress
