// A paged KV cache for serving many sequences at once (vLLM's PagedAttention
// layout): one pool of fixed-size blocks, each holding `block_size` positions
// of K and V for every layer, and a block table per sequence. Blocks are taken
// as a sequence grows and given back when it ends, so memory follows the
// tokens actually held instead of a context-sized buffer per sequence.
//
// Automatic prefix caching: a full block is keyed by the hash of its tokens
// and of the blocks before it. A new sequence whose prompt starts with cached
// full blocks shares them (reference counts) instead of computing them again.
// A block whose last user ends keeps its key and waits in an LRU list; a hit
// takes it back, and when the pool has no never-keyed block left the least
// recently freed keyed block is evicted. Only full blocks are ever keyed, and
// a sequence only writes positions past the ones it shares, so no sequence
// ever writes into a block another one reads.
//
// Each token may carry a kind (a byte; null arrays mean all 0) that is part of
// the key: positions computed by different kernels, whose K/V differ in the
// last bits, are then never shared (see BatchEngine::token_kind).
//
// A KIVI cache (kv_types.h) keeps each sequence's newest positions in a
// KiviStage of f16 rows beside the pool, per layer; its blocks hold whole key
// groups (block_size a multiple of the group). A block's content then depends
// on when its group was quantized, so KIVI caches share no prefix blocks.
//
// With a sink-window policy (model/kv_policy.h, whose runs are the blocks) a
// sequence evicts whole blocks: its table becomes [sink blocks, the window's
// blocks], the S sinks at the end of their own block(s) (copied there at the
// first eviction, their keys rotated again for the window by the batch
// engine), so attention reads them and the window as one run of slots from
// first_slot(). Its blocks are never keyed: a window position's K/V depend on
// what was evicted before it.
#pragma once
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "kernels/attention.h"
#include "model/config.h"
#include "model/kivi_stage.h"
#include "model/kv_policy.h"

namespace lmpress {

class PagedKvCache {
 public:
  using SeqId = int64_t;

  // kv_dims: K (and V) row width per layer; n_blocks × block_size positions in
  // all. Throws on sizes out of range.
  PagedKvCache(const std::vector<int64_t>& kv_dims, int64_t n_blocks, int64_t block_size = 16, KvCacheSpec kv = {});
  // Also checks the cache types against the model's head size.
  PagedKvCache(const ModelConfig& cfg, int64_t n_blocks, int64_t block_size = 16, KvCacheSpec kv = {},
               KvPolicy policy = {});

  // Starts sequence `seq`, whose tokens will begin with prompt[0..n). Shares
  // the cached full blocks the prompt starts with, and returns how many
  // positions they hold: a multiple of block_size, always < n so that the
  // prompt's last token is computed (its logits are needed).
  int64_t open(SeqId seq, const int32_t* prompt, int64_t n, const uint8_t* kinds = nullptr);
  // What open() would share, taking nothing.
  int64_t cached_prefix(const int32_t* prompt, int64_t n, const uint8_t* kinds = nullptr) const;
  // Gives back every block of `seq` (those still keyed go to the LRU list).
  void close(SeqId seq);
  // Keeps the first n computed positions of `seq` and forgets the rest
  // (speculative tokens the target rejected): blocks past them go back, and
  // the block position n falls in becomes the sequence's own, unkeyed, copied
  // first when another sequence shares it. Throws when the pool has no block
  // for that copy.
  void truncate(SeqId seq, int64_t n);
  bool has(SeqId seq) const { return seqs_.count(seq) != 0; }

  // Evicting (sink-window only; set before the first open), with the rule's
  // runs the cache's blocks.
  void set_policy(KvPolicy p);
  const KvPolicy& policy() const { return policy_; }
  // Where position `pos` of `seq` is held (its slot: block table[slot / block_size],
  // row slot % block_size), and the first slot attention reads.
  int64_t slot(SeqId seq, int64_t pos) const;
  int64_t first_slot(SeqId seq) const;
  // sink-window: positions the sinks' keys must be rotated forward by (the
  // window's first position − S), and whether their rows hold that rotation;
  // sink_keys(seq, layer): the sinks' keys as keep_unrotated_key keeps them.
  int64_t sink_shift(SeqId seq) const;
  bool sinks_placed(SeqId seq) const;
  void set_sinks_placed(SeqId seq);
  float* sink_keys(SeqId seq, int64_t layer);
  // The most positions `seq` may compute in one step: all that fit without
  // evicting, or at least the policy's step() (InferenceState's rule), so that
  // a step never evicts its own positions.
  int64_t max_step(SeqId seq) const;

  // Blocks that growing `seq` to `len` positions would take from the pool (net
  // of those an eviction gives back).
  int64_t blocks_needed(SeqId seq, int64_t len) const;
  bool can_grow(SeqId seq, int64_t len) const { return blocks_needed(seq, len) <= free_blocks(); }
  // Takes the blocks for positions up to `len`; false, taking nothing, when
  // the pool cannot supply them (the caller preempts instead).
  bool reserve(SeqId seq, int64_t len);
  // Records that tokens[0..n) now have their K/V at positions n_computed(seq)..
  // (written by the caller into reserved blocks); keys the blocks they fill.
  void commit(SeqId seq, const int32_t* tokens, int64_t n, const uint8_t* kinds = nullptr);

  int64_t n_computed(SeqId seq) const;  // positions of `seq` whose K/V are in the cache
  const std::vector<int32_t>& block_table(SeqId seq) const;
  // The tokens whose K/V `seq` holds (shared prefix included).
  const std::vector<int32_t>& tokens(SeqId seq) const;
  int32_t ref_count(int32_t block) const { return blocks_[size_t(block)].ref; }

  int64_t n_blocks() const { return int64_t(blocks_.size()); }
  int64_t block_size() const { return block_size_; }
  int64_t n_layers() const { return int64_t(kv_dims_.size()); }
  int64_t kv_dim(int64_t layer) const { return kv_dims_[size_t(layer)]; }
  const KvCacheSpec& spec() const { return kv_; }
  // Bytes of one block's K (V) data for `layer`.
  size_t k_block_bytes(int64_t layer) const { return size_t(kv_.k_bytes(block_size_, kv_dim(layer))); }
  size_t v_block_bytes(int64_t layer) const { return size_t(kv_.v_bytes(block_size_, kv_dim(layer))); }
  // Bytes one position takes over all layers (K and V), and the whole pool.
  double bytes_per_position() const;
  uint64_t pool_bytes() const;
  // A KIVI cache's staged f16 rows of `seq` for `layer` (null otherwise), and
  // their bytes over all open sequences.
  KiviStage* stage(SeqId seq, int64_t layer);
  uint64_t staged_bytes() const;
  // KIVI: positions truncate() must be able to take back (speculative
  // decoding's drafts), for sequences opened from now on.
  void set_rollback(int64_t n) { rollback_ = n; }
  // Blocks a sequence could take now: never-keyed free ones plus keyed ones
  // in the LRU list (evictable).
  int64_t free_blocks() const { return int64_t(free_.size() + lru_.size()); }
  int64_t used_blocks() const { return n_blocks() - free_blocks(); }
  int64_t cached_free_blocks() const { return int64_t(lru_.size()); }
  double usage() const { return double(used_blocks()) / double(n_blocks()); }
  // Prompt tokens looked up by open() and the ones found cached, since construction.
  int64_t prefix_query_tokens() const { return query_tokens_; }
  int64_t prefix_hit_tokens() const { return hit_tokens_; }

  // Block `block`'s K (V) rows for `layer`: block_size rows of kv_dim(layer)
  // values of spec().k (.v), position p of the block at row p.
  uint8_t* k_block(int64_t layer, int32_t block) { return k_[size_t(layer)].data() + size_t(block) * k_block_bytes(layer); }
  uint8_t* v_block(int64_t layer, int32_t block) { return v_[size_t(layer)].data() + size_t(block) * v_block_bytes(layer); }
  const uint8_t* k_block(int64_t layer, int32_t block) const {
    return k_[size_t(layer)].data() + size_t(block) * k_block_bytes(layer);
  }
  const uint8_t* v_block(int64_t layer, int32_t block) const {
    return v_[size_t(layer)].data() + size_t(block) * v_block_bytes(layer);
  }

 private:
  struct Block {
    int32_t ref = 0;
    bool keyed = false;  // in by_hash_ under `hash`
    uint64_t hash = 0, parent = 0;
    std::vector<int32_t> tokens;  // a keyed block's tokens and kinds: a hit compares them, not only the hash
    std::vector<uint8_t> kinds;
    std::list<int32_t>::iterator lru;
    bool in_lru = false;
  };
  struct Seq {
    std::vector<int32_t> table, tokens;
    std::vector<uint8_t> kinds;
    std::vector<uint64_t> hashes;  // of each full block, chained
    std::vector<KiviStage> stages;  // KIVI: per layer
    int64_t window_from = 0;        // sink-window: the window's first position (0: nothing evicted yet)
    int64_t placed_shift = 0;       // the rotation the sink rows hold
    std::vector<std::vector<float>> sink_k;  // per layer [S][kv_dim]
  };
  int64_t sink_blocks() const { return (policy_.sinks + block_size_ - 1) / block_size_; }
  // sink-window: the window's start after growing to len, and the table size then.
  int64_t window_after(const Seq& s, int64_t len) const;
  int64_t table_after(const Seq& s, int64_t len, int64_t from) const;
  void evict(Seq& s, int64_t from);

  const Seq& seq(SeqId id) const;
  Seq& seq(SeqId id);
  // The keyed block holding `tokens` after the chain `parent`, or -1.
  int32_t lookup(uint64_t parent, uint64_t hash, const int32_t* tokens, const uint8_t* kinds) const;
  // The keyed blocks prompt[0..n) starts with (never its last token's block).
  std::vector<std::pair<int32_t, uint64_t>> match(const int32_t* prompt, int64_t n, const uint8_t* kinds) const;
  int32_t take_free_block();
  void release(int32_t block);  // one reference fewer; at none, to the free or LRU list
  void unkey(int32_t block);

  std::vector<int64_t> kv_dims_;
  int64_t block_size_;
  KvCacheSpec kv_;
  std::vector<std::vector<uint8_t>> k_, v_;  // per layer [n_blocks, block_size, kv_dim]
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;  // ref 0, never keyed (or unkeyed)
  std::list<int32_t> lru_;     // ref 0 and keyed; the front is evicted first
  std::unordered_map<uint64_t, int32_t> by_hash_;
  std::unordered_map<SeqId, Seq> seqs_;
  int64_t query_tokens_ = 0, hit_tokens_ = 0;
  int64_t rollback_ = 0;
  KvPolicy policy_;
};

// The most blocks of block_size a sequence of len positions holds at once under policy p.
int64_t blocks_for(const KvPolicy& p, int64_t block_size, int64_t len);

// The key of a full block: its tokens (and their kinds; null: all 0) chained
// to the key of the blocks before it (0 for the first).
uint64_t kv_block_hash(uint64_t parent, const int32_t* tokens, const uint8_t* kinds, int64_t n);

}  // namespace lmpress
