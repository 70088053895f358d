#include "runtime/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace lmpress {
namespace {

// splitmix64's finalizer: every input bit reaches every output bit.
uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr int64_t kMaxPositions = int64_t(1) << 24;

std::vector<int64_t> layer_kv_dims(const ModelConfig& c) {
  std::vector<int64_t> d;
  for (int64_t l = 0; l < c.n_layers; l++) d.push_back(c.kv_dim(l));
  return d;
}

}  // namespace

uint64_t kv_block_hash(uint64_t parent, const int32_t* tokens, const uint8_t* kinds, int64_t n) {
  uint64_t h = mix64(parent ^ 0x9e3779b97f4a7c15ull);
  for (int64_t i = 0; i < n; i++)
    h = mix64(h ^ uint64_t(uint32_t(tokens[i])) ^ (uint64_t(i) << 32) ^ (uint64_t(kinds ? kinds[i] : 0) << 48));
  return h;
}

namespace {

bool same_kinds(const std::vector<uint8_t>& stored, const uint8_t* kinds) {
  for (size_t i = 0; i < stored.size(); i++)
    if (stored[i] != (kinds ? kinds[i] : 0)) return false;
  return true;
}

}  // namespace

PagedKvCache::PagedKvCache(const ModelConfig& cfg, int64_t n_blocks, int64_t block_size, KvCacheSpec kv,
                           KvPolicy policy)
    : PagedKvCache(layer_kv_dims(cfg), n_blocks, block_size, kv) {
  check_kv_spec(kv, cfg.head_dim);
  set_policy(policy);
}

PagedKvCache::PagedKvCache(const std::vector<int64_t>& kv_dims, int64_t n_blocks, int64_t block_size, KvCacheSpec kv)
    : kv_dims_(kv_dims), block_size_(block_size), kv_(kv) {
  if (kv_dims.empty()) fail("KV cache: the model has no layers");
  if (kv.kivi() && block_size % kv.group != 0)
    fail("KV cache: blocks of {} positions do not hold whole KIVI groups of {} (--kv-group)", block_size, kv.group);
  if (block_size < 1 || block_size > 4096) fail("KV cache: block size {} is out of range (1..4096)", block_size);
  if (n_blocks < 1 || n_blocks > kMaxPositions / block_size)
    fail("KV cache: {} blocks of {} positions is out of range (1..{} positions in all)", n_blocks, block_size,
         kMaxPositions);
  for (int64_t d : kv_dims) {
    if (d < 1 || d > (1 << 20)) fail("KV cache: a layer's K/V width of {} is out of range", d);
    const int64_t kb = kv.kivi() ? kv.group : kv_type_info(kv.k).block;
    const int64_t vb = kv.kivi() ? kv.group : kv_type_info(kv.v).block;
    if (kb < 1 || vb < 1 || d % kb != 0 || d % vb != 0)
      fail("KV cache: a layer's K/V width of {} is not a whole number of {} blocks", d, kv_spec_name(kv));
    k_.emplace_back(checked_mul(uint64_t(n_blocks), uint64_t(kv.k_bytes(block_size, d)), "KV cache"));
    v_.emplace_back(checked_mul(uint64_t(n_blocks), uint64_t(kv.v_bytes(block_size, d)), "KV cache"));
  }
  blocks_.resize(size_t(n_blocks));
  // Handed out from the back: block 0 first.
  for (int64_t b = n_blocks - 1; b >= 0; b--) free_.push_back(int32_t(b));
}

double PagedKvCache::bytes_per_position() const {
  double b = 0;
  for (int64_t d : kv_dims_) b += kv_.bytes_per_position(d);
  return b;
}

uint64_t PagedKvCache::pool_bytes() const {
  uint64_t b = 0;
  for (size_t l = 0; l < k_.size(); l++) b += k_[l].size() + v_[l].size();
  return b;
}

KiviStage* PagedKvCache::stage(SeqId id, int64_t layer) {
  Seq& s = seq(id);
  return s.stages.empty() ? nullptr : &s.stages[size_t(layer)];
}

uint64_t PagedKvCache::staged_bytes() const {
  uint64_t b = 0;
  for (const auto& [id, s] : seqs_)
    for (const auto& st : s.stages) b += st.bytes();
  return b;
}

const PagedKvCache::Seq& PagedKvCache::seq(SeqId id) const {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) fail("KV cache: no sequence {}", id);
  return it->second;
}

PagedKvCache::Seq& PagedKvCache::seq(SeqId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) fail("KV cache: no sequence {}", id);
  return it->second;
}

int64_t PagedKvCache::n_computed(SeqId id) const { return int64_t(seq(id).tokens.size()); }
const std::vector<int32_t>& PagedKvCache::block_table(SeqId id) const { return seq(id).table; }
const std::vector<int32_t>& PagedKvCache::tokens(SeqId id) const { return seq(id).tokens; }

int32_t PagedKvCache::lookup(uint64_t parent, uint64_t hash, const int32_t* tokens, const uint8_t* kinds) const {
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return -1;
  const Block& b = blocks_[size_t(it->second)];
  if (b.parent != parent || !std::equal(b.tokens.begin(), b.tokens.end(), tokens) || !same_kinds(b.kinds, kinds))
    return -1;
  return it->second;
}

std::vector<std::pair<int32_t, uint64_t>> PagedKvCache::match(const int32_t* prompt, int64_t n,
                                                              const uint8_t* kinds) const {
  if (n < 0) fail("KV cache: negative prompt length {}", n);
  std::vector<std::pair<int32_t, uint64_t>> out;
  if (kv_.kivi() || policy_.active()) return out;
  uint64_t parent = 0;
  for (int64_t b = 0; (b + 1) * block_size_ < n; b++) {  // < n: the last token is always computed
    const int32_t* t = prompt + b * block_size_;
    const uint8_t* k = kinds ? kinds + b * block_size_ : nullptr;
    const uint64_t h = kv_block_hash(parent, t, k, block_size_);
    const int32_t blk = lookup(parent, h, t, k);
    if (blk < 0) break;
    out.push_back({blk, h});
    parent = h;
  }
  return out;
}

int64_t PagedKvCache::cached_prefix(const int32_t* prompt, int64_t n, const uint8_t* kinds) const {
  return int64_t(match(prompt, n, kinds).size()) * block_size_;
}

int64_t PagedKvCache::open(SeqId id, const int32_t* prompt, int64_t n, const uint8_t* kinds) {
  if (seqs_.count(id)) fail("KV cache: sequence {} is already open", id);
  const auto hits = match(prompt, n, kinds);
  Seq& s = seqs_[id];
  if (kv_.kivi())
    for (int64_t d : kv_dims_) s.stages.emplace_back(kv_, d, rollback_);
  if (policy_.sinks > 0)
    for (int64_t d : kv_dims_) s.sink_k.emplace_back(size_t(policy_.sinks * d));
  for (size_t b = 0; b < hits.size(); b++) {
    const int32_t blk = hits[b].first;
    const int32_t* t = prompt + int64_t(b) * block_size_;
    Block& B = blocks_[size_t(blk)];
    if (B.in_lru) {
      lru_.erase(B.lru);
      B.in_lru = false;
    }
    B.ref++;
    s.table.push_back(blk);
    s.hashes.push_back(hits[b].second);
    s.tokens.insert(s.tokens.end(), t, t + block_size_);
    s.kinds.insert(s.kinds.end(), B.kinds.begin(), B.kinds.end());
  }
  query_tokens_ += n;
  hit_tokens_ += int64_t(s.tokens.size());
  return int64_t(s.tokens.size());
}

void PagedKvCache::unkey(int32_t blk) {
  Block& B = blocks_[size_t(blk)];
  if (!B.keyed) return;
  by_hash_.erase(B.hash);
  B.keyed = false;
  B.tokens.clear();
  B.kinds.clear();
}

int32_t PagedKvCache::take_free_block() {
  int32_t blk;
  if (!free_.empty()) {
    blk = free_.back();
    free_.pop_back();
  } else {
    blk = lru_.front();  // the least recently freed keyed block
    lru_.pop_front();
    blocks_[size_t(blk)].in_lru = false;
    unkey(blk);
  }
  blocks_[size_t(blk)].ref = 1;
  return blk;
}

void PagedKvCache::set_policy(KvPolicy p) {
  if (p.active() && p.kind != KvPolicyKind::SinkWindow)
    fail("--kv-policy {}: serve evicts with sink-window only (the paged cache compacts no heads)", kv_policy_name(p));
  if (p.active() && kv_.kivi()) check_kv_policy(p, kv_, kMaxPositions, kMaxPositions);  // names the clash
  if (!seqs_.empty()) fail("KV cache: the policy is set before the first sequence");
  p.block = block_size_;
  policy_ = p;
}

int64_t PagedKvCache::slot(SeqId id, int64_t pos) const {
  const Seq& s = seq(id);
  if (s.window_from == 0) return pos;
  const int64_t rows = sink_blocks() * block_size_;
  if (pos < policy_.sinks) return rows - policy_.sinks + pos;
  if (pos < s.window_from) fail("KV cache: position {} of sequence {} was evicted", pos, id);
  return pos - s.window_from + rows;
}

int64_t PagedKvCache::first_slot(SeqId id) const {
  return seq(id).window_from == 0 ? 0 : sink_blocks() * block_size_ - policy_.sinks;
}

int64_t PagedKvCache::sink_shift(SeqId id) const {
  const Seq& s = seq(id);
  return s.window_from == 0 ? 0 : s.window_from - policy_.sinks;
}

bool PagedKvCache::sinks_placed(SeqId id) const { return seq(id).placed_shift == sink_shift(id); }
void PagedKvCache::set_sinks_placed(SeqId id) { seq(id).placed_shift = sink_shift(id); }

float* PagedKvCache::sink_keys(SeqId id, int64_t layer) {
  Seq& s = seq(id);
  return s.sink_k.empty() ? nullptr : s.sink_k[size_t(layer)].data();
}

int64_t PagedKvCache::max_step(SeqId id) const {
  const Seq& s = seq(id);
  if (policy_.kind != KvPolicyKind::SinkWindow) return kMaxPositions;
  const int64_t n = int64_t(s.tokens.size());
  const int64_t held = s.window_from == 0 ? n : policy_.sinks + n - s.window_from;
  return std::max(policy_.step(), policy_.capacity() - held);
}

int64_t blocks_for(const KvPolicy& p, int64_t block_size, int64_t len) {
  const int64_t all = (len + block_size - 1) / block_size;
  if (p.kind != KvPolicyKind::SinkWindow) return all;
  // The sinks' blocks, and the window (under W + E positions) over one block more than it fills.
  return std::min(all, (p.sinks + block_size - 1) / block_size + (p.window + block_size) / block_size + 2);
}

int64_t PagedKvCache::window_after(const Seq& s, int64_t len) const {
  const int64_t n = int64_t(s.tokens.size());
  const int64_t from = s.window_from == 0 ? policy_.sinks : s.window_from;
  return sink_window_start(policy_, from, n, len - n);
}

int64_t PagedKvCache::table_after(const Seq& s, int64_t len, int64_t from) const {
  const int64_t end = (len + block_size_ - 1) / block_size_;
  if (s.window_from == 0 && from == policy_.sinks) return std::max(end, int64_t(s.table.size()));
  return sink_blocks() + end - from / block_size_;
}

void PagedKvCache::evict(Seq& s, int64_t from) {
  const int64_t S = policy_.sinks, rows = sink_blocks() * block_size_;
  std::vector<std::vector<uint8_t>> sink_k, sink_v;  // the sinks' rows, before their blocks go back
  std::vector<int32_t> window;
  int64_t window_block0;  // the position block window[0] holds
  if (s.window_from == 0) {
    for (int64_t l = 0; l < n_layers(); l++) {
      const size_t kr = size_t(kv_.row_bytes(kv_.k, kv_dim(l))), vr = size_t(kv_.row_bytes(kv_.v, kv_dim(l)));
      sink_k.emplace_back(size_t(S) * kr);
      sink_v.emplace_back(size_t(S) * vr);
      for (int64_t p = 0; p < S; p++) {
        const int32_t b = s.table[size_t(p / block_size_)];
        std::memcpy(sink_k.back().data() + p * kr, k_block(l, b) + (p % block_size_) * kr, kr);
        std::memcpy(sink_v.back().data() + p * vr, v_block(l, b) + (p % block_size_) * vr, vr);
      }
    }
    window.assign(s.table.begin(), s.table.end());
    window_block0 = 0;
    s.table.clear();
  } else {
    window.assign(s.table.begin() + sink_blocks(), s.table.end());
    window_block0 = s.window_from / block_size_;
    s.table.resize(size_t(sink_blocks()));
  }
  const int64_t drop = from / block_size_ - window_block0;
  for (int64_t i = 0; i < std::min<int64_t>(drop, int64_t(window.size())); i++) release(window[size_t(i)]);
  if (s.window_from == 0 && S > 0) {
    for (int64_t i = 0; i < sink_blocks(); i++) s.table.push_back(take_free_block());
    for (int64_t l = 0; l < n_layers(); l++) {
      const size_t kr = size_t(kv_.row_bytes(kv_.k, kv_dim(l))), vr = size_t(kv_.row_bytes(kv_.v, kv_dim(l)));
      for (int64_t p = 0; p < S; p++) {
        const int64_t at = rows - S + p;
        const int32_t b = s.table[size_t(at / block_size_)];
        std::memcpy(k_block(l, b) + (at % block_size_) * kr, sink_k[size_t(l)].data() + p * kr, kr);
        std::memcpy(v_block(l, b) + (at % block_size_) * vr, sink_v[size_t(l)].data() + p * vr, vr);
      }
    }
  }
  for (size_t i = size_t(std::max<int64_t>(0, drop)); i < window.size(); i++) s.table.push_back(window[i]);
  s.window_from = from;
}

int64_t PagedKvCache::blocks_needed(SeqId id, int64_t len) const {
  if (len < 0 || len > kMaxPositions) fail("KV cache: sequence length {} is out of range", len);
  const Seq& s = seq(id);
  const int64_t have = int64_t(s.table.size());
  if (policy_.kind == KvPolicyKind::SinkWindow) {
    if (len <= int64_t(s.tokens.size())) return 0;
    return std::max<int64_t>(0, table_after(s, len, window_after(s, len)) - have);
  }
  return std::max<int64_t>(0, (len + block_size_ - 1) / block_size_ - have);
}

bool PagedKvCache::reserve(SeqId id, int64_t len) {
  const int64_t need = blocks_needed(id, len);
  if (need > free_blocks()) return false;
  Seq& s = seq(id);
  if (policy_.kind == KvPolicyKind::SinkWindow && len > int64_t(s.tokens.size())) {
    if (len - int64_t(s.tokens.size()) > max_step(id))
      fail("KV cache: sequence {} asks for {} positions in one step; its window takes at most {}", id,
           len - int64_t(s.tokens.size()), max_step(id));
    const int64_t from = window_after(s, len), want = table_after(s, len, from);
    if (from != (s.window_from == 0 ? policy_.sinks : s.window_from)) evict(s, from);
    while (int64_t(s.table.size()) < want) s.table.push_back(take_free_block());
    return true;
  }
  for (int64_t i = 0; i < need; i++) s.table.push_back(take_free_block());
  return true;
}

void PagedKvCache::commit(SeqId id, const int32_t* tokens, int64_t n, const uint8_t* kinds) {
  Seq& s = seq(id);
  const int64_t at = int64_t(s.tokens.size());
  if (n < 0 || (n > 0 && slot(id, at + n - 1) >= int64_t(s.table.size()) * block_size_))
    fail("KV cache: sequence {} commits positions {}..{} past its reserved {} slots", id, at, at + n,
         int64_t(s.table.size()) * block_size_);
  s.tokens.insert(s.tokens.end(), tokens, tokens + n);
  if (kinds)
    s.kinds.insert(s.kinds.end(), kinds, kinds + n);
  else
    s.kinds.resize(s.tokens.size(), 0);
  // Key every block these tokens filled; a block whose key another block
  // already holds (the same prefix computed twice at once) stays unkeyed.
  if (kv_.kivi() || policy_.active()) return;
  for (int64_t b = int64_t(s.hashes.size()); (b + 1) * block_size_ <= int64_t(s.tokens.size()); b++) {
    const int32_t* t = s.tokens.data() + b * block_size_;
    const uint8_t* k = s.kinds.data() + b * block_size_;
    const uint64_t parent = b > 0 ? s.hashes[size_t(b - 1)] : 0;
    const uint64_t h = kv_block_hash(parent, t, k, block_size_);
    s.hashes.push_back(h);
    if (by_hash_.count(h)) continue;
    const int32_t blk = s.table[size_t(b)];
    Block& B = blocks_[size_t(blk)];
    B.keyed = true;
    B.hash = h;
    B.parent = parent;
    B.tokens.assign(t, t + block_size_);
    B.kinds.assign(k, k + block_size_);
    by_hash_[h] = blk;
  }
}

void PagedKvCache::release(int32_t blk) {
  Block& B = blocks_[size_t(blk)];
  if (--B.ref > 0) return;
  if (B.keyed) {
    B.lru = lru_.insert(lru_.end(), blk);
    B.in_lru = true;
  } else {
    free_.push_back(blk);
  }
}

void PagedKvCache::close(SeqId id) {
  Seq& s = seq(id);
  // Last block first: a prefix's tail is the least likely to be shared, so it
  // goes to the LRU list first and is evicted first.
  for (auto it = s.table.rbegin(); it != s.table.rend(); ++it) release(*it);
  seqs_.erase(id);
}

void PagedKvCache::truncate(SeqId id, int64_t n) {
  Seq& s = seq(id);
  if (n < 0 || n > int64_t(s.tokens.size()))
    fail("KV cache: sequence {} cannot keep {} of its {} positions", id, n, s.tokens.size());
  if (s.window_from != 0 && n < int64_t(s.tokens.size()))
    fail("KV cache: sequence {} evicted positions, so it cannot take any back", id);
  if (!s.stages.empty()) s.stages[0].truncate(n);  // throws first when it cannot: every layer's is as far
  for (auto& st : s.stages) st.truncate(n);
  const int64_t keep_blocks = (n + block_size_ - 1) / block_size_;
  if (n % block_size_ != 0) {
    // The last kept block will be written past n: it must be this
    // sequence's own and unkeyed (its key named the positions dropped).
    // Done first, so that a pool with no block for the copy throws before
    // anything changed.
    int32_t& blk = s.table[size_t(keep_blocks - 1)];
    if (blocks_[size_t(blk)].ref > 1) {
      if (free_blocks() == 0) fail("KV cache: no free block to copy sequence {}'s shared block into", id);
      const int32_t copy = take_free_block();  // kept positions copied, then the shared block let go
      for (int64_t l = 0; l < n_layers(); l++) {
        std::memcpy(k_block(l, copy), k_block(l, blk), k_block_bytes(l));
        std::memcpy(v_block(l, copy), v_block(l, blk), v_block_bytes(l));
      }
      release(blk);
      blk = copy;
    } else {
      unkey(blk);
    }
  }
  while (int64_t(s.table.size()) > keep_blocks) {
    release(s.table.back());
    s.table.pop_back();
  }
  s.hashes.resize(std::min(s.hashes.size(), size_t(n / block_size_)));
  s.tokens.resize(size_t(n));
  s.kinds.resize(size_t(n));
}

}  // namespace lmpress
