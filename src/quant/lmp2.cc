#include "quant/lmp2.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/lmp2.h"

namespace lmpress {
namespace {

// The grid as floats, one row per value position (so the search's inner loop
// runs over the 256 patterns), each pattern's squared norm, and whether it
// needs an odd count of minus signs.
struct SearchTables {
  float mag[8][256];
  float norm[256];
  bool odd[256];
};
const SearchTables& tables() {
  static const SearchTables t = [] {
    SearchTables s{};
    for (int i = 0; i < 256; i++) {
      s.norm[i] = 0;
      for (int j = 0; j < 8; j++) {
        const int v = int8_t(uint8_t(kLmp2Grid[size_t(i)] >> (8 * j)));
        s.mag[j][i] = float(std::abs(v));
        s.norm[i] += float(v * v);
      }
      s.odd[i] = int8_t(uint8_t(kLmp2Grid[size_t(i)] >> 56)) < 0;
    }
    return s;
  }();
  return t;
}

// Scales tried, as multiples of the block's RMS (a unit-variance Gaussian block is best served near 1).
constexpr float kScaleSteps[] = {0.70f, 0.78f, 0.86f, 0.94f, 1.02f, 1.10f, 1.18f, 1.26f, 1.34f, 1.42f};

// The nearest point of one shift's half (σ/4 + the codebook's magnitude patterns with E8's signs) by a scan of
// all 256 patterns: the code and its squared distance to z.
std::pair<uint16_t, float> scan_nearest(const float* z, int shift) {
  const SearchTables& t = tables();
  float au[8], u2 = 0;
  int negs = 0;
  for (int j = 0; j < 8; j++) {
    const float u = z[j] - float(shift);
    au[j] = std::fabs(u);
    u2 += u * u;
    negs += u < 0;
  }
  // Distance to pattern i with the signs of u: Σu² − 2Σ|u|·m + Σm²; when
  // the count of minus signs has the wrong parity, the cheapest flip adds 4·min |u_j|·m_j.
  float score[256], flip[256];
  for (int i = 0; i < 256; i++) score[i] = 0, flip[i] = FLT_MAX;
  for (int j = 0; j < 8; j++)
    for (int i = 0; i < 256; i++) {
      const float p = au[j] * t.mag[j][i];
      score[i] += p;
      flip[i] = std::min(flip[i], p);
    }
  float best = FLT_MAX;
  int bi = 0;
  for (int i = 0; i < 256; i++) {
    float d = u2 - 2 * score[i] + t.norm[i];
    if (t.odd[i] != (negs & 1)) d += 4 * flip[i];
    if (d < best) best = d, bi = i;
  }
  bool neg[8];
  int cheapest = 0;
  float cheapest_p = FLT_MAX;
  negs = 0;
  for (int j = 0; j < 8; j++) {
    neg[j] = z[j] - float(shift) < 0;
    negs += neg[j];
    const float p = au[j] * t.mag[j][bi];
    if (p < cheapest_p) cheapest_p = p, cheapest = j;
  }
  if (t.odd[bi] != (negs & 1)) neg[cheapest] = !neg[cheapest];
  uint16_t code = uint16_t(bi | (shift > 0 ? 0x8000 : 0));
  for (int j = 0; j < 7; j++) code |= uint16_t(neg[j] ? 1 << (8 + j) : 0);
  return {code, best};
}

// Pattern index of each magnitude pattern (2 bits per value: (4|p| − 2) / 4), −1 for those not in the codebook.
const std::vector<int16_t>& pattern_index() {
  static const std::vector<int16_t> idx = [] {
    std::vector<int16_t> v(1 << 16, -1);
    for (int i = 0; i < 256; i++) {
      int key = 0;
      for (int j = 0; j < 8; j++) key = key << 2 | ((std::abs(int8_t(uint8_t(kLmp2Grid[size_t(i)] >> (8 * j)))) - 2) / 4);
      v[size_t(key)] = int16_t(i);
    }
    return v;
  }();
  return idx;
}

// One shift's nearest point of E8's half-integer coset D8 + ½, decoded as Conway and Sloane do (each value to its
// nearest odd multiple of ½, the worst one moved to its other neighbour when the sum is not even): its code when
// the codebook's 256 patterns hold it (in_book), and its squared distance to z — a lower bound for the codebook's.
struct CosetPoint {
  uint16_t code = 0;
  bool in_book = false;
  float dist = 0;
};
CosetPoint coset_nearest(const float* z, int shift) {
  // In units of ½: w = 2·(z − σ) / 4; points are odd integers o with Σo ≡ 0 (mod 4).
  int o[8], sum = 0, worst = 0;
  float worst_e = -1, dist = 0;
  for (int j = 0; j < 8; j++) {
    const float w = (z[j] - float(shift)) / 2;
    o[j] = 2 * int(std::floor(w / 2)) + 1;
    const float e = w - float(o[j]);  // in [−1, 1)
    sum += o[j];
    dist += e * e;
    // Moving to the other odd neighbour costs (2 − |e|)² − e² = 4 − 4|e|: least for the largest |e|.
    if (std::fabs(e) > worst_e) worst_e = std::fabs(e), worst = j;
  }
  if (((sum % 4) + 4) % 4 != 0) {
    const float e = (z[worst] - float(shift)) / 2 - float(o[worst]);
    o[worst] += e >= 0 ? 2 : -2;
    dist += 4 - 4 * std::fabs(e);
  }
  CosetPoint p;
  p.dist = 4 * dist;  // back to z's units: z − q = 2·(w − o)
  int key = 0;
  uint16_t signs = 0;
  for (int j = 0; j < 8; j++) {
    const int m = std::abs(o[j]);
    if (m > 7) return p;
    key = key << 2 | (m - 1) / 2;
    if (j < 7 && o[j] < 0) signs |= uint16_t(1 << j);
  }
  const int i = pattern_index()[size_t(key)];
  if (i < 0) return p;
  p.code = uint16_t(i | signs << 8 | (shift > 0 ? 0x8000 : 0));
  p.in_book = true;
  return p;
}

}  // namespace

uint16_t lmp2_nearest(const float* z, int8_t* q) {
  const CosetPoint c[2] = {coset_nearest(z, -1), coset_nearest(z, 1)};
  float best = FLT_MAX;
  uint16_t code = 0;
  for (const auto& p : c)
    if (p.in_book && p.dist < best) best = p.dist, code = p.code;
  // A shift whose coset point lies outside the codebook is scanned only when
  // that point (a bound on the scan's result) beats the best found.
  for (int s = 0; s < 2; s++)
    if (!c[s].in_book && c[s].dist < best) {
      const auto [sc, sd] = scan_nearest(z, s ? 1 : -1);
      if (sd < best) best = sd, code = sc;
    }
  lmp2_decode(code, q);
  return code;
}

float lmp2_block_scale(const float* v, int64_t stride) {
  double ss = 0;
  for (int e = 0; e < kLmp2Block; e++) ss += double(v[e * stride]) * v[e * stride];
  const float rms = float(std::sqrt(ss / kLmp2Block));
  if (!(rms > 1e-30f)) return 0;  // nothing to keep (also: 4 / d would overflow)
  float best_err = FLT_MAX, best_d = rms;
  float z[8];
  int8_t q[8];
  for (float step : kScaleSteps) {
    const float d = step * rms, inv = 4 / d;
    // With these codes, the least-squares scale: d' / 4 = Σ v·q / Σ q².
    double vq = 0, qq = 0;
    for (int g = 0; g < kLmp2Block / 8; g++) {
      for (int j = 0; j < 8; j++) z[j] = v[(8 * g + j) * stride] * inv;
      lmp2_nearest(z, q);
      for (int j = 0; j < 8; j++) {
        vq += double(v[(8 * g + j) * stride]) * q[j];
        qq += double(q[j]) * q[j];
      }
    }
    const double err = ss - vq * vq / qq;
    if (err < best_err) best_err = float(err), best_d = float(4 * vq / qq);
  }
  return f16_to_f32(f32_to_f16(best_d));
}

namespace {

// Code g of b: the 8 values v[j · stride] rounded under scale d (q: the point's values).
void round_code(const float* v, int64_t stride, float d, BlockLMP2& b, int g, int8_t* q) {
  const float inv = d != 0 ? 4 / d : 0;
  float z[8];
  for (int j = 0; j < 8; j++) z[j] = v[j * stride] * inv;
  lmp2_set_code(b, g, lmp2_nearest(z, q));
}

// Rounds 256 rotated values v under scale d into one block.
void encode_block(const float* v, float d, BlockLMP2& b) {
  b.d = f32_to_f16(d);
  int8_t q[8];
  for (int g = 0; g < kLmp2Block / 8; g++) round_code(v + 8 * g, 1, d, b, g, q);
}

}  // namespace

void quantize_row_lmp2(const float* x, int64_t n, uint8_t* out, const float* importance) {
  if (importance) return quantize_rows_lmp2(x, 1, n, out, importance);
  if (n % kLmp2Block != 0) fail("LMP2: a row of {} values is not a multiple of {}", n, kLmp2Block);
  auto* blocks = reinterpret_cast<BlockLMP2*>(out);
  float v[kLmp2Block];
  for (int64_t b = 0; b < n / kLmp2Block; b++) {
    std::memcpy(v, x + b * kLmp2Block, sizeof v);
    lmp2_rotate(v, kLmp2Block);
    encode_block(v, lmp2_block_scale(v, 1), blocks[b]);
  }
}

namespace {

// T·H·Tᵀ for a Hessian H of n inputs (n × n, in place): H's rows rotated, transposed, rotated again.
void rotate_hessian(std::vector<float>& H, int64_t n) {
  for (int pass = 0; pass < 2; pass++) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) lmp2_rotate(H.data() + r * n, n);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = i + 1; j < n; j++) std::swap(H[size_t(i * n + j)], H[size_t(j * n + i)]);
  }
}

// GPTQ's loop on rotated weights Wr (rows × cols, a multiple of 256) and their rotated Hessian Hr: every 8
// columns rounded together, blocks written from block `first` of each output row (rb bytes apart).
void ldlq(const std::vector<float>& Wr, int64_t rows, int64_t cols, const std::vector<float>& Hr,
          const GptqOptions& o, uint8_t* out, uint64_t rb, int64_t first) {
  std::vector<float> d(static_cast<size_t>(rows));
  GptqGridFormat f;
  f.group = kLmp2Block;
  f.vector_dim = 8;
  f.round_vectors = [&](int64_t k, const float* x, float* qv) {
    const int64_t blk = first + k / kLmp2Block, g = (k % kLmp2Block) / 8;
#pragma omp parallel for schedule(static) if (rows >= 64)
    for (int64_t r = 0; r < rows; r++) {
      auto& b = reinterpret_cast<BlockLMP2*>(out + uint64_t(r) * rb)[blk];
      if (g == 0) {  // the block's first 8 columns: its scale, from its current values
        d[size_t(r)] = lmp2_block_scale(x + r, rows);
        b.d = f32_to_f16(d[size_t(r)]);
      }
      int8_t q[8];
      round_code(x + r, rows, d[size_t(r)], b, int(g), q);
      for (int j = 0; j < 8; j++) qv[j * rows + r] = d[size_t(r)] / 4 * float(q[j]);
    }
  };
  gptq_core(Wr.data(), rows, cols, Hr, f, o);
}

}  // namespace

void gptq_quantize_lmp2(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                        const GptqOptions& o, uint8_t* out) {
  if (cols % kLmp2Block != 0) fail("GPTQ: {} columns are not a multiple of the LMP2 block of {}", cols, kLmp2Block);
  if (int64_t(H.size()) != cols * cols) fail("GPTQ: Hessian size does not match {} columns", cols);
  if (o.act_order) fail("GPTQ: --act-order is not supported with LMP2 (its 8-value codes follow column order)");
  // The weights as stored (T·w per block) and the Hessian of the rotated inputs T·x.
  std::vector<float> Wr(W, W + rows * cols);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) lmp2_rotate(Wr.data() + r * cols, cols);
  std::vector<float> Hr(H);
  rotate_hessian(Hr, cols);
  ldlq(Wr, rows, cols, Hr, o, out, row_bytes(DType::LMP2, uint64_t(cols)), 0);
}

void quantize_rows_lmp2(const float* x, int64_t rows, int64_t cols, uint8_t* out, const float* importance) {
  if (cols % kLmp2Block != 0) fail("LMP2: a row of {} values is not a multiple of {}", cols, kLmp2Block);
  const uint64_t rb = row_bytes(DType::LMP2, uint64_t(cols));
  GptqOptions o;
  std::vector<float> Wr(size_t(rows * kLmp2Block)), Hr;
  for (int64_t b = 0; b < cols / kLmp2Block; b++) {
    // This block's columns, rotated, and the Hessian diag(importance) seen from the rotated inputs.
    Hr.assign(size_t(kLmp2Block * kLmp2Block), 0.0f);
    for (int64_t r = 0; r < rows; r++) {
      std::copy_n(x + r * cols + b * kLmp2Block, kLmp2Block, Wr.begin() + r * kLmp2Block);
      lmp2_rotate(Wr.data() + r * kLmp2Block, kLmp2Block);
    }
    for (int i = 0; i < kLmp2Block; i++) Hr[size_t(i * kLmp2Block + i)] = importance[b * kLmp2Block + i];
    rotate_hessian(Hr, kLmp2Block);
    ldlq(Wr, rows, kLmp2Block, Hr, o, out, rb, b);
  }
}

}  // namespace lmpress
