// Saved base logits for `lmpress kld`: evaluate the base model once, keep what
// the KL statistics need, and score any number of candidates against the file
// without loading the base again (llama-perplexity's --kl-divergence-base,
// but compact: llama.cpp stores every logit as 16 bits, n_vocab per token;
// this file keeps the top k logits, the log-sum-exp and the next token's logit).
// `finetune --save-teacher-logits` writes the same file for its training
// windows, and distills from it instead of running the teacher again.
//
// Layout (little-endian): "LMPKLDB1", int64 n_vocab, n_ctx, n_chunks, top_k,
// first (the first scored position), bos (put in front of each window; -1:
// none), uint64 vocab_hash; int32 tokens
// [n_chunks * n_ctx] (the text's tokens, before BOS is put in front); then per
// chunk, per scored position: f32 log-sum-exp, f32 logit of the next token,
// int32 ids[top_k], f32 logits[top_k] (most likely first).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/mapped_file.h"
#include "eval/kld.h"

namespace lmpress {

struct SavedLogitsHeader {
  int64_t n_vocab = 0, n_ctx = 0, n_chunks = 0, top_k = 0, first = 0;
  int64_t bos = -1;  // put in front of each window; -1: none
  uint64_t vocab_hash = 0;
  int64_t scored_per_chunk() const { return n_ctx - 1 - first; }
  uint64_t record_bytes() const { return 8 + 8 * uint64_t(top_k); }
};

// Writes a file window by window (atomically: nothing at `path` until commit()).
class SavedLogitsWriter {
 public:
  // tokens: n_chunks · n_ctx, as stored (before BOS replaces each window's first).
  SavedLogitsWriter(const std::string& path, const SavedLogitsHeader& h, const int32_t* tokens);
  // The next window's logits [n_ctx, n_vocab], computed on `window` (its
  // tokens as the model read them: each scored position's next token is there).
  void add_window(const float* logits, const int32_t* window);
  void commit();

 private:
  SavedLogitsHeader h_;
  AtomicFile f_;
  std::vector<int32_t> order_, ids_;
  std::vector<float> vals_;
};

// A saved file, mapped, its header, tokens, ids and values checked.
class SavedLogits {
 public:
  explicit SavedLogits(const std::string& path);
  const SavedLogitsHeader& header() const { return h_; }
  const std::string& path() const { return path_; }
  // A hash of the whole file (what a training checkpoint records of it).
  uint64_t content_hash() const { return hash_; }
  // Window c as the model reads it (BOS in front where the file says so).
  void window(int64_t c, std::vector<int32_t>& out) const;
  // Scored position j (first ≤ j < n_ctx − 1) of window c.
  struct Row {
    float lse, next_logit;
    const int32_t* ids;   // top_k
    const float* logits;  // top_k, most likely first
  };
  Row row(int64_t c, int64_t j) const;
  // Fails, naming `who` first, unless m has the saved base's vocabulary
  // (size; tokens when m has a tokenizer).
  void check_vocab(const Model& m, const std::string& who) const;

 private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  SavedLogitsHeader h_;
  const int32_t* tokens_ = nullptr;
  const uint8_t* records_ = nullptr;
  uint64_t hash_ = 0;
};

// Writes the file atomically. top_k is clamped to the vocabulary.
void save_kld_base(const Model& base, const std::vector<int32_t>& tokens, const PerplexityOptions& opt,
                   int64_t top_k, const std::string& path);

// Scores `cand` on the windows stored in `path`. Fails on a malformed file or
// a candidate with another vocabulary.
// kv, policy, early_exit: the candidate's cache and early exit.
KldResult kl_divergence_saved(const std::string& path, const Model& cand, int64_t n_batch, const KvCacheSpec& kv = {},
                              const KvPolicy& policy = {}, const EarlyExit& early_exit = {});

// FNV-1a of the vocabulary's token strings (0 without a tokenizer).
uint64_t vocab_hash(const Model& m);

}  // namespace lmpress
