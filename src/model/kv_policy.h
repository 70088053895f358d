// Eviction policies: which cached positions a sequence keeps, so that its KV
// cache stays bounded however long it runs.
//
//  sink-window:S,W  StreamingLLM (Xiao et al., 2023): the first S positions
//                   (attention sinks) and the newest W to W + E − 1: the
//                   window is cut in whole runs of positions up to a multiple
//                   of E = `block` (16; the paged cache's block size), so
//                   that a paged cache frees whole blocks, the same positions
//                   whichever cache holds them, and memory moves once per E
//                   tokens instead of every token. Window keys keep the
//                   positions they were rotated for (RoPE is relative: their
//                   distances to the query are the true ones); the sinks'
//                   keys are rotated again, from a copy kept in f32, to sit
//                   just before the oldest window position, so every distance
//                   the model sees is under S + W + E however far the stream
//                   runs.
//  h2o:B[,W]        Heavy-Hitter Oracle (Zhang et al., 2023): B positions per
//                   layer and KV head, the newest W (default B/2) and the
//                   B − W with the largest attention accumulated since they
//                   were cached (summed over the heads sharing the KV head).
//  snapkv:B,W       SnapKV (Li et al., 2024): once, after the prompt (the
//                   first evaluation of a sequence), a prompt of more than B
//                   positions keeps per layer and KV head its last W
//                   positions (the observation window) and the B − W earlier
//                   ones that the window's queries attend to most (attention
//                   summed over the window, average-pooled over 5 positions);
//                   later positions are all kept.
//
// Evicted positions leave the cache: each kept position moves to a lower
// slot, so a cache holds at most capacity() slots.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kv_types.h"
#include "model/config.h"

namespace lmpress {

enum class KvPolicyKind { None, SinkWindow, H2O, SnapKV };

struct KvPolicy {
  KvPolicyKind kind = KvPolicyKind::None;
  int64_t sinks = 0;   // sink-window: S
  int64_t window = 0;  // sink-window: W; h2o: newest positions kept; snapkv: the observation window
  int64_t budget = 0;  // h2o and snapkv: positions kept in all
  int64_t block = 16;  // sink-window: E, the window is cut at multiples of it

  bool active() const { return kind != KvPolicyKind::None; }
  // The cache never holds more than capacity() positions (sink-window, h2o).
  bool bounded() const { return kind == KvPolicyKind::SinkWindow || kind == KvPolicyKind::H2O; }
  int64_t capacity() const { return kind == KvPolicyKind::SinkWindow ? sinks + window + block - 1 : budget; }
  // A bounded cache evicts before each forward step so that the step's
  // tokens fit: at most step() tokens a step once it is full, so every token
  // of a long prompt still sees at least 3/4 of the positions a token decoded
  // alone would (one token a step is the policy exactly).
  int64_t step() const;
};

// "sink-window:4,192", "h2o:128", "h2o:128,32", "snapkv:256,32" or "none";
// anything else is an error naming --kv-policy.
KvPolicy parse_kv_policy(const std::string& text);
std::string kv_policy_name(const KvPolicy& p);  // as parse_kv_policy reads it
// Errors naming --kv-policy (parse_kv_policy has checked the counts): a
// capacity() larger than the context n_ctx, a KIVI cache (its key groups span
// positions that eviction would split), a snapkv window larger than the batch
// n_batch (the window's queries must be in the prompt's last batch).
void check_kv_policy(const KvPolicy& p, const KvCacheSpec& kv, int64_t n_ctx, int64_t n_batch);
// An error naming --kv-policy when the model's attention has a sliding window
// or soft-capped scores (Mistral, Gemma): eviction moves keys away from their
// positions and ranks them by uncapped attention.
void check_policy_fits_model(const KvPolicy& p, const ModelConfig& c);

// sink-window's rule: the window holds positions a..n−1 (a = S before any
// eviction); before a step of b more positions that would overflow
// capacity(), runs up to the next multiple of `block` leave the window's
// start while the step's last position still sees W. Returns the new start.
int64_t sink_window_start(const KvPolicy& p, int64_t a, int64_t n, int64_t b);

// Slots kept when a cache of n slots shrinks to `keep` (all ascending):
// the first `sinks` and the newest keep − sinks.
void keep_sink_window(int64_t n, int64_t sinks, int64_t keep, std::vector<int64_t>& out);
// The newest `recent` and, of the others, the keep − recent with the largest
// score[slot] (ties: the older slot).
void keep_heavy(const float* score, int64_t n, int64_t recent, int64_t keep, std::vector<int64_t>& out);
// SnapKV: score[0..n−window) pooled (a mean over 5 slots, zeros past the
// ends, as avg_pool1d with padding 2), its keep − window largest kept with
// the newest `window`.
void keep_snapkv(const float* score, int64_t n, int64_t window, int64_t keep, std::vector<int64_t>& out);

}  // namespace lmpress
