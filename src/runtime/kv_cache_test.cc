#include "runtime/kv_cache.h"

#include <gtest/gtest.h>

#include <numeric>

#include "core/error.h"
#include "test_util.h"

namespace lmpress {
namespace {

std::vector<int32_t> iota_tokens(int64_t n, int32_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

// Opens `id` on `prompt`, then reserves and commits the whole prompt past the
// shared prefix, as the engine does for a prefilled prompt; returns the shared count.
int64_t run_prompt(PagedKvCache& c, int64_t id, const std::vector<int32_t>& prompt) {
  const int64_t cached = c.open(id, prompt.data(), int64_t(prompt.size()));
  EXPECT_TRUE(c.reserve(id, int64_t(prompt.size())));
  c.commit(id, prompt.data() + cached, int64_t(prompt.size()) - cached);
  return cached;
}

// sink-window:4,10 over blocks of 8: the table becomes [sink block, window
// blocks]; whole blocks go back as the window moves, and the sinks' rows (K and
// V, written at positions 0..3) sit at the end of their own block.
TEST(PagedKvCache, SinkWindowEvictsWholeBlocks) {
  const KvPolicy policy = parse_kv_policy("sink-window:4,10");
  PagedKvCache c({8}, 6, 8, KvType::F32);
  c.set_policy(policy);
  const auto toks = iota_tokens(60, 1);
  ASSERT_EQ(c.open(1, toks.data(), 1), 0);
  const auto write = [&](int64_t pos) {  // position p's K row holds p, its V row −p
    const int64_t slot = c.slot(1, pos);
    const int32_t b = c.block_table(1)[size_t(slot / 8)];
    for (int i = 0; i < 8; i++) {
      reinterpret_cast<float*>(c.k_block(0, b))[(slot % 8) * 8 + i] = float(pos);
      reinterpret_cast<float*>(c.v_block(0, b))[(slot % 8) * 8 + i] = -float(pos);
    }
  };
  for (int64_t n = 0; n < 60; n++) {
    ASSERT_TRUE(c.reserve(1, n + 1)) << n;
    write(n);
    c.commit(1, &toks[size_t(n)], 1);
    EXPECT_LE(c.used_blocks(), blocks_for(c.policy(), 8, n + 1)) << n;
  }
  // 60 positions: the window starts at 48 (48..59 keep at least 10), the sinks in slots 4..7.
  EXPECT_EQ(c.first_slot(1), 4);
  EXPECT_EQ(c.sink_shift(1), 44);
  EXPECT_EQ(c.slot(1, 2), 6);
  EXPECT_EQ(c.slot(1, 48), 8);
  EXPECT_EQ(c.slot(1, 59), 19);
  EXPECT_EQ(c.block_table(1).size(), 3u);  // the sink block and 2 of the window
  EXPECT_EQ(c.used_blocks(), 3);
  test::expect_error([&] { c.slot(1, 47); }, "position 47 of sequence 1 was evicted");
  // 16 positions held of the 21: a step takes at most 5 (or the policy's step, 2).
  EXPECT_EQ(c.max_step(1), 5);
  test::expect_error([&] { c.reserve(1, 80); }, "asks for 20 positions in one step; its window takes at most 5");
  const int32_t sb = c.block_table(1)[0];
  for (int p = 0; p < 4; p++) {
    EXPECT_EQ(reinterpret_cast<const float*>(c.v_block(0, sb))[(4 + p) * 8], -float(p));
    EXPECT_EQ(reinterpret_cast<const float*>(c.k_block(0, sb))[(4 + p) * 8], float(p));  // until the engine rotates them
  }
  EXPECT_EQ(c.cached_prefix(toks.data(), 60), 0);  // nothing keyed
  test::expect_error([&] { c.truncate(1, 50); }, "evicted positions, so it cannot take any back");
  c.close(1);
  EXPECT_EQ(c.used_blocks(), 0);
  test::expect_error([&] { c.set_policy(parse_kv_policy("h2o:32")); }, "evicts with sink-window only");
}

TEST(PagedKvCache, AllocationReturnsToEmpty) {
  PagedKvCache c({8, 16}, 10, 4);
  EXPECT_EQ(c.free_blocks(), 10);
  const auto p = iota_tokens(10, 1);
  EXPECT_EQ(c.open(1, p.data(), 10), 0);
  EXPECT_EQ(c.blocks_needed(1, 10), 3);
  ASSERT_TRUE(c.reserve(1, 10));
  EXPECT_EQ(c.used_blocks(), 3);
  c.commit(1, p.data(), 10);
  EXPECT_EQ(c.n_computed(1), 10);
  // Decoding: positions 10 and 11 fit the third block, 12 takes a fourth.
  EXPECT_EQ(c.blocks_needed(1, 12), 0);
  ASSERT_TRUE(c.reserve(1, 13));
  EXPECT_EQ(c.used_blocks(), 4);
  const int32_t more[3] = {50, 51, 52};
  c.commit(1, more, 3);
  EXPECT_EQ(c.tokens(1).size(), 13u);
  ASSERT_TRUE(c.reserve(1, 13));  // already held: takes nothing
  EXPECT_EQ(c.used_blocks(), 4);
  c.close(1);
  EXPECT_EQ(c.free_blocks(), 10);
  EXPECT_EQ(c.used_blocks(), 0);
  EXPECT_FALSE(c.has(1));
  // The three full blocks stay keyed in the LRU list, the partial one does not.
  EXPECT_EQ(c.cached_free_blocks(), 3);
}

TEST(PagedKvCache, SharesFullBlocksOfACommonPrefixOnly) {
  PagedKvCache c({8}, 16, 4);
  const auto a = iota_tokens(10, 1);  // blocks [1..4] [5..8] and a partial [9 10]
  EXPECT_EQ(run_prompt(c, 1, a), 0);
  EXPECT_EQ(c.used_blocks(), 3);
  auto b = a;
  b.push_back(99);
  b.push_back(98);
  EXPECT_EQ(c.cached_prefix(b.data(), int64_t(b.size())), 8);
  EXPECT_EQ(c.open(2, b.data(), int64_t(b.size())), 8);
  EXPECT_EQ(c.n_computed(2), 8);
  EXPECT_EQ(c.block_table(2)[0], c.block_table(1)[0]);
  EXPECT_EQ(c.block_table(2)[1], c.block_table(1)[1]);
  EXPECT_EQ(c.ref_count(c.block_table(1)[0]), 2);
  EXPECT_EQ(c.ref_count(c.block_table(1)[2]), 1);  // the partial block is A's alone
  EXPECT_EQ(c.used_blocks(), 3);
  ASSERT_TRUE(c.reserve(2, int64_t(b.size())));
  EXPECT_EQ(c.used_blocks(), 4);
  // Every block B writes into (positions 8..11) is its own.
  EXPECT_NE(c.block_table(2)[2], c.block_table(1)[2]);
  EXPECT_EQ(c.ref_count(c.block_table(2)[2]), 1);
  c.commit(2, b.data() + 8, 4);
  EXPECT_EQ(c.prefix_query_tokens(), 22);
  EXPECT_EQ(c.prefix_hit_tokens(), 8);
  c.close(1);
  EXPECT_EQ(c.ref_count(c.block_table(2)[0]), 1);
  c.close(2);
  EXPECT_EQ(c.used_blocks(), 0);
}

// Rolling back rejected speculative tokens: blocks past the kept positions go
// back, the block the cut falls in loses its key (its content will change),
// and one another sequence shares is copied first, its kept rows intact.
TEST(PagedKvCache, TruncateGivesBackBlocksAndNeverWritesASharedOne) {
  PagedKvCache c({2}, 16, 4);
  const auto a = iota_tokens(10, 1);
  run_prompt(c, 1, a);
  ASSERT_TRUE(c.reserve(1, 15));
  const auto more = iota_tokens(5, 50);  // positions 10..14: blocks 2 and 3
  c.commit(1, more.data(), 5);
  EXPECT_EQ(c.used_blocks(), 4);
  c.truncate(1, 11);
  EXPECT_EQ(c.n_computed(1), 11);
  EXPECT_EQ(c.used_blocks(), 3);
  EXPECT_EQ(c.tokens(1).back(), 50);
  // Grows again from position 11 with other tokens, keyed by what it holds now.
  ASSERT_TRUE(c.reserve(1, 12));
  const int32_t other = 77;
  c.commit(1, &other, 1);
  auto b = a;
  b.insert(b.end(), {50, 77, 5});
  EXPECT_EQ(c.cached_prefix(b.data(), int64_t(b.size())), 12);
  EXPECT_THROW(c.truncate(1, 13), Error);

  // B shares A's first two blocks; cutting B inside the second copies it.
  int16_t* k = reinterpret_cast<int16_t*>(c.k_block(0, c.block_table(1)[1]));
  for (int i = 0; i < 8; i++) k[i] = int16_t(100 + i);
  std::vector<int32_t> pb(a.begin(), a.begin() + 9);
  EXPECT_EQ(c.open(2, pb.data(), 9), 8);
  const int32_t shared = c.block_table(2)[1];
  EXPECT_EQ(c.ref_count(shared), 2);
  c.truncate(2, 6);
  EXPECT_NE(c.block_table(2)[1], shared);
  EXPECT_EQ(c.ref_count(shared), 1);
  EXPECT_EQ(c.block_table(2)[0], c.block_table(1)[0]);  // wholly kept: still shared
  const int16_t* copy = reinterpret_cast<const int16_t*>(c.k_block(0, c.block_table(2)[1]));
  for (int i = 0; i < 8; i++) EXPECT_EQ(copy[i], 100 + i);
  EXPECT_EQ(c.cached_prefix(a.data(), 10), 8);  // A's blocks keep their keys
  c.close(1);
  c.close(2);
  EXPECT_EQ(c.used_blocks(), 0);

  // A cut into a shared block with no block left for its copy throws before anything changed.
  PagedKvCache full({2}, 3, 4);
  run_prompt(full, 1, iota_tokens(8, 1));
  const auto p9 = iota_tokens(9, 1);
  EXPECT_EQ(full.open(2, p9.data(), 9), 8);
  ASSERT_TRUE(full.reserve(2, 9));
  EXPECT_EQ(full.free_blocks(), 0);
  EXPECT_THROW(full.truncate(2, 6), Error);
  EXPECT_EQ(full.n_computed(2), 8);
  EXPECT_EQ(full.block_table(2).size(), 3u);
  EXPECT_EQ(full.used_blocks(), 3);
  full.close(2);
  full.close(1);
  EXPECT_EQ(full.used_blocks(), 0);
}

TEST(PagedKvCache, AWholeCachedPromptStillComputesItsLastToken) {
  PagedKvCache c({8}, 8, 4);
  const auto a = iota_tokens(8, 1);
  run_prompt(c, 1, a);
  c.close(1);
  // Both blocks are cached, but the last token's logits are needed: the second
  // block is computed again.
  EXPECT_EQ(c.open(2, a.data(), 8), 4);
  const auto one = iota_tokens(5, 1);
  EXPECT_EQ(c.cached_prefix(one.data(), 5), 4);
  EXPECT_EQ(c.cached_prefix(one.data(), 4), 0);
}

TEST(PagedKvCache, EvictsTheLeastRecentlyFreedBlockFirst) {
  PagedKvCache c({4}, 4, 2);
  const std::vector<int32_t> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};
  run_prompt(c, 1, a);
  run_prompt(c, 2, b);
  c.close(1);  // LRU: a[3 4], a[1 2]
  c.close(2);  //      b[7 8], b[5 6]
  EXPECT_EQ(c.free_blocks(), 4);
  EXPECT_EQ(c.cached_free_blocks(), 4);
  auto with = [](std::vector<int32_t> p) {
    p.push_back(0);
    return p;
  };
  EXPECT_EQ(c.cached_prefix(with(a).data(), 5), 4);
  // A hit takes b's blocks out of the LRU; freed again, they go to its back.
  EXPECT_EQ(c.open(3, with(b).data(), 5), 4);
  EXPECT_EQ(c.free_blocks(), 2);
  c.close(3);  // LRU: a[3 4], a[1 2], b[7 8], b[5 6]
  const std::vector<int32_t> d = {9, 10};
  EXPECT_EQ(c.open(4, d.data(), 2), 0);
  ASSERT_TRUE(c.reserve(4, 2));  // evicts a[3 4]
  EXPECT_EQ(c.cached_prefix(with(a).data(), 5), 2);
  ASSERT_TRUE(c.reserve(4, 4));  // evicts a[1 2]
  EXPECT_EQ(c.cached_prefix(with(a).data(), 5), 0);
  EXPECT_EQ(c.cached_prefix(with(b).data(), 5), 4);
  ASSERT_TRUE(c.reserve(4, 6));  // evicts b[7 8]
  EXPECT_EQ(c.cached_prefix(with(b).data(), 5), 2);
  c.close(4);
  EXPECT_EQ(c.used_blocks(), 0);
}

TEST(PagedKvCache, ExhaustionIsReportedNotFatal) {
  PagedKvCache c({4}, 3, 4);
  const auto p = iota_tokens(6, 1);
  c.open(1, p.data(), 6);
  ASSERT_TRUE(c.reserve(1, 6));
  c.open(2, p.data(), 6);  // nothing cached yet: A has not committed
  EXPECT_FALSE(c.can_grow(2, 6));
  EXPECT_FALSE(c.reserve(2, 6));  // needs 2, 1 free: takes nothing
  EXPECT_EQ(c.free_blocks(), 1);
  EXPECT_TRUE(c.reserve(2, 4));
  EXPECT_EQ(c.free_blocks(), 0);
  EXPECT_FALSE(c.reserve(1, 9));
  c.close(1);
  c.close(2);
  EXPECT_EQ(c.free_blocks(), 3);
}

TEST(PagedKvCache, APrefixComputedTwiceAtOnceIsKeyedOnce) {
  PagedKvCache c({4}, 8, 2);
  const auto p = iota_tokens(5, 1);
  c.open(1, p.data(), 5);
  c.open(2, p.data(), 5);
  ASSERT_TRUE(c.reserve(1, 5));
  ASSERT_TRUE(c.reserve(2, 5));
  c.commit(1, p.data(), 5);
  c.commit(2, p.data(), 5);
  c.close(1);
  c.close(2);
  EXPECT_EQ(c.free_blocks(), 8);
  EXPECT_EQ(c.cached_free_blocks(), 2);  // sequence 1's two full blocks
  EXPECT_EQ(c.cached_prefix(p.data(), 5), 4);
}

// Positions computed by different kernels (their kinds) are never shared.
TEST(PagedKvCache, KindsArePartOfTheKey) {
  PagedKvCache c({4}, 8, 2);
  const auto p = iota_tokens(5, 1);
  const uint8_t kinds[5] = {1, 1, 1, 2, 2};
  c.open(1, p.data(), 5, kinds);
  ASSERT_TRUE(c.reserve(1, 5));
  c.commit(1, p.data(), 5, kinds);
  c.close(1);
  const uint8_t all_prompt[5] = {1, 1, 1, 1, 1};
  EXPECT_EQ(c.cached_prefix(p.data(), 5, kinds), 4);
  EXPECT_EQ(c.cached_prefix(p.data(), 5, all_prompt), 2);
  EXPECT_EQ(c.cached_prefix(p.data(), 5), 0);
  EXPECT_EQ(c.open(2, p.data(), 5, kinds), 4);
  EXPECT_EQ(c.tokens(2), std::vector<int32_t>(p.begin(), p.begin() + 4));
}

TEST(PagedKvCache, BadInputIsAnError) {
  test::expect_error([] { PagedKvCache({8}, 0, 16); }, "out of range");
  test::expect_error([] { PagedKvCache({8}, 4, 0); }, "block size");
  test::expect_error([] { PagedKvCache({8}, int64_t(1) << 40, 16); }, "out of range");
  test::expect_error([] { PagedKvCache(std::vector<int64_t>{}, 4, 16); }, "no layers");
  PagedKvCache c({8}, 4, 4);
  const auto p = iota_tokens(4, 1);
  c.open(1, p.data(), 4);
  test::expect_error([&] { c.open(1, p.data(), 4); }, "already open");
  test::expect_error([&] { c.commit(1, p.data(), 1); }, "past its reserved");
  test::expect_error([&] { c.reserve(7, 4); }, "no sequence 7");
  test::expect_error([&] { c.close(7); }, "no sequence 7");
  test::expect_error([&] { c.blocks_needed(1, -1); }, "out of range");
}

}  // namespace
}  // namespace lmpress
