// What one decoded token costs a model at a context length: the surveys'
// efficiency metrics (multiply-accumulates, bytes read), for `info` and `compare`.
#pragma once
#include <cstdint>

#include "kernels/kv_types.h"
#include "model/model.h"

namespace lmpress {

struct TokenCost {
  int64_t ctx = 0;           // the token attends to this many positions (itself included)
  double linear_macs = 0;    // every weight matrix, the output head included: Σ rows × cols (as dense)
  double attention_macs = 0; // q·k and p·v: Σ over layers of 2 × heads × head_dim × ctx
  double weight_bytes = 0;   // weights read: every tensor but the embeddings, of which one row (all when tied)
  double kv_bytes_per_position = 0;  // the cache, all layers, K and V
  double macs() const { return linear_macs + attention_macs; }
  double flops() const { return 2 * macs(); }
  double kv_bytes_read() const { return kv_bytes_per_position * double(ctx); }
};

TokenCost token_cost(const Model& m, int64_t ctx, const KvCacheSpec& kv = {});

}  // namespace lmpress
