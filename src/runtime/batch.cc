#include "runtime/batch.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "core/error.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/to_f32.h"
#include "runtime/generate.h"

namespace lmpress {

bool prompt_kind(int64_t pos, int64_t n_prompt) {
  if (pos >= n_prompt) return false;
  const int64_t start = pos / kGenerateBatch * kGenerateBatch;
  return std::min(kGenerateBatch, n_prompt - start) >= kMatmulBatchMin;
}

BatchEngine::BatchEngine(const Model& m, PagedKvCache& cache, int64_t max_tokens)
    : m_(m), cache_(cache), max_tokens_(max_tokens), long_rope_(m.long_rope(cache.n_blocks() * cache.block_size())) {
  const auto& c = m.cfg;
  if (max_tokens < 1 || max_tokens > 65536) fail("batch engine: {} tokens per batch is out of range (1..65536)", max_tokens);
  if (cache.n_layers() != c.n_layers) fail("batch engine: the KV cache has {} layers, the model {}", cache.n_layers(), c.n_layers);
  for (int64_t l = 0; l < c.n_layers; l++)
    if (cache.kv_dim(l) != c.kv_dim(l))
      fail("batch engine: the KV cache's layer {} holds rows of {}, the model's {}", l, cache.kv_dim(l), c.kv_dim(l));
  check_policy_fits_model(cache.policy(), c);
  for (const LayerWeights& L : m.layers) {
    for (const Tensor* w : {L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down, L.shared.gate, L.shared.up, L.shared.down})
      invariant_ = invariant_ && (!w || matmul_rows_batch_invariant(*w));
    for (const auto& e : L.experts)
      for (const Tensor* w : {e.gate, e.up, e.down}) invariant_ = invariant_ && matmul_rows_batch_invariant(*w);
  }
  invariant_ = invariant_ && matmul_rows_batch_invariant(*m.output);
  const size_t B = size_t(max_tokens);
  a_.resize(c, B);
}

// Validates the batch and regroups it by sequence (in order of first
// appearance, batch order within one), reserving each sequence's blocks.
void BatchEngine::plan(const std::vector<BatchToken>& batch, bool have_logits) {
  const int64_t n = int64_t(batch.size());
  if (n < 1) fail("batch engine: empty batch");
  if (n > max_tokens_) fail("batch engine: {} tokens exceed the batch of {}", n, max_tokens_);
  const auto asking = std::count_if(batch.begin(), batch.end(), [](const BatchToken& t) { return t.logits; });
  if (asking > 0 && !have_logits) fail("batch engine: {} tokens ask for logits but no buffer was given", asking);
  std::unordered_map<PagedKvCache::SeqId, size_t> index;
  std::vector<std::vector<int64_t>> members;
  groups_.clear();
  for (int64_t i = 0; i < n; i++) {
    const BatchToken& t = batch[size_t(i)];
    if (t.token < 0 || t.token >= m_.cfg.n_vocab)
      fail("batch engine: token id {} is outside the vocabulary of {}", t.token, m_.cfg.n_vocab);
    auto it = index.find(t.seq);
    if (it == index.end()) {
      if (!cache_.has(t.seq)) fail("batch engine: sequence {} is not open in the KV cache", t.seq);
      it = index.emplace(t.seq, groups_.size()).first;
      groups_.push_back({t.seq, 0, 0, cache_.n_computed(t.seq), 0, nullptr});
      members.emplace_back();
    }
    Group& g = groups_[it->second];
    if (t.pos != g.pos0 + g.count)
      fail("batch engine: sequence {} expects position {} next, the batch gives {}", t.seq, g.pos0 + g.count, t.pos);
    g.count++;
    members[it->second].push_back(i);
  }
  int64_t need = 0;
  for (const Group& g : groups_) {
    if (g.count > cache_.max_step(g.seq))
      fail("batch engine: sequence {} has {} tokens in the batch; its sink window takes at most {} a step", g.seq,
           g.count, cache_.max_step(g.seq));
    need += cache_.blocks_needed(g.seq, g.pos0 + g.count);
  }
  if (need > cache_.free_blocks())
    fail("batch engine: the batch needs {} more KV blocks, the pool has {} free", need, cache_.free_blocks());
  order_.clear();
  pos_.clear();
  row_seq_.clear();
  prompt_rows_.clear();
  decode_rows_.clear();
  slot_block_.clear();
  slot_row_.clear();
  const int64_t bs = cache_.block_size();
  for (size_t gi = 0; gi < groups_.size(); gi++) {
    Group& g = groups_[gi];
    if (!cache_.reserve(g.seq, g.pos0 + g.count)) fail("batch engine: KV pool exhausted");  // counted above
    if (cache_.policy().sinks > 0 && !cache_.sinks_placed(g.seq)) place_sinks(g.seq);
    g.table = &cache_.block_table(g.seq);
    g.first = int64_t(order_.size());
    g.slot0 = cache_.slot(g.seq, g.pos0);
    for (int64_t i : members[gi]) {
      const int64_t pos = batch[size_t(i)].pos, slot = g.slot0 + (pos - g.pos0);
      const int32_t blk = (*g.table)[size_t(slot / bs)];
      // The cache shares only full blocks, which a sequence never writes again.
      if (cache_.ref_count(blk) != 1) fail("batch engine: sequence {} would write into shared block {}", g.seq, blk);
      (batch[size_t(i)].prompt ? prompt_rows_ : decode_rows_).push_back(int64_t(order_.size()));
      order_.push_back(i);
      pos_.push_back(pos);
      row_seq_.push_back(g.seq);
      slot_block_.push_back(blk);
      slot_row_.push_back(int32_t(slot % bs));
    }
  }
}

void BatchEngine::place_sinks(PagedKvCache::SeqId seq) {
  const KvCacheSpec& kv = cache_.spec();
  const std::vector<int32_t>& table = cache_.block_table(seq);
  const int64_t bs = cache_.block_size(), first = cache_.first_slot(seq), shift = cache_.sink_shift(seq);
  for (int64_t l = 0; l < m_.cfg.n_layers; l++) {
    const int64_t kvd = m_.cfg.kv_dim(l), krow = kv.row_bytes(kv.k, kvd);
    for (int64_t i = 0; i < cache_.policy().sinks; i++) {
      const int64_t slot = first + i;
      store_moved_key(m_, kv, l, cache_.sink_keys(seq, l) + i * kvd, shift, long_rope_,
                      cache_.k_block(l, table[size_t(slot / bs)]) + (slot % bs) * krow);
    }
  }
  cache_.set_sinks_placed(seq);
}

void BatchEngine::forward(const std::vector<BatchToken>& batch, float* logits) {
  plan(batch, logits != nullptr);
  const auto& c = m_.cfg;
  const int64_t n = int64_t(batch.size()), D = c.dim;
  for (int64_t r = 0; r < n; r++) embed_token(m_, batch[size_t(order_[size_t(r)])].token, a_.x.data() + r * D);
  for (int64_t l = 0; l < c.n_layers; l++) layer(l, n);

  // Logits in batch order for the tokens that ask.
  std::vector<int64_t> rows;  // sorted rows, by batch index
  std::vector<int64_t> row_of(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; r++) row_of[size_t(order_[size_t(r)])] = r;
  for (int64_t i = 0; i < n; i++)
    if (batch[size_t(i)].logits) rows.push_back(row_of[size_t(i)]);
  if (!rows.empty()) {
    for (size_t k = 0; k < rows.size(); k++)
      rmsnorm(a_.x.data() + rows[k] * D, m_.output_norm.data(), D, c.rms_eps, a_.xn.data() + int64_t(k) * D);
    // InferenceState computes a sequence's logits one token at a time (the
    // last prompt token's, then each step's): the one-token kernels.
    if (matmul_rows_batch_invariant(*m_.output))
      matmul(*m_.output, a_.xn.data(), int64_t(rows.size()), logits);
    else
      matmul_decode(*m_.output, a_.xn.data(), int64_t(rows.size()), logits);
    finish_logits(c, logits, int64_t(rows.size()));
  }
  for (const Group& g : groups_) {
    std::vector<int32_t> toks;
    std::vector<uint8_t> kinds;
    for (int64_t r = g.first; r < g.first + g.count; r++) {
      const BatchToken& t = batch[size_t(order_[size_t(r)])];
      toks.push_back(t.token);
      kinds.push_back(token_kind(t.prompt));
    }
    cache_.commit(g.seq, toks.data(), g.count, kinds.data());
  }
}

void BatchEngine::linear(const Tensor& w, const float* x, int64_t n, float* y) {
  if (matmul_rows_batch_invariant(w) || (decode_rows_.empty() && n >= kMatmulBatchMin)) return matmul(w, x, n, y);
  if (prompt_rows_.empty()) return matmul_decode(w, x, n, y);
  const int64_t in = w.shape[1], out = w.shape[0];
  // Each kind gathered, run, and scattered back; prompt rows padded with zero
  // rows to the kMatmulBatchMin that select the batched kernels.
  for (const bool prompt : {true, false}) {
    const std::vector<int64_t>& rows = prompt ? prompt_rows_ : decode_rows_;
    const int64_t k = int64_t(rows.size()), padded = prompt ? std::max(k, kMatmulBatchMin) : k;
    if (k == 0) continue;
    gx_.assign(size_t(padded * in), 0.0f);
    gy_.resize(size_t(padded * out));
    for (int64_t i = 0; i < k; i++) std::memcpy(&gx_[size_t(i * in)], x + rows[size_t(i)] * in, size_t(in) * sizeof(float));
    if (prompt)
      matmul(w, gx_.data(), padded, gy_.data());
    else
      matmul_decode(w, gx_.data(), k, gy_.data());
    for (int64_t i = 0; i < k; i++) std::memcpy(y + rows[size_t(i)] * out, &gy_[size_t(i * out)], size_t(out) * sizeof(float));
  }
}

void BatchEngine::layer(int64_t l, int64_t n) {
  const auto& c = m_.cfg;
  const LayerWeights& L = m_.layers[size_t(l)];
  const int64_t D = c.dim, qd = c.q_dim(l), kvd = c.kv_dim(l), F = c.ffn(l);
  const KvCacheSpec& kv = cache_.spec();
  float* x = a_.x.data();
  pre_norm(c, L.attn_norm, x, n, a_.xn.data());
  if (c.act_int8) fake_quant_int8_rows(a_.xn.data(), n, D);
  linear(*L.wq, a_.xn.data(), n, a_.q.data());
  linear(*L.wk, a_.xn.data(), n, a_.k.data());
  linear(*L.wv, a_.xn.data(), n, a_.v.data());
  const int64_t krow_bytes = kv.kivi() ? 0 : kv.row_bytes(kv.k, kvd), vrow_bytes = kv.row_bytes(kv.v, kvd);
  const int64_t sinks = cache_.policy().sinks;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; t++) {
    const int32_t blk = slot_block_[size_t(t)];
    const int64_t row = slot_row_[size_t(t)], pos = pos_[size_t(t)];
    float* k = a_.k.data() + t * kvd;
    prepare_token(m_, kv, l, a_.q.data() + t * qd, k, a_.v.data() + t * kvd, pos, long_rope_,
                  kv.kivi() ? nullptr : cache_.k_block(l, blk) + row * krow_bytes,
                  kv.kivi() ? nullptr : cache_.v_block(l, blk) + row * vrow_bytes);
    if (pos < sinks) keep_unrotated_key(m_, kv, l, k, cache_.sink_keys(row_seq_[size_t(t)], l) + pos * kvd);
  }
  if (kv.kivi()) {
    // Rows in position order per sequence (groups_ are), through its stage.
    const int64_t bs = cache_.block_size(), G = kv.group, kgroup = kv.key_group_bytes(kvd);
    for (const Group& g : groups_) {
      const std::vector<int32_t>& table = *g.table;
      const auto key_group = [&](int64_t pos) {
        return cache_.k_block(l, table[size_t(pos / bs)]) + (pos % bs) / G * kgroup;
      };
      const auto value_row = [&](int64_t pos) {
        return cache_.v_block(l, table[size_t(pos / bs)]) + (pos % bs) * vrow_bytes;
      };
      cache_.stage(g.seq, l)->quantize(a_.k.data() + g.first * kvd, a_.v.data() + g.first * kvd, g.count, key_group,
                                       value_row);
    }
  }

  k_pages_.resize(groups_.size());
  v_pages_.resize(groups_.size());
  std::vector<PagedQuery> pq(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); gi++) {
    const Group& g = groups_[gi];
    k_pages_[gi].clear();
    v_pages_[gi].clear();
    for (int32_t blk : *g.table) {
      k_pages_[gi].push_back(cache_.k_block(l, blk));
      v_pages_[gi].push_back(cache_.v_block(l, blk));
    }
    pq[gi].q = a_.q.data() + g.first * qd;
    pq[gi].out = a_.att.data() + g.first * qd;
    pq[gi].n = g.count;
    pq[gi].pos0 = g.slot0;
    pq[gi].cache = {k_pages_[gi].data(), v_pages_[gi].data(), cache_.block_size()};
    pq[gi].cache.first = cache_.first_slot(g.seq);
    if (const KiviStage* st = cache_.stage(g.seq, l)) {
      pq[gi].cache.k_staged = st->k();
      pq[gi].cache.v_staged = st->v();
      pq[gi].cache.staged_from = st->start();
      pq[gi].cache.k_fresh = a_.k.data() + g.first * kvd;
      pq[gi].cache.v_fresh = a_.v.data() + g.first * kvd;
      pq[gi].cache.fresh_from = st->size();
    }
  }
  attention_paged(attention_shape(m_, l), kv, pq.data(), int64_t(pq.size()), c.attention_scale());
  if (kv.kivi())
    for (const Group& g : groups_)
      cache_.stage(g.seq, l)->commit(a_.k.data() + g.first * kvd, a_.v.data() + g.first * kvd, g.count);
  unrotate_attention(m_, kv, l, a_.att.data(), n);
  if (c.act_int8) fake_quant_int8_rows(a_.att.data(), n, qd);
  linear(*L.wo, a_.att.data(), n, a_.xn.data());
  join_residual(c, x, a_.xn.data(), L.bo, L.attn_post_norm, n);

  pre_norm(c, L.ffn_norm, x, n, a_.xn.data());
  if (c.act_int8) fake_quant_int8_rows(a_.xn.data(), n, D);
  if (c.layer_moe(l)) {
    batched_.assign(size_t(n), 0);
    for (int64_t r : prompt_rows_) batched_[size_t(r)] = 1;
    const LinearFn lin = [this](const Tensor& w, const float* in, int64_t rows, float* out) { linear(w, in, rows, out); };
    moe_feed_forward(m_, l, a_.xn.data(), n, batched_.data(), lin, a_, a_.moe_y.data());
    return join_residual(c, x, a_.moe_y.data(), L.b_down, L.ffn_post_norm, n);
  }
  linear(*L.w_gate, a_.xn.data(), n, a_.gate.data());
  linear(*L.w_up, a_.xn.data(), n, a_.up.data());
  ffn_activation(c, a_.gate.data(), a_.up.data(), n, F);
  if (c.down_rotation) c.down_rotation->apply_rows(a_.gate.data(), n);
  if (c.act_int8) fake_quant_int8_rows(a_.gate.data(), n, F);
  linear(*L.w_down, a_.gate.data(), n, a_.xn.data());
  join_residual(c, x, a_.xn.data(), L.b_down, L.ffn_post_norm, n);
}

}  // namespace lmpress
