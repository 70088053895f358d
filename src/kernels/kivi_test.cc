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

// The stage: the newest positions stay f16 (exactly the f16 rounding of what
// was appended), the rest are quantized group by group in the pages,
// residual ≤ staged < residual + G; truncation inside the stage works and
// below it throws.
TEST(Kivi, StageKeepsTheResidualWindowInF16) {
  const int64_t dim = 64, G = 16, R = 24, N = 150;
  KvCacheSpec kv(KvType::KIVI4);
  kv.group = G;
  kv.residual = R;
  KiviStage st(kv, dim);
  std::vector<uint8_t> kpage(size_t(kv.k_bytes(kv.round_positions(N), dim)), 0xff);
  std::vector<uint8_t> vpage(size_t(kv.v_bytes(kv.round_positions(N), dim)), 0xff);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  std::vector<std::vector<float>> ks, vs;
  for (int64_t p = 0; p < N; p++) {
    std::vector<float> k(dim), v(dim);
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    st.append(k.data(), v.data(), [&](int64_t pos) { return kpage.data() + pos / G * kv.key_group_bytes(dim); },
              [&](int64_t pos) { return vpage.data() + pos * kv.row_bytes(kv.v, dim); });
    ks.push_back(k);
    vs.push_back(v);
    const int64_t staged = st.size() - st.quantized();
    ASSERT_EQ(st.size(), p + 1);
    if (p + 1 >= R) {
      EXPECT_GE(staged, R);
      EXPECT_LT(staged, R + G);
    }
    EXPECT_EQ(st.quantized() % G, 0);
  }
  for (int64_t p = st.quantized(); p < N; p++)
    for (int64_t c = 0; c < dim; c++) {
      ASSERT_EQ(st.k()[(p - st.quantized()) * dim + c], f32_to_f16(ks[size_t(p)][size_t(c)]));
      ASSERT_EQ(st.v()[(p - st.quantized()) * dim + c], f32_to_f16(vs[size_t(p)][size_t(c)]));
    }
  // Quantized keys: channel c of group g holds G positions, each within a step.
  for (int64_t p = 0; p < st.quantized(); p++)
    for (int64_t c = 0; c < dim; c++) {
      float y;
      kivi_dequantize(4, kpage.data() + p / G * kv.key_group_bytes(dim) + c * kv.kivi_chunk_bytes(kv.k), G, p % G, 1, &y);
      ASSERT_NEAR(y, ks[size_t(p)][size_t(c)], 0.6) << "position " << p;
    }
  const int64_t q = st.quantized();
  st.truncate(q + 3);
  EXPECT_EQ(st.size(), q + 3);
  test::expect_error([&] { st.truncate(q - 1); }, "cannot be taken back");
}

// Attention over a KIVI cache (quantized groups in pages, newest rows staged
// in f16): the kernel and the reference against the textbook formula on the
// values the cache holds, decoded here from the group layout directly.
TEST(Kivi, AttentionMatchesTextbookFormula) {
  struct Shape {
    int64_t heads, kv_heads, hd, n, pos0, group, residual, page;
  };
  const Shape shapes[] = {{4, 2, 64, 1, 150, 32, 0, 64},  {8, 2, 64, 19, 70, 16, 8, 32}, {6, 3, 48, 5, 90, 48, 20, 96},
                          {4, 4, 128, 1, 300, 64, 64, 128}, {2, 1, 64, 40, 0, 64, 0, 64}};
  test::for_kernel_targets({0}, [&](int64_t) {
    for (KvType t : {KvType::KIVI4, KvType::KIVI2})
      for (const Shape& sh : shapes) {
        SCOPED_TRACE(testing::Message() << kv_type_name(t) << " hd " << sh.hd << " G " << sh.group << " R "
                                        << sh.residual);
        KvCacheSpec kv(t);
        kv.group = sh.group;
        kv.residual = sh.residual;
        const int64_t D = sh.kv_heads * sh.hd, P = sh.pos0 + sh.n, G = sh.group;
        const int64_t pages = (P + sh.page - 1) / sh.page;
        std::vector<std::vector<uint8_t>> kp(static_cast<size_t>(pages)), vp(static_cast<size_t>(pages));
        for (int64_t i = 0; i < pages; i++) {
          kp[size_t(i)].assign(size_t(kv.k_bytes(sh.page, D)), 0xff);
          vp[size_t(i)].assign(size_t(kv.v_bytes(sh.page, D)), 0xff);
        }
        // Pages in reverse order: position p's page is pages − 1 − p / page.
        auto page_of = [&](int64_t p) { return size_t(pages - 1 - p / sh.page); };
        KiviStage st(kv, D);
        std::mt19937 rng(unsigned(sh.hd + sh.n));
        std::normal_distribution<float> nd;
        std::vector<float> k(static_cast<size_t>(D)), v(static_cast<size_t>(D));
        for (int64_t p = 0; p < P; p++) {
          for (int64_t c = 0; c < D; c++) k[size_t(c)] = nd(rng) + (c % 7 == 0 ? 4.0f : 0.0f), v[size_t(c)] = nd(rng);
          st.append(k.data(), v.data(),
                    [&](int64_t pos) { return kp[page_of(pos)].data() + (pos % sh.page) / G * kv.key_group_bytes(D); },
                    [&](int64_t pos) { return vp[page_of(pos)].data() + (pos % sh.page) * kv.row_bytes(kv.v, D); });
        }
        // What the cache holds, decoded here: keys [P][D], values [P][D].
        const int bits = kv_type_info(t).bits;
        const int64_t chunk = kv.kivi_chunk_bytes(t);
        std::vector<float> K(size_t(P * D)), V(size_t(P * D));
        for (int64_t p = 0; p < P; p++)
          for (int64_t c = 0; c < D; c++) {
            float kx, vx;
            if (p >= st.quantized()) {
              kx = f16_to_f32(st.k()[(p - st.quantized()) * D + c]);
              vx = f16_to_f32(st.v()[(p - st.quantized()) * D + c]);
            } else {
              const uint8_t* kg = kp[page_of(p)].data() + (p % sh.page) / G * kv.key_group_bytes(D) + c * chunk;
              kivi_dequantize(bits, kg, G, p % G, 1, &kx);
              const uint8_t* vg = vp[page_of(p)].data() + (p % sh.page) * kv.row_bytes(kv.v, D) + c / G * chunk;
              kivi_dequantize(bits, vg, G, c % G, 1, &vx);
            }
            K[size_t(p * D + c)] = kx;
            V[size_t(p * D + c)] = vx;
          }
        std::vector<const void*> kptr(static_cast<size_t>(pages)), vptr(static_cast<size_t>(pages));
        for (int64_t i = 0; i < pages; i++) kptr[size_t(i)] = kp[page_of(i * sh.page)].data(), vptr[size_t(i)] = vp[page_of(i * sh.page)].data();
        AttentionShape s{sh.heads, sh.kv_heads, sh.hd, sh.heads * sh.hd, D, sh.heads * sh.hd};
        std::vector<float> q(size_t(sh.n * s.q_stride));
        for (auto& x : q) x = nd(rng);
        std::vector<float> got(q.size()), ref(q.size());
        PagedQuery pq;
        pq.q = q.data();
        pq.n = sh.n;
        pq.pos0 = sh.pos0;
        pq.cache = {kptr.data(), vptr.data(), sh.page, st.k(), st.v(), st.quantized()};
        pq.out = got.data();
        attention_paged(s, kv, &pq, 1, 0.125f);
        pq.out = ref.data();
        attention_paged_ref(s, kv, &pq, 1, 0.125f);
        const int64_t group = sh.heads / sh.kv_heads;
        for (int64_t tk = 0; tk < sh.n; tk++)
          for (int64_t h = 0; h < sh.heads; h++) {
            const int64_t kvh = h / group;
            std::vector<double> sc;
            double mx = -1e300;
            for (int64_t j = 0; j <= sh.pos0 + tk; j++) {
              double d = 0;
              for (int64_t e = 0; e < sh.hd; e++)
                d += double(q[size_t(tk * s.q_stride + h * sh.hd + e)]) * K[size_t(j * D + kvh * sh.hd + e)];
              sc.push_back(d * 0.125);
              mx = std::max(mx, d * 0.125);
            }
            double sum = 0;
            std::vector<double> o(static_cast<size_t>(sh.hd));
            for (size_t j = 0; j < sc.size(); j++) {
              const double p = std::exp(sc[j] - mx);
              sum += p;
              for (int64_t e = 0; e < sh.hd; e++) o[size_t(e)] += p * V[j * size_t(D) + size_t(kvh * sh.hd + e)];
            }
            for (int64_t e = 0; e < sh.hd; e++) {
              const size_t at = size_t(tk * s.out_stride + h * sh.hd + e);
              ASSERT_NEAR(got[at], o[size_t(e)] / sum, 2e-5) << "token " << tk << " head " << h << " dim " << e;
              ASSERT_NEAR(ref[at], o[size_t(e)] / sum, 2e-5) << "ref token " << tk << " head " << h << " dim " << e;
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
