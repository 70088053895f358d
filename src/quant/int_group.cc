#include "quant/int_group.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <regex>

#include "core/error.h"
#include "core/fp16.h"

namespace lmpress {

std::string IntGroupSpec::name() const {
  std::string s = "int" + std::to_string(bits) + (group < 0 ? "-ch" : "-g" + std::to_string(group));
  return sym ? s : s + "-asym";
}

std::optional<IntGroupSpec> parse_int_group_type(const std::string& name) {
  static const std::regex re(R"(int([0-9]+)-(?:g([0-9]+)|ch)(-asym|-sym)?)", std::regex::icase);
  std::smatch m;
  if (!std::regex_match(name, m, re)) return std::nullopt;
  IntGroupSpec s;
  if (m[1].length() > 2) fail("--type {}: {} bits is not supported (int-N group formats have 2, 3, 4 or 8 bits)", name, m[1].str());
  s.bits = std::stoi(m[1].str());
  if (s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 8)
    fail("--type {}: {} bits is not supported (int-N group formats have 2, 3, 4 or 8 bits)", name, s.bits);
  s.group = -1;
  if (m[2].matched) {
    if (m[2].length() > 6) fail("--type {}: group size too large", name);
    s.group = std::stoll(m[2].str());
    if (s.group < 8) fail("--type {}: group size must be at least 8 (or -ch for one group per row)", name);
  }
  s.sym = !(m[3].matched && (m[3].str() == "-asym" || m[3].str() == "-ASYM"));
  return s;
}

void IntGroupSpec::check_shape(const std::string& tensor, int64_t rows, int64_t cols) const {
  const int64_t g = group_size(cols);
  if (cols % g != 0)
    fail("{}: rows of {} columns cannot be cut into groups of {} (choose a group size that divides {}, or -ch)", tensor,
         cols, g, cols);
  const int64_t per_word = 32 / std::gcd(32, bits);  // values per whole number of words
  if (cols % per_word != 0 || rows % per_word != 0)
    fail("{}: a {}x{} matrix does not fit the {}-bit int32 packing (rows and columns must be multiples of {})",
         tensor, rows, cols, bits, per_word);
}

IntGroupTensor::IntGroupTensor(const IntGroupSpec& s, int64_t r, int64_t c)
    : spec(s), rows(r), cols(c), n_groups(c / s.group_size(c)) {
  q.assign(size_t(rows * cols), 0);
  scale.assign(size_t(rows * n_groups), 0.0f);
  zero.assign(size_t(rows * n_groups), 0);
  g_idx.resize(size_t(cols));
  for (int64_t i = 0; i < cols; i++) g_idx[size_t(i)] = int32_t(i / s.group_size(c));
}

std::vector<float> IntGroupTensor::dequantize() const {
  std::vector<float> w(size_t(rows * cols));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) w[size_t(r * cols + c)] = value(r, c);
  return w;
}

std::optional<int64_t> two_of_four_zeros(const IntGroupTensor& t) {
  if (t.cols % 4 != 0) return std::nullopt;
  int64_t zeros = 0;
  for (int64_t r = 0; r < t.rows; r++)
    for (int64_t c0 = 0; c0 < t.cols; c0 += 4) {
      int nonzero = 0;
      for (int64_t c = c0; c < c0 + 4; c++)
        nonzero += t.q[size_t(r * t.cols + c)] != t.zero[size_t(r * t.n_groups + t.g_idx[size_t(c)])];
      if (nonzero > 2) return std::nullopt;
      zeros += 4 - nonzero;
    }
  return zeros;
}

int GroupGrid::level(float x, int max_level) const {
  if (scale == 0) return zero;
  return std::clamp(int(std::nearbyint(x / scale)) + zero, 0, max_level);
}

GroupGrid int_group_grid(const IntGroupSpec& s, const float* x, int64_t n, float clip) {
  float lo = 0, hi = 0;
  for (int64_t i = 0; i < n; i++) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  lo *= clip;
  hi *= clip;
  const int maxq = s.max_level();
  GroupGrid g{};
  if (s.sym) {
    const float a = std::max(-lo, hi);
    g.zero = (maxq + 1) / 2;
    g.scale = a > 0 ? 2 * a / float(maxq) : 0.0f;
  } else {
    g.scale = hi > lo ? (hi - lo) / float(maxq) : 0.0f;
    g.zero = g.scale > 0 ? int(std::nearbyint(-lo / g.scale)) : 1;
    // Checkpoints store zero − 1 (AutoGPTQ's v1 format), so zero 0 cannot be
    // written: a group with no negative values gets zero 1 and a scale that
    // still reaches its maximum.
    if (g.zero < 1) {
      g.zero = 1;
      g.scale = hi / float(maxq - 1);
    }
  }
  g.scale = f16_to_f32(f32_to_f16(g.scale));
  return g;
}

GroupGrid search_group_grid(const IntGroupSpec& s, const float* x, int64_t n, const float* w,
                            const IntGroupRtnOptions& o) {
  const int maxq = s.max_level();
  const int n_ratios = o.clip_search ? o.clip_grid + 1 : 1;
  GroupGrid best{};
  double best_err = INFINITY;
  for (int i = 0; i < n_ratios; i++) {
    const float clip = float(1.0 - (1.0 - o.max_shrink) * i / std::max(1, o.clip_grid));
    const GroupGrid g = int_group_grid(s, x, n, clip);
    double err = 0;
    for (int64_t e = 0; e < n; e++) {
      const double d = x[e] - g.scale * float(g.level(x[e], maxq) - g.zero);
      err += (w ? w[e] : 1.0) * d * d;
    }
    if (err < best_err) {
      best_err = err;
      best = g;
    }
  }
  return best;
}

IntGroupTensor int_group_rtn(const float* W, int64_t rows, int64_t cols, const IntGroupSpec& s,
                             const float* importance, const IntGroupRtnOptions& o) {
  IntGroupTensor t(s, rows, cols);
  const int64_t G = s.group_size(cols);
  const int maxq = s.max_level();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t b = 0; b < t.n_groups; b++) {
      const float* x = W + r * cols + b * G;
      const GroupGrid g = search_group_grid(s, x, G, importance ? importance + b * G : nullptr, o);
      t.scale[size_t(r * t.n_groups + b)] = g.scale;
      t.zero[size_t(r * t.n_groups + b)] = uint16_t(g.zero);
      for (int64_t e = 0; e < G; e++) t.q[size_t(r * cols + b * G + e)] = uint8_t(g.level(x[e], maxq));
    }
  }
  return t;
}

void pack_bits(const uint32_t* values, int64_t n, int bits, uint32_t* words) {
  std::fill(words, words + n * bits / 32, 0u);
  for (int64_t i = 0; i < n; i++) {
    const uint64_t pos = uint64_t(i) * uint64_t(bits);
    const uint64_t v = uint64_t(values[i] & ((1u << bits) - 1));
    words[pos / 32] |= uint32_t(v << (pos % 32));
    if (pos % 32 + uint64_t(bits) > 32) words[pos / 32 + 1] |= uint32_t(v >> (32 - pos % 32));
  }
}

void unpack_bits(const uint32_t* words, int64_t n, int bits, uint32_t* values) {
  for (int64_t i = 0; i < n; i++) {
    const uint64_t pos = uint64_t(i) * uint64_t(bits);
    uint64_t v = words[pos / 32] >> (pos % 32);
    if (pos % 32 + uint64_t(bits) > 32) v |= uint64_t(words[pos / 32 + 1]) << (32 - pos % 32);
    values[i] = uint32_t(v & ((1u << bits) - 1));
  }
}

GptqPacked pack_gptq(const IntGroupTensor& t) {
  const int bits = t.spec.bits;
  const int64_t kw = t.cols * bits / 32, zw = t.rows * bits / 32;
  GptqPacked p;
  p.qweight.assign(size_t(kw * t.rows), 0);
  std::vector<uint32_t> vals(static_cast<size_t>(std::max(t.rows, t.cols))), words(size_t(std::max(kw, zw)));
  for (int64_t r = 0; r < t.rows; r++) {
    for (int64_t c = 0; c < t.cols; c++) vals[size_t(c)] = t.q[size_t(r * t.cols + c)];
    pack_bits(vals.data(), t.cols, bits, words.data());
    for (int64_t k = 0; k < kw; k++) p.qweight[size_t(k * t.rows + r)] = int32_t(words[size_t(k)]);
  }
  p.qzeros.assign(size_t(t.n_groups * zw), 0);
  p.scales.assign(size_t(t.n_groups * t.rows), 0.0f);
  for (int64_t g = 0; g < t.n_groups; g++) {
    for (int64_t r = 0; r < t.rows; r++) {
      vals[size_t(r)] = uint32_t(t.zero[size_t(r * t.n_groups + g)] - 1);
      p.scales[size_t(g * t.rows + r)] = t.scale[size_t(r * t.n_groups + g)];
    }
    pack_bits(vals.data(), t.rows, bits, reinterpret_cast<uint32_t*>(p.qzeros.data() + g * zw));
  }
  p.g_idx = t.g_idx;
  return p;
}

IntGroupTensor unpack_gptq(const GptqPacked& p, const IntGroupSpec& s, int64_t rows, int64_t cols,
                           const std::string& what) {
  s.check_shape(what, rows, cols);
  IntGroupTensor t(s, rows, cols);
  const int bits = s.bits;
  const int64_t kw = cols * bits / 32, zw = rows * bits / 32;
  if (int64_t(p.qweight.size()) != kw * rows) fail("{}: qweight has {} words, expected {}", what, p.qweight.size(), kw * rows);
  if (int64_t(p.g_idx.size()) != cols) fail("{}: g_idx has {} entries, expected {} (do bits and group_size match the tensors?)", what, p.g_idx.size(), cols);
  // With act-order the groups are the columns' g_idx values, not c / group.
  int64_t n_groups = 0;
  for (int32_t g : p.g_idx) {
    if (g < 0) fail("{}: negative g_idx", what);
    n_groups = std::max<int64_t>(n_groups, int64_t(g) + 1);
  }
  if (int64_t(p.qzeros.size()) != n_groups * zw || int64_t(p.scales.size()) != n_groups * rows)
    fail("{}: qzeros/scales sizes ({}, {}) do not match {} groups of {} rows", what, p.qzeros.size(), p.scales.size(),
         n_groups, rows);
  t.n_groups = n_groups;
  t.g_idx = p.g_idx;
  t.scale.assign(size_t(rows * n_groups), 0.0f);
  t.zero.assign(size_t(rows * n_groups), 0);
  std::vector<uint32_t> vals(static_cast<size_t>(std::max(rows, cols))), words(size_t(std::max(kw, zw)));
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t k = 0; k < kw; k++) words[size_t(k)] = uint32_t(p.qweight[size_t(k * rows + r)]);
    unpack_bits(words.data(), cols, bits, vals.data());
    for (int64_t c = 0; c < cols; c++) t.q[size_t(r * cols + c)] = uint8_t(vals[size_t(c)]);
  }
  for (int64_t g = 0; g < n_groups; g++) {
    unpack_bits(reinterpret_cast<const uint32_t*>(p.qzeros.data() + g * zw), rows, bits, vals.data());
    for (int64_t r = 0; r < rows; r++) {
      t.zero[size_t(r * n_groups + g)] = uint16_t(vals[size_t(r)] + 1);  // zero − 1 is stored
      t.scale[size_t(r * n_groups + g)] = p.scales[size_t(g * rows + r)];
    }
  }
  return t;
}

}  // namespace lmpress
