// Saved base logits for `lmpress kld`: evaluate the base model once, keep what
// the KL statistics need, and score any number of candidates against the file
// without loading the base again (llama-perplexity's --kl-divergence-base,
// but compact: llama.cpp stores every logit as 16 bits, n_vocab per token;
// this file keeps the top k logits, the log-sum-exp and the next token's logit).
//
// Layout (little-endian): "LMPKLDB1", int64 n_vocab, n_ctx, n_chunks, top_k,
// first (the first scored position), bos (put in front of each window; -1:
// none), uint64 vocab_hash; int32 tokens
// [n_chunks * n_ctx] (the text's tokens, before BOS is put in front); then per
// chunk, per scored position: f32 log-sum-exp, f32 logit of the next token,
// int32 ids[top_k], f32 logits[top_k] (most likely first).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "eval/kld.h"

namespace lmpress {

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
