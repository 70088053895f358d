#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "test_util.h"

namespace lmpress {
namespace {

struct Case {
  AttentionShape s;
  int64_t n, pos0;
  std::vector<float> q;
  std::vector<uint16_t> k, v;  // f16
  std::vector<float> kf, vf;   // the same values as f32
};

// Random queries and an f16 cache for positions 0..pos0+n-1; the strides
// carry padding so that a kernel reading past a row would be caught.
Case make_case(int64_t heads, int64_t kv_heads, int64_t hd, int64_t n, int64_t pos0, float qscale, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  Case c;
  c.s = {heads, kv_heads, hd, heads * hd + 3, kv_heads * hd + 5, heads * hd + 7};
  c.n = n;
  c.pos0 = pos0;
  c.q.resize(size_t(n * c.s.q_stride));
  for (auto& x : c.q) x = nd(rng) * qscale;
  c.k.resize(size_t((pos0 + n) * c.s.kv_stride));
  c.v.resize(c.k.size());
  for (auto& x : c.k) x = f32_to_f16(nd(rng));
  for (auto& x : c.v) x = f32_to_f16(nd(rng));
  for (uint16_t h : c.k) c.kf.push_back(f16_to_f32(h));
  for (uint16_t h : c.v) c.vf.push_back(f16_to_f32(h));
  return c;
}

// Independent of both kernels: one (token, head) by the textbook formula,
// everything in double.
double naive(const Case& c, int64_t t, int64_t h, int64_t i, float scale) {
  const int64_t hd = c.s.head_dim, kvh = h / (c.s.n_heads / c.s.n_kv_heads);
  std::vector<double> sc;
  double mx = -1e300;
  for (int64_t j = 0; j <= c.pos0 + t; j++) {
    double d = 0;
    for (int64_t e = 0; e < hd; e++)
      d += double(c.q[size_t(t * c.s.q_stride + h * hd + e)]) * f16_to_f32(c.k[size_t(j * c.s.kv_stride + kvh * hd + e)]);
    sc.push_back(d * scale);
    mx = std::max(mx, d * scale);
  }
  double sum = 0, o = 0;
  for (size_t j = 0; j < sc.size(); j++) {
    const double p = std::exp(sc[j] - mx);
    sum += p;
    o += p * f16_to_f32(c.v[j * size_t(c.s.kv_stride) + size_t(kvh * hd + i)]);
  }
  return o / sum;
}

// The reference and the dispatched kernel against the textbook formula, on
// MHA and GQA (groups of 3 and 8), head sizes 8/64/72, one decode token after
// a long cache (several key blocks, a partial last one), prompt batches with
// and without earlier context, and sharp (large-logit) softmaxes.
TEST(Attention, MatchesTextbookFormula) {
  struct Shape {
    int64_t heads, kv_heads, hd, n, pos0;
    float qscale;
  };
  const Shape shapes[] = {{4, 4, 64, 1, 0, 1}, {9, 3, 64, 1, 150, 1}, {32, 4, 64, 37, 0, 1}, {6, 2, 72, 21, 70, 1},
                          {2, 1, 8, 70, 5, 1}, {8, 8, 64, 19, 64, 8}};
  test::for_kernel_targets({0}, [&](int64_t) {
    for (const Shape& sh : shapes) {
      const Case c = make_case(sh.heads, sh.kv_heads, sh.hd, sh.n, sh.pos0, sh.qscale, unsigned(sh.heads * 100 + sh.n));
      const float scale = 1.0f / std::sqrt(float(sh.hd));
      for (KvType kv : {KvType::F16, KvType::F32}) {
        SCOPED_TRACE(kv == KvType::F16 ? "f16 cache" : "f32 cache");
        const void* k = kv == KvType::F16 ? static_cast<const void*>(c.k.data()) : c.kf.data();
        const void* v = kv == KvType::F16 ? static_cast<const void*>(c.v.data()) : c.vf.data();
        std::vector<float> ref(size_t(sh.n * c.s.out_stride), -7.0f), got = ref;
        attention_ref(c.s, kv, c.q.data(), c.n, c.pos0, k, v, scale, ref.data());
        attention(c.s, kv, c.q.data(), c.n, c.pos0, k, v, scale, got.data());
        for (int64_t t = 0; t < sh.n; t++) {
          for (int64_t h = 0; h < sh.heads; h++)
            for (int64_t i = 0; i < sh.hd; i++) {
              const size_t at = size_t(t * c.s.out_stride + h * sh.hd + i);
              const double want = naive(c, t, h, i, scale);
              EXPECT_NEAR(ref[at], want, 1e-5) << "ref t=" << t << " h=" << h << " i=" << i;
              EXPECT_NEAR(got[at], want, 1e-5) << "t=" << t << " h=" << h << " i=" << i << " heads=" << sh.heads;
            }
          for (int64_t pad = sh.heads * sh.hd; pad < c.s.out_stride; pad++)
            EXPECT_EQ(got[size_t(t * c.s.out_stride + pad)], -7.0f);  // padding untouched
        }
      }
    }
  });
}

// exp_f32 against std::exp over the range the online softmax uses (x ≤ 0,
// down to underflow), plus its edges: −inf and below −87.4 give 0.
TEST(Attention, ExpMatchesStdExp) {
  test::for_kernel_targets({0}, [](int64_t) {
    std::vector<float> x;
    for (float v = -87.3f; v <= 5.0f; v += 0.0137f) x.push_back(v);
    x.push_back(0.0f);
    x.push_back(-std::numeric_limits<float>::infinity());
    x.push_back(-100.0f);
    std::vector<float> y(x.size());
    exp_f32(x.data(), int64_t(x.size()), y.data());
    for (size_t i = 0; i + 2 < x.size(); i++)
      EXPECT_NEAR(y[i], std::exp(x[i]), 4e-7 * std::exp(double(x[i]))) << "x=" << x[i];
    EXPECT_EQ(y[x.size() - 2], 0.0f);
    EXPECT_EQ(y[x.size() - 1], 0.0f);
  });
}

TEST(Attention, CacheTypeNames) {
  EXPECT_EQ(parse_kv_type("f16"), KvType::F16);
  EXPECT_EQ(parse_kv_type("f32"), KvType::F32);
  EXPECT_THROW(parse_kv_type("q8_0"), Error);
}

}  // namespace
}  // namespace lmpress
