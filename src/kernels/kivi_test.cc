#include "kernels/kivi.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/attention.h"
#include "model/kivi_stage.h"
#include "test_util.h"

namespace lmpress {
namespace {

// Each value comes back within half a step of the group's range, the scale
// and minimum are the f16 roundings of range/levels and the minimum, and a
// constant group is exact; strided input reads a column.
TEST(Kivi, GroupRoundTrip) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (int bits : {4, 2})
    for (int64_t g : {4, 32, 64, 128}) {
      const int64_t stride = 3;
      std::vector<float> x(static_cast<size_t>(g * stride));
      for (auto& v : x) v = nd(rng) * 2 + 0.5f;
      std::vector<uint8_t> q(static_cast<size_t>(kivi_group_bytes(bits, g)));
      kivi_quantize(bits, x.data() + 1, stride, g, q.data());
      float lo = 1e30f, hi = -1e30f;
      for (int64_t i = 0; i < g; i++) lo = std::min(lo, x[size_t(1 + i * stride)]), hi = std::max(hi, x[size_t(1 + i * stride)]);
      uint16_t d, m;
      std::memcpy(&d, q.data(), 2);
      std::memcpy(&m, q.data() + 2, 2);
      EXPECT_EQ(m, f32_to_f16(lo));
      EXPECT_EQ(d, f32_to_f16((hi - lo) / float((1 << bits) - 1)));
      std::vector<float> y(static_cast<size_t>(g));
      kivi_dequantize(bits, q.data(), g, 0, g, y.data());
      const double step = f16_to_f32(d);
      for (int64_t i = 0; i < g; i++)
        EXPECT_LE(std::abs(y[size_t(i)] - x[size_t(1 + i * stride)]), step * 0.5 + 2e-3 * std::abs(lo))
            << bits << " bits, g " << g << ", value " << i;
      std::vector<float> part(5);
      kivi_dequantize(bits, q.data(), g, 1, std::min<int64_t>(5, g - 1), part.data());  // any slice
      for (int64_t i = 0; i < std::min<int64_t>(5, g - 1); i++) EXPECT_EQ(part[size_t(i)], y[size_t(1 + i)]);
      const std::vector<float> flat(static_cast<size_t>(g), 0.75f);
      kivi_quantize(bits, flat.data(), 1, g, q.data());
      kivi_dequantize(bits, q.data(), g, 0, g, y.data());
      for (float v : y) EXPECT_EQ(v, 0.75f);
    }
}

// Rows as the forward pass hands them over: f16 values.
std::vector<float> f16_rows(std::mt19937& rng, int64_t n, int64_t dim, float outlier) {
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(n * dim));
  for (int64_t i = 0; i < n * dim; i++) x[size_t(i)] = f16_to_f32(f32_to_f16(nd(rng) + (i % 7 == 0 ? outlier : 0.0f)));
  return x;
}

// A KIVI cache of one sequence in pages of `page` positions (given out in
// reverse order), fed through a KiviStage.
struct KiviCache {
  KvCacheSpec kv;
  int64_t dim, page;
  std::vector<std::vector<uint8_t>> kp, vp;
  KiviStage st;
  KiviCache(const KvCacheSpec& spec, int64_t d, int64_t pg, int64_t positions, int64_t history = 0)
      : kv(spec), dim(d), page(pg), st(spec, d, history) {
    const int64_t pages = (positions + page - 1) / page;
    for (int64_t i = 0; i < pages; i++) {
      kp.emplace_back(size_t(kv.k_bytes(page, dim)), 0xff);
      vp.emplace_back(size_t(kv.v_bytes(page, dim)), 0xff);
    }
  }
  size_t page_of(int64_t p) const { return kp.size() - 1 - size_t(p / page); }
  uint8_t* key_group(int64_t p) { return kp[page_of(p)].data() + (p % page) / kv.group * kv.key_group_bytes(dim); }
  uint8_t* value_row(int64_t p) { return vp[page_of(p)].data() + (p % page) * kv.row_bytes(kv.v, dim); }
  void quantize(const float* k, const float* v, int64_t n) {
    st.quantize(k, v, n, [&](int64_t p) { return key_group(p); }, [&](int64_t p) { return value_row(p); });
  }
  void append(const float* k, const float* v, int64_t n) {
    quantize(k, v, n);
    st.commit(k, v, n);
  }
  // Position p's channel c as the page holds it.
  float key_at(int64_t p, int64_t c) {
    float y;
    kivi_dequantize(kv_type_info(kv.k).bits, key_group(p) + c * kv.kivi_chunk_bytes(kv.k), kv.group, p % kv.group, 1, &y);
    return y;
  }
  float value_at(int64_t p, int64_t c) {
    float y;
    kivi_dequantize(kv_type_info(kv.v).bits, value_row(p) + c / kv.group * kv.kivi_chunk_bytes(kv.v), kv.group,
                    c % kv.group, 1, &y);
    return y;
  }
};

// The stage keeps f16 exactly the rows a later token reads in f16 (from the
// last position's boundary on: the residual window and the incomplete
// group), the pages hold every group before it, and how the positions were
// batched changes no byte; truncation within `history` works, past it throws.
TEST(Kivi, StageFollowsThePositionRule) {
  const int64_t dim = 64, G = 16, R = 24, N = 150;
  KvCacheSpec kv(KvType::KIVI4);
  kv.group = G;
  kv.residual = R;
  std::mt19937 rng(2);
  const auto K = f16_rows(rng, N, dim, 3), V = f16_rows(rng, N, dim, 0);
  KiviCache one(kv, dim, 32, N), batched(kv, dim, 32, N);
  for (int64_t p = 0; p < N; p++) {
    one.append(&K[size_t(p * dim)], &V[size_t(p * dim)], 1);
    EXPECT_EQ(one.st.start(), kv.kivi_boundary(p));
    const int64_t staged = p + 1 - one.st.start();
    if (p + 1 >= R) { EXPECT_GE(staged, R); }
    EXPECT_LT(staged, R + G);
  }
  std::uniform_int_distribution<int64_t> len(1, 40);
  for (int64_t p = 0; p < N;) {
    const int64_t n = std::min(len(rng), N - p);
    batched.append(&K[size_t(p * dim)], &V[size_t(p * dim)], n);
    p += n;
  }
  EXPECT_EQ(one.kp, batched.kp);
  EXPECT_EQ(one.vp, batched.vp);
  ASSERT_EQ(one.st.start(), batched.st.start());
  for (int64_t p = one.st.start(); p < N; p++)
    for (int64_t c = 0; c < dim; c++) {
      ASSERT_EQ(one.st.k()[(p - one.st.start()) * dim + c], f32_to_f16(K[size_t(p * dim + c)]));
      ASSERT_EQ(one.st.v()[(p - one.st.start()) * dim + c], f32_to_f16(V[size_t(p * dim + c)]));
    }
  for (int64_t p = 0; p < one.st.start(); p++)
    for (int64_t c = 0; c < dim; c++) {
      ASSERT_NEAR(one.key_at(p, c), K[size_t(p * dim + c)], 0.6) << "position " << p;
      ASSERT_NEAR(one.value_at(p, c), V[size_t(p * dim + c)], 0.6) << "position " << p;
    }
  test::expect_error([&] { one.st.truncate(N - 20); }, "only 0 positions can be taken back");
  // With a history of 8 positions, a rollback of 8 then the same positions
  // again leaves the cache as if nothing had happened.
  KiviCache hist(kv, dim, 32, N, 8);
  hist.append(K.data(), V.data(), N);
  hist.st.truncate(N - 8);
  EXPECT_EQ(hist.st.size(), N - 8);
  hist.append(&K[size_t((N - 8) * dim)], &V[size_t((N - 8) * dim)], 8);
  EXPECT_EQ(hist.kp, one.kp);
  EXPECT_EQ(hist.vp, one.vp);
}

// Attention over a KIVI cache (quantized groups in pages, staged f16 rows,
// the batch's own rows): the kernel and the reference against the textbook
// formula, each query reading the positions before its own boundary from the
// pages (decoded here from the group layout directly) and the rest as given.
TEST(Kivi, AttentionMatchesTextbookFormula) {
  struct Shape {
    int64_t heads, kv_heads, hd, n, pos0, group, residual, page;
  };
  const Shape shapes[] = {{4, 2, 64, 1, 150, 32, 0, 64},  {8, 2, 64, 19, 70, 16, 8, 32}, {6, 3, 48, 5, 90, 48, 20, 96},
                          {4, 4, 128, 1, 300, 64, 64, 128}, {2, 1, 64, 40, 0, 64, 0, 64}, {4, 1, 64, 70, 10, 16, 4, 16}};
  test::for_kernel_targets({0}, [&](int64_t) {
    for (KvType t : {KvType::KIVI4, KvType::KIVI2})
      for (const Shape& sh : shapes) {
        SCOPED_TRACE(testing::Message() << kv_type_name(t) << " hd " << sh.hd << " G " << sh.group << " R "
                                        << sh.residual << " n " << sh.n);
        KvCacheSpec kv(t);
        kv.group = sh.group;
        kv.residual = sh.residual;
        const int64_t D = sh.kv_heads * sh.hd, P = sh.pos0 + sh.n;
        std::mt19937 rng(unsigned(sh.hd + sh.n));
        const auto K = f16_rows(rng, P, D, 4), V = f16_rows(rng, P, D, 0);
        KiviCache c(kv, D, sh.page, P);
        for (int64_t p = 0; p < sh.pos0; p += 7) c.append(&K[size_t(p * D)], &V[size_t(p * D)], std::min<int64_t>(7, sh.pos0 - p));
        const float* kf = &K[size_t(sh.pos0 * D)];
        const float* vf = &V[size_t(sh.pos0 * D)];
        c.quantize(kf, vf, sh.n);
        std::vector<const void*> kptr, vptr;
        for (int64_t i = 0; i < int64_t(c.kp.size()); i++) {
          kptr.push_back(c.kp[c.page_of(i * sh.page)].data());
          vptr.push_back(c.vp[c.page_of(i * sh.page)].data());
        }
        AttentionShape s{sh.heads, sh.kv_heads, sh.hd, sh.heads * sh.hd, D, sh.heads * sh.hd};
        std::normal_distribution<float> nd;
        std::vector<float> q(size_t(sh.n * s.q_stride));
        for (auto& x : q) x = nd(rng);
        std::vector<float> got(q.size()), ref(q.size());
        PagedQuery pq;
        pq.q = q.data();
        pq.n = sh.n;
        pq.pos0 = sh.pos0;
        pq.cache = {kptr.data(), vptr.data(), sh.page, c.st.k(), c.st.v(), c.st.start(), kf, vf, c.st.size()};
        pq.out = got.data();
        attention_paged(s, kv, &pq, 1, 0.125f);
        pq.out = ref.data();
        attention_paged_ref(s, kv, &pq, 1, 0.125f);
        const int64_t group = sh.heads / sh.kv_heads;
        for (int64_t tk = 0; tk < sh.n; tk++) {
          const int64_t boundary = kv.kivi_boundary(sh.pos0 + tk);
          for (int64_t h = 0; h < sh.heads; h++) {
            const int64_t kvh = h / group;
            std::vector<double> sc;
            double mx = -1e300;
            for (int64_t j = 0; j <= sh.pos0 + tk; j++) {
              double d = 0;
              for (int64_t e = 0; e < sh.hd; e++) {
                const int64_t ch = kvh * sh.hd + e;
                d += double(q[size_t(tk * s.q_stride + h * sh.hd + e)]) * (j < boundary ? c.key_at(j, ch) : K[size_t(j * D + ch)]);
              }
              sc.push_back(d * 0.125);
              mx = std::max(mx, d * 0.125);
            }
            double sum = 0;
            std::vector<double> o(static_cast<size_t>(sh.hd));
            for (size_t j = 0; j < sc.size(); j++) {
              const double p = std::exp(sc[j] - mx);
              sum += p;
              for (int64_t e = 0; e < sh.hd; e++) {
                const int64_t ch = kvh * sh.hd + e;
                o[size_t(e)] += p * (int64_t(j) < boundary ? c.value_at(int64_t(j), ch) : V[j * size_t(D) + size_t(ch)]);
              }
            }
            for (int64_t e = 0; e < sh.hd; e++) {
              const size_t at = size_t(tk * s.out_stride + h * sh.hd + e);
              ASSERT_NEAR(got[at], o[size_t(e)] / sum, 2e-5) << "token " << tk << " head " << h << " dim " << e;
              ASSERT_NEAR(ref[at], o[size_t(e)] / sum, 2e-5) << "ref token " << tk << " head " << h << " dim " << e;
            }
          }
        }
      }
  });
}

TEST(Kivi, SpecChecks) {
  KvCacheSpec kv(KvType::KIVI4);
  EXPECT_NO_THROW(check_kv_spec(kv, 64));
  EXPECT_DOUBLE_EQ(kv.bytes_per_position(128), 2 * 128 * 4.5 / 8);  // 4.5 bits a value at G = 64
  KvCacheSpec k2(KvType::KIVI2);
  EXPECT_DOUBLE_EQ(k2.bytes_per_position(128), 2 * 128 * 2.5 / 8);
  test::expect_error([&] { check_kv_spec(kv, 48); }, "--kv-group 64: KIVI's group must be a multiple of 4 up to 256 that divides the model's head size of 48");
  kv.group = 0;
  test::expect_error([&] { check_kv_spec(kv, 64); }, "--kv-group 0");
  kv.group = 32;
  kv.residual = -1;
  test::expect_error([&] { check_kv_spec(kv, 64); }, "--kv-residual -1");
  test::expect_error([] { check_kv_spec(KvCacheSpec(KvType::KIVI4, KvType::Q8_0), 64); },
                     "--cache-type-k kivi4 with --cache-type-v q8_0: a KIVI cache is KIVI for both K and V");
}

}  // namespace
}  // namespace lmpress
