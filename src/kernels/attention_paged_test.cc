#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/attention.h"
#include "test_util.h"

namespace lmpress {
namespace {

// One sequence: queries, its cache as one contiguous buffer, and the pages
// of a shared pool its positions were scattered to.
struct Seq {
  int64_t n, pos0;
  std::vector<float> q;
  std::vector<uint8_t> k, v;
  std::vector<int64_t> pages;  // pool page of each page_size positions
};

// Several sequences over one pool of pages given out in random order, for
// every cache type whose block divides the head; the strides carry padding so
// that reading past a row would be caught.
TEST(PagedAttention, MatchesContiguousAttentionOverRandomBlockTables) {
  struct Shape {
    int64_t heads, kv_heads, hd, page;
  };
  const Shape shapes[] = {{6, 2, 48, 16}, {4, 4, 64, 5}, {8, 1, 8, 1}, {9, 3, 64, 32}, {4, 2, 128, 16}};
  const int64_t lens[][2] = {{1, 150}, {37, 0}, {21, 70}, {1, 0}};  // {n, pos0}
  test::for_kernel_targets({0}, [&](int64_t) {
    for (const Shape& sh : shapes) {
      SCOPED_TRACE(testing::Message() << "heads " << sh.heads << "/" << sh.kv_heads << " hd " << sh.hd << " page "
                                      << sh.page);
      std::mt19937 rng(unsigned(sh.heads * 31 + sh.page));
      std::normal_distribution<float> nd;
      std::vector<Seq> seqs;
      int64_t n_pages = 0;
      for (const auto& l : lens) {
        Seq q;
        q.n = l[0];
        q.pos0 = l[1];
        n_pages += (q.pos0 + q.n + sh.page - 1) / sh.page;
        seqs.push_back(std::move(q));
      }
      // A random block table per sequence: pool pages in shuffled order.
      std::vector<int64_t> order(static_cast<size_t>(n_pages));
      for (int64_t i = 0; i < n_pages; i++) order[size_t(i)] = i;
      std::shuffle(order.begin(), order.end(), rng);
      size_t next = 0;
      for (auto& q : seqs)
        for (int64_t p = 0; p < (q.pos0 + q.n + sh.page - 1) / sh.page; p++) q.pages.push_back(order[next++]);

      const float scale = 1.0f / std::sqrt(float(sh.hd));
      for (const int64_t window : {int64_t(0), int64_t(37)})
      for (const std::string& name : kv_type_name_list()) {
        const KvType kv = parse_kv_type(name);
        const int64_t block = kv_type_info(kv).block;
        if (kv_is_kivi(kv) || sh.hd % block != 0) continue;  // KIVI: kivi_test.cc
        SCOPED_TRACE(name + " cache, window " + std::to_string(window));
        AttentionShape s{sh.heads, sh.kv_heads, sh.hd, sh.heads * sh.hd + 3, sh.kv_heads * sh.hd + (block > 1 ? block : 5),
                         sh.heads * sh.hd + 7};
        s.window = window;
        const int64_t row = kv_row_bytes(kv, s.kv_stride), page_bytes = sh.page * row;
        for (size_t i = 0; i < seqs.size(); i++) {
          Seq& q = seqs[i];
          q.q.resize(size_t(q.n * s.q_stride));
          for (auto& x : q.q) x = nd(rng);
          const int64_t P = q.pos0 + q.n;
          q.k = test::random_cache(kv, P, s.kv_stride, sh.kv_heads * sh.hd, unsigned(rng()));
          q.v = test::random_cache(kv, P, s.kv_stride, sh.kv_heads * sh.hd, unsigned(rng()));
        }
        std::vector<uint8_t> kpool(size_t(n_pages * page_bytes), 0xff), vpool = kpool;  // 0xff: NaN where unwritten
        std::vector<std::vector<const void*>> kp(seqs.size()), vp(seqs.size());
        std::vector<PagedQuery> pq(seqs.size());
        std::vector<std::vector<float>> got(seqs.size()), got_ref(seqs.size());
        for (size_t i = 0; i < seqs.size(); i++) {
          const Seq& q = seqs[i];
          for (int64_t j = 0; j < q.pos0 + q.n; j++) {
            const int64_t at = q.pages[size_t(j / sh.page)] * page_bytes + (j % sh.page) * row;
            std::memcpy(&kpool[size_t(at)], q.k.data() + j * row, size_t(row));
            std::memcpy(&vpool[size_t(at)], q.v.data() + j * row, size_t(row));
          }
          for (int64_t p : q.pages) {
            kp[i].push_back(&kpool[size_t(p * page_bytes)]);
            vp[i].push_back(&vpool[size_t(p * page_bytes)]);
          }
          got[i].assign(size_t(q.n * s.out_stride), -7.0f);
          got_ref[i] = got[i];
          pq[i].q = q.q.data();
          pq[i].out = got[i].data();
          pq[i].n = q.n;
          pq[i].pos0 = q.pos0;
          pq[i].cache = {kp[i].data(), vp[i].data(), sh.page};
        }
        attention_paged(s, kv, pq.data(), int64_t(pq.size()), scale);
        for (size_t i = 0; i < seqs.size(); i++) pq[i].out = got_ref[i].data();
        attention_paged_ref(s, kv, pq.data(), int64_t(pq.size()), scale);

        for (size_t i = 0; i < seqs.size(); i++) {
          const Seq& q = seqs[i];
          const void* k = q.k.data();
          const void* v = q.v.data();
          std::vector<float> want(got[i].size(), -7.0f), want_ref = want;
          attention(s, kv, q.q.data(), q.n, q.pos0, k, v, scale, want.data());
          attention_ref(s, kv, q.q.data(), q.n, q.pos0, k, v, scale, want_ref.data());
          // Bit for bit: the engine's logits equal InferenceState's only if so.
          EXPECT_EQ(0, std::memcmp(got[i].data(), want.data(), want.size() * sizeof(float))) << "sequence " << i;
          EXPECT_EQ(0, std::memcmp(got_ref[i].data(), want_ref.data(), want.size() * sizeof(float)))
              << "reference, sequence " << i;
          for (size_t e = 0; e < want.size(); e++) ASSERT_NEAR(got[i][e], want_ref[e], 1e-5) << "sequence " << i;
        }
      }
    }
  });
}

}  // namespace
}  // namespace lmpress
