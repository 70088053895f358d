#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/blocks.h"
#include "test_util.h"

namespace lmpress {
namespace {

struct Case {
  AttentionShape s;
  KvCacheSpec spec;
  int64_t n, pos0;
  std::vector<float> q;
  std::vector<uint8_t> k, v;  // rows of spec.k, spec.v
};

// Random queries and a cache of the spec's types for positions 0..pos0+n-1;
// the strides carry padding (a block of NaN bytes in the cache) so that a
// kernel reading past a row would be caught.
Case make_case(KvCacheSpec spec, int64_t heads, int64_t kv_heads, int64_t hd, int64_t n, int64_t pos0, float qscale,
               unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  Case c;
  const int64_t block = std::max(kv_type_info(spec.k).block, kv_type_info(spec.v).block);
  c.s = {heads, kv_heads, hd, heads * hd + 3, kv_heads * hd + (block > 1 ? block : 5), heads * hd + 7};
  c.spec = spec;
  c.n = n;
  c.pos0 = pos0;
  c.q.resize(size_t(n * c.s.q_stride));
  for (auto& x : c.q) x = nd(rng) * qscale;
  c.k = test::random_cache(spec.k, pos0 + n, c.s.kv_stride, kv_heads * hd, seed + 1);
  c.v = test::random_cache(spec.v, pos0 + n, c.s.kv_stride, kv_heads * hd, seed + 2);
  return c;
}

// Independent of both kernels: one (token, head) by the textbook formula on
// the dequantized cache, everything in double; all hd outputs.
std::vector<double> naive(const Case& c, int64_t t, int64_t h, float scale) {
  const int64_t hd = c.s.head_dim, kvh = h / (c.s.n_heads / c.s.n_kv_heads);
  std::vector<double> sc;
  double mx = -1e300;
  const int64_t from = c.s.window > 0 ? std::max<int64_t>(0, c.pos0 + t - c.s.window + 1) : 0;
  for (int64_t j = from; j <= c.pos0 + t; j++) {
    const auto k = test::cache_values(c.spec.k, c.k, c.s.kv_stride, j, kvh * hd, hd);
    double d = 0;
    for (int64_t e = 0; e < hd; e++) d += double(c.q[size_t(t * c.s.q_stride + h * hd + e)]) * k[size_t(e)];
    d *= scale;
    if (c.s.softcap > 0) d = c.s.softcap * std::tanh(d / c.s.softcap);
    sc.push_back(d);
    mx = std::max(mx, d);
  }
  if (c.s.sinks) mx = std::max(mx, double(c.s.sinks[h]));
  double sum = c.s.sinks ? std::exp(double(c.s.sinks[h]) - mx) : 0.0;  // a term with no value
  std::vector<double> o(static_cast<size_t>(hd));
  for (size_t j = 0; j < sc.size(); j++) {
    const double p = std::exp(sc[j] - mx);
    sum += p;
    const auto v = test::cache_values(c.spec.v, c.v, c.s.kv_stride, from + int64_t(j), kvh * hd, hd);
    for (int64_t i = 0; i < hd; i++) o[size_t(i)] += p * v[size_t(i)];
  }
  for (auto& x : o) x /= sum;
  return o;
}

// The reference and the dispatched kernel against the textbook formula, for
// every cache type (and K and V of different types), on MHA and GQA (groups of 3 and 8), head sizes 8/64/72/128
// (those the type's block divides), one decode token after a long cache
// (several key blocks, a partial last one), prompt batches with and without
// earlier context, and sharp (large-logit) softmaxes.
TEST(Attention, MatchesTextbookFormula) {
  struct Shape {
    int64_t heads, kv_heads, hd, n, pos0;
    float qscale;
  };
  const Shape shapes[] = {{4, 4, 64, 1, 0, 1},  {9, 3, 64, 1, 150, 1}, {32, 4, 64, 37, 0, 1}, {6, 2, 72, 21, 70, 1},
                          {2, 1, 8, 70, 5, 1}, {8, 8, 64, 19, 64, 8}, {4, 2, 128, 5, 90, 2}};
  test::for_kernel_targets({0}, [&](int64_t) {
    std::vector<KvCacheSpec> specs{KvCacheSpec(KvType::Q8_0, KvType::Q4_0), KvCacheSpec(KvType::F16, KvType::Q5_1)};
    for (const std::string& name : kv_type_name_list())
      if (!kv_is_kivi(parse_kv_type(name))) specs.emplace_back(parse_kv_type(name));  // KIVI: kivi_test.cc
    for (const KvCacheSpec& spec : specs) {
      SCOPED_TRACE(kv_spec_name(spec) + " cache");
      for (const Shape& sh : shapes) {
        if (sh.hd % kv_type_info(spec.k).block != 0 || sh.hd % kv_type_info(spec.v).block != 0) continue;
        const Case c =
            make_case(spec, sh.heads, sh.kv_heads, sh.hd, sh.n, sh.pos0, sh.qscale, unsigned(sh.heads * 100 + sh.n));
        const float scale = 1.0f / std::sqrt(float(sh.hd));
        // Sharp softmaxes turn the kernels' float scores' rounding into more.
        const double tol = sh.qscale > 1 ? 5e-5 : 1e-5;
        std::vector<float> ref(size_t(sh.n * c.s.out_stride), -7.0f), got = ref;
        attention_ref(c.s, spec, c.q.data(), c.n, c.pos0, c.k.data(), c.v.data(), scale, ref.data());
        attention(c.s, spec, c.q.data(), c.n, c.pos0, c.k.data(), c.v.data(), scale, got.data());
        for (int64_t t = 0; t < sh.n; t++) {
          for (int64_t h = 0; h < sh.heads; h++) {
            const auto want = naive(c, t, h, scale);
            for (int64_t i = 0; i < sh.hd; i++) {
              const size_t at = size_t(t * c.s.out_stride + h * sh.hd + i);
              EXPECT_NEAR(ref[at], want[size_t(i)], tol) << "ref t=" << t << " h=" << h << " i=" << i;
              EXPECT_NEAR(got[at], want[size_t(i)], tol) << "t=" << t << " h=" << h << " i=" << i << " heads=" << sh.heads;
            }
          }
          for (int64_t pad = sh.heads * sh.hd; pad < c.s.out_stride; pad++)
            EXPECT_EQ(got[size_t(t * c.s.out_stride + pad)], -7.0f);  // padding untouched
        }
      }
    }
  });
}

// Sliding windows (Mistral, Gemma's local layers), Gemma 2's soft-capped
// scores and gpt-oss's sinks (alone and with windows): windows of one key,
// shorter than a key block, across blocks, and wider than the context, on
// decode steps and prompt batches that start before and after the window fills.
TEST(Attention, SlidingWindowSoftcapAndSinksMatchTextbookFormula) {
  struct Shape {
    int64_t heads, kv_heads, hd, n, pos0;
  };
  const Shape shapes[] = {{4, 2, 64, 1, 150}, {8, 2, 64, 90, 0}, {6, 3, 72, 40, 100}, {4, 4, 128, 3, 70}};
  test::for_kernel_targets({0}, [&](int64_t) {
    for (const KvCacheSpec spec : {KvCacheSpec(KvType::F16), KvCacheSpec(KvType::F32), KvCacheSpec(KvType::Q8_0)})
      for (const Shape& sh : shapes)
        for (const int64_t window : {0, 1, 5, 64, 70, 1000})
          for (const float softcap : {0.0f, 3.0f})
          for (const bool sinks : {false, true}) {
            if (window == 0 && softcap == 0 && !sinks) continue;  // MatchesTextbookFormula
            if (sh.hd % kv_type_info(spec.k).block != 0) continue;
            SCOPED_TRACE(testing::Message() << kv_spec_name(spec) << " heads " << sh.heads << " n " << sh.n << " pos0 "
                                            << sh.pos0 << " window " << window << " softcap " << softcap << " sinks "
                                            << sinks);
            Case c = make_case(spec, sh.heads, sh.kv_heads, sh.hd, sh.n, sh.pos0, 2.0f, unsigned(sh.n + window));
            c.s.window = window;
            c.s.softcap = softcap;
            // From negligible to dominant (a window of one key against a sink of 8).
            std::vector<float> sink(size_t(sh.heads));
            for (int64_t h = 0; h < sh.heads; h++) sink[size_t(h)] = -4.0f + 12.0f * float(h) / float(sh.heads);
            if (sinks) c.s.sinks = sink.data();
            const float scale = 1.0f / std::sqrt(float(sh.hd));
            std::vector<float> ref(size_t(sh.n * c.s.out_stride), -7.0f), got = ref;
            attention_ref(c.s, spec, c.q.data(), c.n, c.pos0, c.k.data(), c.v.data(), scale, ref.data());
            attention(c.s, spec, c.q.data(), c.n, c.pos0, c.k.data(), c.v.data(), scale, got.data());
            for (int64_t t = 0; t < sh.n; t++)
              for (int64_t h = 0; h < sh.heads; h++) {
                const auto want = naive(c, t, h, scale);
                for (int64_t i = 0; i < sh.hd; i++) {
                  const size_t at = size_t(t * c.s.out_stride + h * sh.hd + i);
                  ASSERT_NEAR(ref[at], want[size_t(i)], 5e-5) << "ref t=" << t << " h=" << h << " i=" << i;
                  ASSERT_NEAR(got[at], want[size_t(i)], 5e-5) << "t=" << t << " h=" << h << " i=" << i;
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
  for (const std::string& n : kv_type_name_list()) EXPECT_EQ(kv_type_name(parse_kv_type(n)), n);
  EXPECT_EQ(parse_kv_type("q4_1"), KvType::Q4_1);
  test::expect_error([] { parse_kv_type("q2_k"); }, "unknown KV-cache type 'q2_k' (one of f32, f16, bf16, q8_0");
  // Bytes per row follow ggml's block sizes: 64 values of q8_0 = 2 × 34 bytes.
  EXPECT_EQ(kv_row_bytes(KvType::Q8_0, 64), 68);
  EXPECT_EQ(kv_row_bytes(KvType::Q4_0, 64), 36);
  EXPECT_EQ(kv_row_bytes(KvType::Q5_1, 64), 48);
  EXPECT_EQ(kv_row_bytes(KvType::BF16, 64), 128);
  test::expect_error([] { check_kv_spec(KvCacheSpec(KvType::F16, KvType::Q4_0), 48); },
                     "--cache-type-v q4_0: its blocks of 32 values do not divide the model's head size of 48");
  EXPECT_NO_THROW(check_kv_spec(KvCacheSpec(KvType::Q8_0), 64));
}

// kv_row_to_f32 (AVX2 for the hot types) gives blocks.cc's scalar
// dequantizers' floats bit for bit, on every kernel target.
TEST(Attention, CacheRowsDequantizeAsTheScalarReference) {
  test::for_kernel_targets({0}, [](int64_t) {
    for (const std::string& name : kv_type_name_list()) {
      const KvType t = parse_kv_type(name);
      if (!kv_is_quantized(t) || kv_is_kivi(t)) continue;
      const auto row = test::random_cache(t, 1, 256, 256, 9);
      std::vector<float> got(256), want(256);
      kv_row_to_f32(t, row.data(), 256, got.data());
      ASSERT_TRUE(dequantize_row(kv_type_info(t).dtype, row.data(), 256, want.data()));
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), sizeof(float) * 256)) << name;
    }
  });
}

// llama.cpp's rotation choice: quantized types with heads a multiple of 64;
// keys by the largest power of two dividing the head, values by 64.
TEST(Attention, RotationSizes) {
  const KvCacheSpec q(KvType::Q4_0), f(KvType::F16), qf(KvType::Q8_0, KvType::F16);
  EXPECT_EQ(kv_rotation_k(q, 128), 128);
  EXPECT_EQ(kv_rotation_v(q, 128), 64);
  EXPECT_EQ(kv_rotation_k(q, 192), 64);
  EXPECT_EQ(kv_rotation_k(q, 96), 0);  // not a multiple of 64
  EXPECT_EQ(kv_rotation_k(f, 128), 0);
  EXPECT_EQ(kv_rotation_k(qf, 64), 64);
  EXPECT_EQ(kv_rotation_v(qf, 64), 0);
  KvCacheSpec on(KvType::F16);
  on.rotate = KvRotate::On;
  EXPECT_EQ(kv_rotation_k(on, 48), 16);
  EXPECT_EQ(kv_rotation_v(on, 128), 64);
  KvCacheSpec off(KvType::Q4_0);
  off.rotate = KvRotate::Off;
  EXPECT_EQ(kv_rotation_k(off, 128), 0);
}

}  // namespace
}  // namespace lmpress
