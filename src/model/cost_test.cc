#include "model/cost.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace lmpress {
namespace {

// The cost written out from the architecture, as the papers count it.
TEST(TokenCost, CountsWhatADecodedTokenComputesAndReads) {
  for (const char* name : {"models/lmp-8m", "models/stories260K/stories260K.bin"}) {
    if (!test::have_shared(name)) GTEST_SKIP();
    auto m = load_model(test::shared_path(name));
    const ModelConfig& c = m->cfg;
    const double L = double(c.n_layers), d = double(c.dim), q = double(c.q_dim()), kv = double(c.kv_dim()),
                 f = double(c.ffn_dim), V = double(c.n_vocab), ctx = 100;
    const double linear = L * (d * q + 2 * d * kv + q * d + 3 * d * f) + d * V;
    const double attention = L * 2 * double(c.n_heads) * double(c.head_dim) * ctx;
    const TokenCost t = token_cost(*m, 100);
    EXPECT_EQ(t.linear_macs, linear) << name;
    EXPECT_EQ(t.attention_macs, attention) << name;
    EXPECT_EQ(t.flops(), 2 * (linear + attention));
    // f32 weights: the embedding table is read one row per token unless it is also the output head.
    const double all = double(m->n_bytes()), embd = 4 * V * d;
    EXPECT_EQ(t.weight_bytes, c.tied_embeddings ? all : all - embd + 4 * d) << name;
    EXPECT_EQ(t.kv_bytes_per_position, L * 2 * kv * 2) << name;  // f16 K and V
    EXPECT_EQ(t.kv_bytes_read(), t.kv_bytes_per_position * ctx);
    if (c.head_dim % 32 == 0) {  // q8_0: 34 bytes per 32 values
      EXPECT_EQ(token_cost(*m, 100, KvCacheSpec(KvType::Q8_0)).kv_bytes_per_position, L * 2 * kv / 32 * 34);
    }
  }
  if (test::have_shared("models/lmp-8m")) test::expect_error([] { token_cost(*load_model(test::shared_path("models/lmp-8m")), 0); }, "context 0");
}

}  // namespace
}  // namespace lmpress
