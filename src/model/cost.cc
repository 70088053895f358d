#include "model/cost.h"

#include "core/error.h"
#include "core/low_rank_tensor.h"

namespace lmpress {

TokenCost token_cost(const Model& m, int64_t ctx, const KvCacheSpec& kv) {
  if (ctx < 1) fail("token cost: context {} must be at least 1", ctx);
  const ModelConfig& c = m.cfg;
  TokenCost t;
  t.ctx = ctx;
  // A token of a mixture of experts runs n_experts_used of each layer's experts.
  const double used = c.moe() ? double(c.n_experts_used) / double(c.n_experts) : 1.0;
  for (const Tensor& w : m.tensors) {
    const bool embd = &w == m.tok_embd;
    const bool matrix = w.shape.size() == 2 && (layer_of(w.name) >= 0 || &w == m.output);
    const double share = c.moe() && stacked_expert_name(w.name) ? used : 1.0;
    if (matrix) t.linear_macs += share * double(stored_params(w));
    t.weight_bytes += embd && m.output != m.tok_embd ? double(w.nbytes) / double(w.rows()) : share * double(w.nbytes);
  }
  for (int64_t l = 0; l < c.n_layers; l++) {
    t.attention_macs += 2.0 * double(c.heads(l)) * double(c.head_dim) * double(ctx);
    t.kv_bytes_per_position += kv.bytes_per_position(c.kv_dim(l));
  }
  return t;
}

}  // namespace lmpress
