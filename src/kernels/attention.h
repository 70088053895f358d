// Causal multi-head attention over a KV cache of any KvType (f16, f32, bf16 or
// a block type), flash-attention style:
// keys and values are visited in blocks, each block converted to f32 once
// for a tile of query rows, and the softmax is computed online (running
// max and sum per row), so no [queries × keys] score matrix is ever formed
// and the masked half of a prompt's scores is never computed. GQA-aware: a
// tile holds every query head that shares a KV head, for several tokens, so
// each cached key and value is read once per tile. One function serves
// decoding (n = 1) and prompt batches.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/kv_types.h"

namespace lmpress {

struct AttentionShape {
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int64_t q_stride = 0;   // floats between tokens' query rows (≥ n_heads · head_dim)
  int64_t kv_stride = 0;  // values between positions in the caches (≥ n_kv_heads · head_dim; a whole
                          // number of blocks of the cache types, which must divide head_dim)
  int64_t out_stride = 0;
  // Sliding-window attention (Mistral, Gemma's local layers, Phi-3): the
  // query at position p sees the keys j with p − window < j ≤ p, as
  // Hugging Face's and llama.cpp's masks do. 0: every earlier key.
  int64_t window = 0;
  // Gemma 2's attention logit soft-capping: a scaled score s becomes
  // softcap · tanh(s / softcap) before the softmax. 0: none.
  float softcap = 0;
  // gpt-oss's attention sinks: per query head, a learned logit (in scaled-score units) that joins each softmax's
  // denominator with no value, so a query may attend to nothing. Null: none.
  const float* sinks = nullptr;
  // The first key position the query at `pos` sees.
  int64_t first_key(int64_t pos) const { return window > 0 ? std::max<int64_t>(0, pos + 1 - window) : 0; }
};

// out[t, h] = Σ_j softmax_j(scale · q[t, h] · k[j, h / group]) · v[j, h / group]
// over the keys s.first_key(pos0 + t) ≤ j ≤ pos0 + t, for queries t = 0..n-1
// at positions pos0 + t (scores soft-capped when s.softcap is set; with s.sinks, exp(sinks[h]) joins the
// softmax's denominator).
// k and v hold rows of kv.k and kv.v for positions 0..pos0 + n - 1 (kv.rotate
// is the caller's business). Multi-threaded (OpenMP).
void attention(const AttentionShape& s, const KvCacheSpec& kv, const float* q, int64_t n, int64_t pos0, const void* k,
               const void* v, float scale, float* out);
// The scalar reference: scores, a max-subtracted softmax summed in double, then
// the weighted sum of values; one (token, head) at a time.
void attention_ref(const AttentionShape& s, const KvCacheSpec& kv, const float* q, int64_t n, int64_t pos0, const void* k,
                   const void* v, float scale, float* out);

// The attention each cached key gets, as eviction policies (model/kv_policy.h)
// rank keys: for every KV head g and key j ≤ pos0 + t,
// acc[g · acc_stride + j] += Σ_t Σ_{h shares g} softmax_j(scale · q[t, h] · k[j, g])
// over the queries t = 0..n-1 at positions pos0 + t, with the cache as
// attention() reads it (row types only). Scores and sums in double.
void attention_weights(const AttentionShape& s, const KvCacheSpec& kv, const float* q, int64_t n, int64_t pos0,
                       const void* k, float scale, float* acc, int64_t acc_stride);

// A cache kept in pages of `page_size` positions (a paged KV cache's blocks):
// position j's K row starts at k[j / page_size], row j % page_size of it
// (rows kv_stride elements apart); V likewise. A KIVI cache's K page holds
// page_size / G key groups instead (each kv_stride channels of G positions),
// and the query at position p reads only the positions before
// KvCacheSpec::kivi_boundary(p) from the pages: later ones are f16 rows at
// k_staged / v_staged (row i: position staged_from + i) up to fresh_from, and
// f32 rows at k_fresh / v_fresh from there (the batch's own), all kv_stride
// values apart (model/kivi_stage.h).
// Slots before `first` hold nothing the queries see (an evicting cache's
// sinks sit at the end of their block): keys are visited from `first` on,
// in the same blocks as a contiguous cache whose key 0 is slot `first`.
struct KvPages {
  const void* const* k = nullptr;
  const void* const* v = nullptr;
  int64_t page_size = 0;
  const uint16_t* k_staged = nullptr;
  const uint16_t* v_staged = nullptr;
  int64_t staged_from = 0;
  const float* k_fresh = nullptr;
  const float* v_fresh = nullptr;
  int64_t fresh_from = 0;
  int64_t first = 0;
};
// One sequence's part of a paged attention call: queries q[n, q_stride] at
// positions pos0..pos0+n-1 over `cache` (which holds positions 0..pos0+n-1),
// output out[n, out_stride].
struct PagedQuery {
  const float* q = nullptr;
  float* out = nullptr;
  int64_t n = 0, pos0 = 0;
  KvPages cache;
};
// attention() for several sequences, each over its own paged cache, in one
// parallel region. Each query row's result is bit for bit what attention()
// gives on the same values in a contiguous cache: keys are visited in the same
// blocks of positions, whatever the pages.
void attention_paged(const AttentionShape& s, const KvCacheSpec& kv, const PagedQuery* seqs, int64_t n_seqs, float scale);
// attention_ref for the same.
void attention_paged_ref(const AttentionShape& s, const KvCacheSpec& kv, const PagedQuery* seqs, int64_t n_seqs, float scale);

// e^x for 8 floats at a time (AVX2), as used by the online softmax; exposed for
// its test. Inputs below −87.3 give 0, above 88 e^88 (softmax only takes
// x ≤ 0); in between the relative error is a few ulp.
void exp_f32(const float* x, int64_t n, float* y);

}  // namespace lmpress
