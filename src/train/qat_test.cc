// QAT's rounding on learned scales (train/qat.h): the forward is what the
// encoded file decodes to, and the backward is the straight-through
// estimator's derivative of LSQ's surrogate ŵ = s·(round(u) − z) + m, with
// the rounding's offset held fixed — taken here by finite differences.
#include "train/qat.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/fp16.h"
#include "kernels/blocks.h"

namespace lmpress::train {
namespace {

struct Case {
  QatFormat f;
  int max_level, zero_level;  // zero_level: ggml formats (int-N: the groups' own zeros)
};

std::vector<Case> cases() {
  std::vector<Case> c;
  const std::pair<DType, std::pair<int, int>> ggml[] = {{DType::Q4_0, {15, 8}},  {DType::Q5_0, {31, 16}},
                                                        {DType::Q8_0, {255, 128}}, {DType::Q4_1, {15, 0}},
                                                        {DType::Q5_1, {31, 0}}};
  for (const auto& [t, lv] : ggml) {
    Case k;
    k.f.type = t, k.max_level = lv.first, k.zero_level = lv.second;
    c.push_back(k);
  }
  for (const char* spec : {"int4-g32", "int3-g64-asym", "int2-ch"}) {
    Case k;
    k.f.int_group = parse_int_group_type(spec);
    k.max_level = k.f.int_group->max_level(), k.zero_level = -1;
    c.push_back(k);
  }
  return c;
}

std::vector<float> randn(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

float f16r(float x) { return f16_to_f32(f32_to_f16(x)); }

// Scales learned away from round to nearest's (f16 values, as stored).
struct Scales {
  std::vector<float> scale, offset;
  std::vector<uint16_t> zero;
  RowScales row() { return {scale.data(), offset.data(), zero.data()}; }
};
Scales moved_scales(const QatFormat& f, const std::vector<float>& w, unsigned seed) {
  const int64_t cols = int64_t(w.size()), groups = cols / f.group(cols);
  Scales s{std::vector<float>(size_t(groups)), std::vector<float>(size_t(groups)), std::vector<uint16_t>(size_t(groups))};
  init_scales(f, w.data(), cols, s.row());
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.7f, 1.2f);
  for (auto& x : s.scale) x = f16r(x * u(rng));
  s.scale[0] = f16r(s.scale[0] * 0.6f);  // a group whose extremes fall off the grid
  for (auto& x : s.offset) x = f16r(x * u(rng));
  return s;
}

TEST(QatScales, ForwardIsWhatTheEncodedFileHolds) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.f.name());
    const int64_t cols = 256;
    const auto w = randn(size_t(cols), 1);
    Scales s = moved_scales(c.f, w, 2);
    std::vector<float> got(w.size()), want(w.size()), rtn(w.size());
    fake_quant_row(c.f, w.data(), cols, s.row(), got.data());
    if (c.f.int_group) {
      want = encode_int(*c.f.int_group, w.data(), 1, cols, s.scale.data(), s.zero.data()).dequantize();
    } else {
      std::vector<uint8_t> bytes(row_bytes(c.f.type, uint64_t(cols)));
      encode_row(c.f, w.data(), cols, s.row(), bytes.data());
      ASSERT_TRUE(dequantize_row(c.f.type, bytes.data(), cols, want.data()));
    }
    for (int64_t i = 0; i < cols; i++) ASSERT_EQ(got[size_t(i)], want[size_t(i)]) << i;
    // At round to nearest's scales the values are round to nearest's (ggml's
    // quantizers pick levels with the unrounded scale: a few near-ties differ).
    Scales init = moved_scales(c.f, w, 2);
    init_scales(c.f, w.data(), cols, init.row());
    fake_quant_row(c.f, w.data(), cols, init.row(), got.data());
    fake_quant_row(c.f, w.data(), cols, rtn.data());
    int64_t same = 0;
    for (int64_t i = 0; i < cols; i++) same += got[size_t(i)] == rtn[size_t(i)];
    if (c.f.int_group)
      EXPECT_EQ(same, cols);
    else
      EXPECT_GE(same, cols * 97 / 100);
  }
}

TEST(QatScales, BackwardIsTheStraightThroughSurrogatesDerivative) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.f.name());
    const int64_t cols = 128, G = c.f.group(cols), groups = cols / G;
    auto w = randn(size_t(cols), 3);
    for (int64_t i = 0; i < cols; i += 9) w[size_t(i)] *= 4.0f;  // some beyond the grid once scales shrink
    Scales s = moved_scales(c.f, w, 4);
    const auto g = randn(size_t(cols), 5);
    // The surrogate, in double: each element's rounding offset (and whether it is clamped) fixed at this point.
    const bool has_m = learns_offsets(c.f);
    std::vector<double> off(static_cast<size_t>(cols));
    std::vector<int> level(static_cast<size_t>(cols));
    std::vector<bool> clamped(static_cast<size_t>(cols));
    auto z_of = [&](int64_t k) { return c.f.int_group ? double(s.zero[size_t(k)]) : double(c.zero_level); };
    for (int64_t e = 0; e < cols; e++) {
      const int64_t k = e / G;
      const double u = (double(w[size_t(e)]) - (has_m ? s.offset[size_t(k)] : 0.0)) / s.scale[size_t(k)] + z_of(k);
      const double r = std::nearbyint(u);
      clamped[size_t(e)] = r < 0 || r > c.max_level;
      level[size_t(e)] = int(std::clamp(r, 0.0, double(c.max_level)));
      off[size_t(e)] = r - u;
    }
    auto surrogate = [&](const std::vector<double>& sc, const std::vector<double>& m, const std::vector<double>& x) {
      double L = 0;
      for (int64_t e = 0; e < cols; e++) {
        const int64_t k = e / G;
        const double z = z_of(k), mk = has_m ? m[size_t(k)] : 0.0;
        const double v = clamped[size_t(e)] ? level[size_t(e)] : (x[size_t(e)] - mk) / sc[size_t(k)] + z + off[size_t(e)];
        L += double(g[size_t(e)]) * (sc[size_t(k)] * (v - z) + mk);
      }
      return L;
    };
    // Its value is the forward's.
    std::vector<float> fwd(w.size());
    fake_quant_row(c.f, w.data(), cols, s.row(), fwd.data());
    std::vector<double> sc(s.scale.begin(), s.scale.end()), m(s.offset.begin(), s.offset.end()), x(w.begin(), w.end());
    double dot = 0;
    for (int64_t e = 0; e < cols; e++) dot += double(g[size_t(e)]) * fwd[size_t(e)];
    EXPECT_NEAR(surrogate(sc, m, x), dot, 1e-4 * std::max(1.0, std::abs(dot)));
    // Its derivatives are the backward's.
    std::vector<float> gw = g, ds(size_t(groups), 0.0f), dm(size_t(groups), 0.0f);
    fake_quant_row_backward(c.f, w.data(), cols, s.row(), gw.data(), ds.data(), has_m ? dm.data() : nullptr);
    auto fd = [&](std::vector<double>& v, size_t i) {
      const double h = 1e-4 * std::max(1e-3, std::abs(v[i])), keep = v[i];
      v[i] = keep + h;
      const double a = surrogate(sc, m, x);
      v[i] = keep - h;
      const double b = surrogate(sc, m, x);
      v[i] = keep;
      return (a - b) / (2 * h);
    };
    int64_t n_clamped = 0;
    for (int64_t k = 0; k < groups; k++) {
      EXPECT_NEAR(ds[size_t(k)], fd(sc, size_t(k)), 1e-3 * std::max(1.0, double(std::abs(ds[size_t(k)])))) << "scale " << k;
      if (has_m) {
        EXPECT_NEAR(dm[size_t(k)], fd(m, size_t(k)), 1e-3 * std::max(1.0, double(std::abs(dm[size_t(k)])))) << "offset " << k;
      }
    }
    for (int64_t e = 0; e < cols; e++) {
      EXPECT_NEAR(gw[size_t(e)], fd(x, size_t(e)), 1e-4) << "weight " << e;
      n_clamped += clamped[size_t(e)];
    }
    EXPECT_GT(n_clamped, 0);
    EXPECT_LT(n_clamped, cols);
  }
}

}  // namespace
}  // namespace lmpress::train
