// The batched forward pass of a serving engine: one call runs tokens of many
// sequences at once (prompt chunks and decoding steps together), each token
// with its own sequence and position. The linear layers run once over the
// whole batch, so the GEMM and int8 prompt kernels serve every sequence; RoPE
// takes each token's own position; K/V go into each sequence's blocks of a
// PagedKvCache and attention reads each sequence's own cache.
//
// Batch invariance: a token's logits do not depend on what else is in the
// batch, and equal a lone InferenceState's (lmpress generate's). Attention
// visits keys in InferenceState's blocks of positions whatever the pages (bit
// for bit). For the linear layers, a weight whose batched and one-token
// kernels give the same rows (the interleaved int8 layouts: Q4_0, Q5_0, Q8_0,
// Q4_K repacked at load) takes the whole batch in one matmul. Any other (f32,
// f16, int8 types left in file layout such as Q6_K) would give a token
// different rows in a batch of 4 or more than alone (other summation orders;
// f32 rather than quantized activations: up to 2% on int8 types), so there a
// token is computed as InferenceState computes it: prompt tokens (`prompt`)
// through the batched kernels (padded to 4 rows when fewer), whose rows do not
// depend on the batch size, decoding tokens through the one-token kernels
// (matmul_decode, still one pass over the weight for all of them). The prefix
// cache keeps this: tokens computed by different kernels carry different
// kinds in its keys (token_kind), so a decoding step's K/V never stand in for
// a prompt token's.
#pragma once
#include <cstdint>
#include <vector>

#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"

namespace lmpress {

struct BatchToken {
  int32_t token = 0;
  PagedKvCache::SeqId seq = 0;
  int64_t pos = 0;
  bool logits = false;  // whether forward() returns this token's logits
  // Part of a prompt that InferenceState would run in a batch of
  // kMatmulBatchMin tokens or more, rather than a decoding step; see batch
  // invariance above.
  bool prompt = false;
};

// Whether a lone generate() computes position `pos` with the batched kernels:
// a prompt position whose InferenceState batch (kGenerateBatch tokens) holds
// kMatmulBatchMin tokens or more (BatchToken::prompt). Generated tokens are
// decoding steps.
bool prompt_kind(int64_t pos, int64_t n_prompt);

class BatchEngine {
 public:
  // max_tokens: the most tokens one forward() takes (sizes the activation buffers).
  BatchEngine(const Model& m, PagedKvCache& cache, int64_t max_tokens = 512);

  // Runs `batch`, writing logits[k, vocab] for the k tokens that ask, in batch
  // order (logits may be null when none ask). A sequence's tokens must continue
  // it: positions n_computed(seq), n_computed(seq) + 1, ... in batch order; the
  // blocks they need are reserved here. Throws, with the cache unchanged, on a
  // bad batch or when the pool cannot hold it (check can_grow first).
  void forward(const std::vector<BatchToken>& batch, float* logits);

  // The prefix-cache kind of a token (PagedKvCache): 0 when every weight's
  // rows are batch invariant, else 1 for prompt tokens and 2 for decoding
  // steps, whose K/V come from different kernels and so are never shared.
  uint8_t token_kind(bool prompt) const { return invariant_ ? 0 : prompt ? 1 : 2; }
  int64_t max_tokens() const { return max_tokens_; }
  const Model& model() const { return m_; }
  PagedKvCache& cache() { return cache_; }

 private:
  struct Group {
    PagedKvCache::SeqId seq;
    int64_t first, count, pos0;  // rows first..first+count-1 of the sorted batch
    int64_t slot0;               // where pos0 is held (PagedKvCache::slot)
    const std::vector<int32_t>* table;
  };
  void plan(const std::vector<BatchToken>& batch, bool have_logits);
  void layer(int64_t l, int64_t n);
  // sink-window: the sinks' keys of `seq` rotated for the window it holds now.
  void place_sinks(PagedKvCache::SeqId seq);
  // y[n, out] = x[n, in] · wᵀ with each row computed as InferenceState would.
  void linear(const Tensor& w, const float* x, int64_t n, float* y);

  const Model& m_;
  PagedKvCache& cache_;
  int64_t max_tokens_;
  bool long_rope_;         // LongRoPE's long factors: the pool holds more than the original context
  std::vector<uint8_t> batched_;  // per row of the step: a prompt row (the experts' batched kernels)
  bool invariant_ = true;  // every linear weight's rows are batch invariant
  // The batch regrouped by sequence: row r of the buffers is batch token order_[r].
  std::vector<int64_t> order_, pos_;
  std::vector<PagedKvCache::SeqId> row_seq_;
  std::vector<int64_t> prompt_rows_, decode_rows_;  // rows by kind, when both are present
  std::vector<float> gx_, gy_;                      // their gathered activations and outputs
  std::vector<Group> groups_;
  std::vector<int32_t> slot_block_, slot_row_;  // where each row's K/V go
  std::vector<std::vector<const void*>> k_pages_, v_pages_;
  ForwardBuffers a_;
};

}  // namespace lmpress
