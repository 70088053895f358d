#include "quant/iq_quants.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/iq_grids.h"
#include "quant/scale_search.h"

namespace lmpress {

bool quantizer_needs_importance(DType t) {
  return t == DType::IQ2_XXS || t == DType::IQ2_XS || t == DType::IQ1_S;
}

namespace {

using ggml_search::kGroupMaxEps;
using ggml_search::make_qp_quants;

// A codebook as the quantizer sees it (ggml's iq2xs_init_impl / iq3xs_init_impl):
// each grid point's values as odd integers 2l + 1 (l: the rank of the stored
// magnitude), the map from a packed vector of levels (bits per value) to its
// grid index, and for each vector off the grid the grid points nearest to it
// (all those at the `nwant` smallest distances).
struct Lattice {
  int dim = 0, bits = 0;
  std::vector<int8_t> points;       // grid size × dim
  std::vector<int> map;             // ≥ 0: grid index; < 0: −(offset + 1) into neighbours
  std::vector<uint16_t> neighbours;  // at each offset: the count, then the grid indices

  const int8_t* point(int g) const { return points.data() + size_t(g) * size_t(dim); }
};

// grid(k, j): the stored magnitude of value j of point k.
template <class Grid>
Lattice build_lattice(int grid_size, int dim, int bits, int nwant, Grid grid) {
  Lattice lat;
  lat.dim = dim, lat.bits = bits;
  lat.points.resize(size_t(grid_size * dim));
  // The distinct magnitudes, in increasing order: a magnitude's rank is its level.
  std::vector<int> mags;
  for (int k = 0; k < grid_size; k++)
    for (int j = 0; j < dim; j++) mags.push_back(grid(k, j));
  std::sort(mags.begin(), mags.end());
  mags.erase(std::unique(mags.begin(), mags.end()), mags.end());
  const int map_size = bits == 2 ? 43692 : 4096;  // ggml's kmap_size: 2-bit levels up to 2, 3-bit up to 7
  lat.map.assign(size_t(map_size), -1);
  for (int k = 0; k < grid_size; k++) {
    int u = 0;
    for (int j = 0; j < dim; j++) {
      const int l = int(std::lower_bound(mags.begin(), mags.end(), grid(k, j)) - mags.begin());
      lat.points[size_t(k * dim + j)] = int8_t(2 * l + 1);
      u |= l << (bits * j);
    }
    lat.map[size_t(u)] = k;
  }
  std::vector<int> d2(static_cast<size_t>(grid_size));
  std::vector<std::pair<int, int>> near;  // (squared distance, grid index)
  for (int u = 0; u < map_size; u++) {
    if (lat.map[size_t(u)] >= 0) continue;
    // The nwant smallest distinct distances in one pass (ggml sorts all points by (distance, index) and
    // keeps those up to the nwant-th distinct distance: the same points in the same order).
    int smallest[8] = {};  // nwant <= 8
    int have = 0;
    for (int k = 0; k < grid_size; k++) {
      int d = 0;
      for (int j = 0; j < dim; j++) {
        const int pos = 2 * ((u >> (bits * j)) & ((1 << bits) - 1)) + 1;
        const int diff = lat.points[size_t(k * dim + j)] - pos;
        d += diff * diff;
      }
      d2[size_t(k)] = d;
      int at = 0;
      while (at < have && smallest[at] < d) ++at;
      if (at < have && smallest[at] == d) continue;
      if (at >= nwant) continue;
      for (int m = std::min(have, nwant - 1); m > at; m--) smallest[m] = smallest[m - 1];
      smallest[at] = d;
      have = std::min(have + 1, nwant);
    }
    near.clear();
    for (int k = 0; k < grid_size; k++)
      if (d2[size_t(k)] <= smallest[have - 1]) near.emplace_back(d2[size_t(k)], k);
    std::sort(near.begin(), near.end());
    lat.map[size_t(u)] = -int(lat.neighbours.size() + 1);
    lat.neighbours.push_back(uint16_t(near.size()));
    for (const auto& [d, k] : near) lat.neighbours.push_back(uint16_t(k));
  }
  return lat;
}

// Built on first use (a second or two for the IQ2 neighbour lists).
template <const auto& kGrid, int kDim, int kBits, int kNWant>
const Lattice& lattice_of() {
  static const Lattice l =
      build_lattice(int(std::size(kGrid)), kDim, kBits, kNWant, [](int k, int j) { return grid_byte(kGrid[k], j); });
  return l;
}

// IQ1_S/IQ1_M's 2048 points hold signed bytes −1, 0, 1 (levels 0, 1, 2).
const Lattice& iq1_lattice() {
  static const Lattice l = build_lattice(int(std::size(kIq1sGrid)), 8, 2, 3,
                                         [](int k, int j) { return int(int8_t(grid_byte(kIq1sGrid[k], j))); });
  return l;
}

const Lattice& lattice(DType t) {
  switch (t) {
    case DType::IQ1_S:
    case DType::IQ1_M: return iq1_lattice();
    case DType::IQ2_XXS: return lattice_of<kIq2xxsGrid, 8, 2, 2>();
    case DType::IQ2_XS: return lattice_of<kIq2xsGrid, 8, 2, 2>();
    case DType::IQ2_S: return lattice_of<kIq2sGrid, 8, 2, 1>();
    case DType::IQ3_XXS: return lattice_of<kIq3xxsGrid, 4, 3, 2>();
    case DType::IQ3_S: return lattice_of<kIq3sGrid, 4, 3, 3>();
    default: fail("internal: {} has no lattice", dtype_name(t));
  }
}

// The grid index of the levels L[0..dim), or the neighbour of the off-grid
// vector that best fits xval under `scale` (weights w), its levels written to L.
// on_grid (optional): whether L was on the grid. value(q): the value a stored
// odd level q = 2l + 1 stands for (q itself; IQ1's shifted three levels).
template <class Value>
int snap_as(const Lattice& lat, const float* xval, const float* w, float scale, int8_t* L, bool* on_grid, Value value) {
  int u = 0;
  for (int i = 0; i < lat.dim; i++) u |= L[i] << (lat.bits * i);
  const int g = lat.map[size_t(u)];
  if (on_grid) *on_grid = g >= 0;
  if (g >= 0) return g;
  const uint16_t* nb = lat.neighbours.data() + (-g - 1);
  float best_d2 = FLT_MAX;
  int best = -1;
  for (int j = 1; j <= nb[0]; j++) {
    const int8_t* pg = lat.point(nb[j]);
    float d2 = 0;
    for (int i = 0; i < lat.dim; i++) {
      const float diff = scale * value(pg[i]) - xval[i];
      d2 += w[i] * diff * diff;
    }
    if (d2 < best_d2) best_d2 = d2, best = nb[j];
  }
  if (best < 0) fail("internal: codebook quantizer found no grid point (non-finite weights?)");
  const int8_t* pg = lat.point(best);
  for (int i = 0; i < lat.dim; i++) L[i] = int8_t((pg[i] - 1) / 2);
  return best;
}

int snap(const Lattice& lat, const float* xval, const float* w, float scale, int8_t* L, bool* on_grid = nullptr) {
  return snap_as(lat, xval, w, scale, L, on_grid, [](int8_t q) { return float(q); });
}

// The levels l (0 .. kmax−1) of xval[0..n) under 1/id: nearest odd multiple (2l + 1) / id.
void odd_levels(const float* xval, int n, float id, int kmax, int8_t* L) {
  for (int i = 0; i < n; i++)
    L[i] = int8_t(std::max(0, std::min(kmax - 1, nearest_int(0.5f * (id * xval[i] - 1)))));
}

// Absolute values of 8 values with their signs; an odd number of negatives
// flips the one of least weighted magnitude (the eighth sign is implied by
// parity). Returns the 7 stored sign bits.
uint8_t fold_signs(const float* x, const float* w, float* xval) {
  int nflip = 0;
  uint8_t s = 0;
  for (int i = 0; i < 8; i++) {
    if (x[i] >= 0) {
      xval[i] = x[i];
    } else {
      xval[i] = -x[i];
      ++nflip;
      s |= uint8_t(1 << i);
    }
  }
  if (nflip % 2) {
    int imin = 0;
    float min = w[0] * x[0] * x[0];
    for (int i = 1; i < 8; i++) {
      const float ax = w[i] * x[i] * x[i];
      if (ax < min) min = ax, imin = i;
    }
    xval[imin] = -xval[imin];
    s ^= uint8_t(1 << imin);
  }
  return s & 127;
}

// The weighted least-squares scale of xval on odd levels 2L + 1.
void odd_fit(const float* xval, const float* w, const int8_t* L, int n, float& sumqx, float& sumq2) {
  sumqx = sumq2 = 0;
  for (int i = 0; i < n; i++) {
    const float q = float(2 * L[i] + 1);
    sumqx += w[i] * xval[i] * q;
    sumq2 += w[i] * q * q;
  }
}

// A group's grid index for its final levels (which the search keeps on the grid).
int grid_index(const Lattice& lat, const int8_t* L) {
  int u = 0;
  for (int i = 0; i < lat.dim; i++) u |= L[i] << (lat.bits * i);
  const int g = lat.map[size_t(u)];
  if (g < 0) fail("internal: codebook quantizer left a group off the grid");
  return g;
}

// The 4-bit scale codes l of a block's group scales under d = max/31: scale ≈ d·(2l + 1).
int scale_code(float id, float scale) { return std::max(0, std::min(15, nearest_int(0.5f * (id * scale - 1)))); }

// ggml's scale search over n sign-free values (n / lat.dim grid points):
// trial scales range / (2·kmax − 1 + is·step) for is in [−steps, steps], each
// point's levels snapped to the grid (or its best neighbour), the best
// weighted least-squares fit kept; then points snapped again under the final
// scale and the scale refit, as each type's quantizer does it (refit). `scale`
// is what stays if no trial fits.
enum class Refit { always_all, if_off_all, if_off_only_off };
struct SearchSpec {
  int n, kmax, steps;
  float step, range, scale;
  bool start_on_grid;
  Refit refit;
};
float lattice_search(const Lattice& lat, const SearchSpec& sp, const float* xval, const float* weight,
                     const float* waux, int8_t* L) {
  const int dim = lat.dim, points = sp.n / dim;
  int8_t Laux[32];
  bool on_grid[8], on_grid_aux[8];
  std::fill(on_grid, on_grid + points, sp.start_on_grid);
  float best = 0, sumqx, sumq2, scale = sp.scale;
  for (int is = -sp.steps; is <= sp.steps; is++) {
    const float id = (2 * sp.kmax - 1 + float(is) * sp.step) / sp.range;
    const float this_scale = 1 / id;
    for (int k = 0; k < points; k++) {
      odd_levels(xval + dim * k, dim, id, sp.kmax, Laux + dim * k);
      snap(lat, xval + dim * k, waux + dim * k, this_scale, Laux + dim * k, &on_grid_aux[k]);
    }
    odd_fit(xval, weight, Laux, sp.n, sumqx, sumq2);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      scale = sumqx / sumq2;
      best = scale * sumqx;
      std::memcpy(L, Laux, size_t(sp.n));
      std::copy(on_grid_aux, on_grid_aux + points, on_grid);
    }
  }
  const bool any_off = std::find(on_grid, on_grid + points, false) != on_grid + points;
  if ((sp.refit == Refit::always_all || any_off) && scale > 0) {
    const float id = 1 / scale;
    for (int k = 0; k < points; k++) {
      if (sp.refit == Refit::if_off_only_off && on_grid[k]) continue;
      odd_levels(xval + dim * k, dim, id, sp.kmax, L + dim * k);
      snap(lat, xval + dim * k, waux + dim * k, scale, L + dim * k);
    }
    odd_fit(xval, weight, L, sp.n, sumqx, sumq2);
    if (sumq2 > 0) scale = sumqx / sumq2;
  }
  return scale;
}

// Σx² of a super-block over its size, times `factor` (ggml's sigma2: 1 for IQ2_XXS/XS, 2 for the others).
float block_sigma2(const float* xbl, float factor) {
  float sumx2 = 0;
  for (int i = 0; i < QK_K; i++) sumx2 += xbl[i] * xbl[i];
  return factor * sumx2 / QK_K;
}

// The importance of each of n values: qw·sqrt(sigma2 + x²) with importance weights, else the type's
// fallback (x², or 0.25·sigma2 + x² for IQ2_S); and their square roots for the neighbour search.
enum class NoImportance { x2, quarter_sigma2_plus_x2 };
void group_weights(const float* xb, const float* qw, float sigma2, int n, NoImportance fallback, float* weight,
                   float* waux) {
  if (qw) {
    for (int i = 0; i < n; i++) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
  } else if (fallback == NoImportance::x2) {
    for (int i = 0; i < n; i++) weight[i] = xb[i] * xb[i];
  } else {
    for (int i = 0; i < n; i++) weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
  }
  for (int i = 0; i < n; i++) waux[i] = std::sqrt(weight[i]);
}

void iq2_xxs_block(const Lattice& lat, const float* xbl, const float* qw, BlockIQ2_XXS& y) {
  constexpr int kMaxQ = 3;
  float scales[QK_K / 32], weight[32], xval[32], waux[32];
  int8_t L[32];
  uint8_t block_signs[4];
  uint32_t q2[2 * (QK_K / 32)] = {};
  y.d = f32_to_f16(0.f);
  float max_scale = 0;
  const float sigma2 = block_sigma2(xbl, 1);
  for (int ib = 0; ib < QK_K / 32; ib++) {
    const float* xb = xbl + 32 * ib;
    group_weights(xb, qw + 32 * ib, sigma2, 32, NoImportance::x2, weight, waux);
    for (int k = 0; k < 4; k++) block_signs[k] = fold_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k);
    float max = xval[0];
    for (int i = 1; i < 32; i++) max = std::max(max, xval[i]);
    if (max < kGroupMaxEps) {
      scales[ib] = 0;
      std::memset(L, 0, 32);
      continue;
    }
    float scale = make_qp_quants(32, kMaxQ + 1, xval, reinterpret_cast<uint8_t*>(L), weight);
    const float eff_max = scale * kMaxQ;
    if (eff_max <= 0) {
      scales[ib] = 0;
      std::memset(L, 0, 32);
      continue;
    }
    scale = lattice_search(lat, {32, kMaxQ, 6, 0.1f, eff_max, scale, true, Refit::always_all}, xval, weight, waux, L);
    if (scale < 0) {  // never expected; the stored scale is unsigned
      scale = -scale;
      for (int k = 0; k < 4; k++) block_signs[k] = uint8_t(~block_signs[k] & 127);
    }
    for (int k = 0; k < 4; k++) {
      q2[2 * ib] |= uint32_t(grid_index(lat, L + 8 * k)) << (8 * k);
      q2[2 * ib + 1] |= uint32_t(block_signs[k]) << (7 * k);
    }
    scales[ib] = scale;
    max_scale = std::max(max_scale, scale);
  }
  if (!max_scale) {
    std::memset(y.qs, 0, QK_K / 4);
    return;
  }
  const float d = max_scale / 31;
  y.d = f32_to_f16(d);
  const float id = 1 / d;
  for (int ib = 0; ib < QK_K / 32; ib++) q2[2 * ib + 1] |= uint32_t(scale_code(id, scales[ib])) << 28;
  std::memcpy(y.qs, q2, QK_K / 4);
}

// IQ2_XS and IQ2_S: the search over 16 values (two grid points), the same in both.
float search16(const Lattice& lat, const float* xval, const float* weight, const float* waux, int8_t* L) {
  const float max = *std::max_element(xval, xval + 16);
  return lattice_search(lat, {16, 3, 9, 0.1f, max, max / 5, true, Refit::if_off_only_off}, xval, weight, waux, L);
}

// The 4-bit codes of 16 group scales under d = max/31, two per byte.
void pack_scales16(const float* scales, float d, uint8_t* out) {
  const float id = 1 / d;
  for (int ib = 0; ib < QK_K / 16; ib++) {
    const int l = scale_code(id, scales[ib]);
    if (ib % 2 == 0) out[ib / 2] = uint8_t(l);
    else out[ib / 2] |= uint8_t(l << 4);
  }
}

void iq2_xs_block(const Lattice& lat, const float* xbl, const float* qw, BlockIQ2_XS& y) {
  float scales[QK_K / 16], weight[16], xval[16], waux[16];
  int8_t L[16];
  uint8_t block_signs[2];
  uint16_t q2[2 * (QK_K / 16)] = {};
  y.d = f32_to_f16(0.f);
  std::memset(y.scales, 0, QK_K / 32);
  float max_scale = 0;
  const float sigma2 = block_sigma2(xbl, 1);
  for (int ib = 0; ib < QK_K / 16; ib++) {
    const float* xb = xbl + 16 * ib;
    group_weights(xb, qw + 16 * ib, sigma2, 16, NoImportance::x2, weight, waux);
    for (int k = 0; k < 2; k++) block_signs[k] = fold_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k);
    std::memset(L, 0, 16);
    if (*std::max_element(xval, xval + 16) < kGroupMaxEps) {
      scales[ib] = 0;
      continue;
    }
    float scale = search16(lat, xval, weight, waux, L);
    if (scale < 0) {
      scale = -scale;
      for (int k = 0; k < 2; k++) block_signs[k] = uint8_t(~block_signs[k] & 127);
    }
    for (int k = 0; k < 2; k++) q2[2 * ib + k] = uint16_t(grid_index(lat, L + 8 * k) | (block_signs[k] << 9));
    scales[ib] = scale;
    max_scale = std::max(max_scale, scale);
  }
  if (!max_scale) {
    std::memset(y.qs, 0, QK_K / 4);
    return;
  }
  const float d = max_scale / 31;
  y.d = f32_to_f16(d);
  pack_scales16(scales, d, y.scales);
  std::memcpy(y.qs, q2, QK_K / 4);
}

// IQ2_S: 1024 grid points (two index bits in qh), 8 explicit sign bits per 8 values.
void iq2_s_block(const Lattice& lat, const float* xbl, const float* qw, BlockIQ2_S& y) {
  constexpr float kEps = 1e-8f;  // ggml's GROUP_MAX_EPS_IQ2_S
  float scales[QK_K / 16], weight[16], xval[16], waux[16];
  int8_t L[16];
  uint8_t block_signs[2];
  std::memset(&y, 0, sizeof y);
  float max_scale = 0;
  const float sigma2 = block_sigma2(xbl, 2);
  for (int ib = 0; ib < QK_K / 16; ib++) {
    const float* xb = xbl + 16 * ib;
    group_weights(xb, qw ? qw + 16 * ib : nullptr, sigma2, 16, NoImportance::quarter_sigma2_plus_x2, weight, waux);
    for (int k = 0; k < 2; k++) {
      uint8_t sg = 0;
      for (int i = 0; i < 8; i++) {
        const float v = xb[8 * k + i];
        xval[8 * k + i] = v >= 0 ? v : -v;
        if (v < 0) sg |= uint8_t(1 << i);
      }
      block_signs[k] = sg;
    }
    std::memset(L, 0, 16);
    if (*std::max_element(xval, xval + 16) < kEps) {
      scales[ib] = 0;
      continue;
    }
    float scale = search16(lat, xval, weight, waux, L);
    if (scale < 0) {
      scale = -scale;
      for (int k = 0; k < 2; k++) block_signs[k] = uint8_t(~block_signs[k]);
    }
    for (int k = 0; k < 2; k++) {
      const int g = grid_index(lat, L + 8 * k), i8 = 2 * ib + k;
      y.qs[i8] = uint8_t(g & 255);
      y.qh[i8 / 4] |= uint8_t((g >> 8) << 2 * (i8 % 4));
      y.qs[QK_K / 8 + i8] = block_signs[k];
    }
    scales[ib] = scale;
    max_scale = std::max(max_scale, scale);
  }
  if (!max_scale) return;
  const float d = max_scale / 31;
  y.d = f32_to_f16(d * 0.9875f);  // ggml's fudge factor
  pack_scales16(scales, d, y.scales);
}

void iq3_xxs_block(const Lattice& lat, const float* xbl, const float* qw, BlockIQ3_XXS& y) {
  constexpr int kMaxQ = 8;
  constexpr float kEps = 1e-8f;  // ggml's GROUP_MAX_EPS_IQ3_XXS
  float scales[QK_K / 32], weight[32], xval[32], waux[32];
  int8_t L[32];
  uint8_t block_signs[8];
  uint8_t q3[3 * (QK_K / 8)] = {};
  uint32_t scales_and_signs[QK_K / 32] = {};
  y.d = f32_to_f16(0.f);
  float max_scale = 0;
  const float sigma2 = block_sigma2(xbl, 2);
  for (int ib = 0; ib < QK_K / 32; ib++) {
    const float* xb = xbl + 32 * ib;
    group_weights(xb, qw ? qw + 32 * ib : nullptr, sigma2, 32, NoImportance::x2, weight, waux);
    for (int k = 0; k < 4; k++) block_signs[k] = fold_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k);
    float max = xval[0];
    for (int i = 1; i < 32; i++) max = std::max(max, xval[i]);
    std::memset(L, 0, 32);
    if (max < kEps) {
      scales[ib] = 0;
      continue;
    }
    float scale = lattice_search(lat, {32, kMaxQ, 15, 0.2f, max, max / (2 * kMaxQ - 1), true, Refit::if_off_only_off},
                                 xval, weight, waux, L);
    if (scale < 0) {
      scale = -scale;
      for (int k = 0; k < 4; k++) block_signs[k] = uint8_t(~block_signs[k] & 127);
    }
    for (int k = 0; k < 8; k++) q3[8 * ib + k] = uint8_t(grid_index(lat, L + 4 * k));
    scales_and_signs[ib] = uint32_t(block_signs[0]) | uint32_t(block_signs[1]) << 7 | uint32_t(block_signs[2]) << 14 |
                           uint32_t(block_signs[3]) << 21;
    scales[ib] = scale;
    max_scale = std::max(max_scale, scale);
  }
  if (!max_scale) {
    std::memset(y.qs, 0, sizeof y.qs);
    return;
  }
  const float d = max_scale / 31;
  y.d = f32_to_f16(d * 1.0125f);  // ggml's fudge factor
  const float id = 1 / d;
  for (int ib = 0; ib < QK_K / 32; ib++) scales_and_signs[ib] |= uint32_t(scale_code(id, scales[ib])) << 28;
  std::memcpy(y.qs, q3, QK_K / 4);
  std::memcpy(y.qs + QK_K / 4, scales_and_signs, sizeof scales_and_signs);
}

// IQ3_S: 512 grid points (a ninth index bit in qh), 8 explicit sign bits per
// 8 values (no parity folding), a 4-bit scale per 32.
void iq3_s_block(const Lattice& lat, const float* xbl, const float* qw, BlockIQ3_S& y) {
  constexpr int kMaxQ = 8, kBlock = 32;
  float scales[QK_K / kBlock], weight[kBlock], xval[kBlock], waux[kBlock];
  int8_t L[kBlock];
  uint8_t block_signs[kBlock / 8];
  std::memset(&y, 0, sizeof y);
  // Each group's indices and signs at its own place. (ggml advances its qs and signs cursors only past
  // groups that are not all zero, so after such a group the next ones are stored one group early while
  // qh stays in place, and every decoder then reads them wrong; lmpress's bytes differ from ggml's only
  // in such blocks, which ggml cannot decode.)
  float max_scale = 0;
  const float sigma2 = block_sigma2(xbl, 2);
  for (int ib = 0; ib < QK_K / kBlock; ib++) {
    const float* xb = xbl + kBlock * ib;
    group_weights(xb, qw ? qw + kBlock * ib : nullptr, sigma2, kBlock, NoImportance::x2, weight, waux);
    for (int k = 0; k < kBlock / 8; k++) {
      uint8_t sg = 0;
      for (int i = 0; i < 8; i++) {
        const float v = xb[8 * k + i];
        xval[8 * k + i] = v >= 0 ? v : -v;
        if (v < 0) sg |= uint8_t(1 << i);
      }
      block_signs[k] = sg;
    }
    float max = xval[0];
    for (int i = 1; i < kBlock; i++) max = std::max(max, xval[i]);
    std::memset(L, 0, kBlock);
    if (!max) {
      scales[ib] = 0;
      continue;
    }
    // Every point snapped again when any was off the grid (ggml: the skip of on-grid points is commented out).
    float scale = lattice_search(lat, {kBlock, kMaxQ, 9, 0.2f, max, max / (2 * kMaxQ - 1), false, Refit::if_off_all},
                                 xval, weight, waux, L);
    if (scale < 0) {
      scale = -scale;
      for (int k = 0; k < kBlock / 8; k++) block_signs[k] = uint8_t(~block_signs[k]);
    }
    for (int k = 0; k < kBlock / 4; k++) {
      const int g = grid_index(lat, L + 4 * k);
      y.qs[ib * kBlock / 4 + k] = uint8_t(g & 255);
      y.qh[(ib * kBlock / 4 + k) / 8] |= uint8_t((g >> 8) << ((ib * kBlock / 4 + k) % 8));
    }
    for (int k = 0; k < kBlock / 8; k++) y.signs[ib * kBlock / 8 + k] = block_signs[k];
    scales[ib] = scale;
    max_scale = std::max(max_scale, scale);
  }
  if (!max_scale) return;
  const float d = max_scale / 31;
  y.d = f32_to_f16(d * 1.033f);  // ggml's fudge factor
  const float id = 1 / d;
  for (int ib = 0; ib < QK_K / kBlock; ib += 2)
    y.scales[ib / 2] = uint8_t(scale_code(id, scales[ib]) | (scale_code(id, scales[ib + 1]) << 4));
}

// ---- IQ1_S / IQ1_M (ggml-quants.c quantize_row_iq1_s_impl / quantize_row_iq1_m_impl, step for step).
// Three levels −1, 0, 1 shifted by ±1/8 per group; each group's two split points are found exhaustively
// over its values sorted with the C library's qsort (as ggml does, so ties fall the same way).

constexpr float kIq1Delta = 0.125f;

// A value and its index, the layout ggml sorts (two 4-byte fields, compared by the value).
struct Iq1Pair {
  float x;
  int32_t i;
};
int iq1_compare(const void* a, const void* b) {
  const float l = static_cast<const Iq1Pair*>(a)->x, r = static_cast<const Iq1Pair*>(b)->x;
  return l < r ? -1 : l > r ? 1 : 0;
}

// Values xb[0..n) sorted ascending (ties as qsort leaves them).
void iq1_sort(const float* xb, int n, Iq1Pair* pairs) {
  for (int j = 0; j < n; j++) pairs[j] = {xb[j], j};
  std::qsort(pairs, size_t(n), sizeof(Iq1Pair), iq1_compare);
}

// Levels 0, 1, 2 of the sorted values split at i1 <= i2; a negative scale
// flips them (the caller flips its shift). Returns |scale|.
float iq1_split(const Iq1Pair* pairs, int n, int i1, int i2, float scale, int8_t* L) {
  for (int j = 0; j < i1; j++) L[pairs[j].i] = 0;
  for (int j = i1; j < i2; j++) L[pairs[j].i] = 1;
  for (int j = i2; j < n; j++) L[pairs[j].i] = 2;
  if (scale >= 0) return scale;
  for (int j = 0; j < n; j++) L[j] = int8_t(2 - L[j]);
  return -scale;
}

// ggml's iq1_find_best_neighbour2: snap with the stored levels standing for the shifted values xx.
int iq1_snap(const Lattice& lat, const float* xval, const float* w, float scale, const float* xx, int8_t* L,
             bool* on_grid) {
  return snap_as(lat, xval, w, scale, L, on_grid, [xx](int8_t q) { return xx[(q - 1) / 2]; });
}

// The weighted least-squares scale of xb on the grid points `index` (values xx[level], xx per point).
template <class Shifted>
float iq1_refit(const Lattice& lat, const float* xb, const float* weight, const uint16_t* index, int points,
                Shifted xx_of, float scale) {
  float sumqx = 0, sumq2 = 0;
  for (int k = 0; k < points; k++) {
    const float* xx = xx_of(k);
    const int8_t* pg = lat.point(index[k]);
    for (int j = 0; j < 8; j++) {
      const float w = weight[8 * k + j];
      const float q = xx[(pg[j] - 1) / 2];
      sumqx += w * q * xb[8 * k + j];
      sumq2 += w * q * q;
    }
  }
  return sumqx > 0 && sumq2 > 0 ? sumqx / sumq2 : scale;
}

void iq1_s_block(const Lattice& lat, const float* xbl, const float* qwbl, BlockIQ1_S& y) {
  constexpr int kBlock = 32;
  const float x_p[3] = {-1 + kIq1Delta, kIq1Delta, 1 + kIq1Delta};
  const float x_m[3] = {-1 - kIq1Delta, -kIq1Delta, 1 - kIq1Delta};
  y.d = f32_to_f16(0.f);
  std::memset(y.qs, 0, sizeof y.qs);
  std::memset(y.qh, 0, sizeof y.qh);
  float scales[QK_K / kBlock], weight[kBlock], sumx[kBlock + 1], sumw[kBlock + 1];
  int8_t L[kBlock], shifts[QK_K / kBlock];
  Iq1Pair pairs[kBlock];
  uint16_t index[kBlock / 8];
  float max_scale = 0;
  const float sigma2 = block_sigma2(xbl, 2);
  for (int ib = 0; ib < QK_K / kBlock; ib++) {
    const float* xb = xbl + kBlock * ib;
    const float* qw = qwbl + kBlock * ib;
    for (int i = 0; i < kBlock; i++) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
    float max = std::fabs(xb[0]);
    for (int i = 1; i < kBlock; i++) max = std::max(max, std::fabs(xb[i]));
    if (max < 1e-12f) {  // GROUP_MAX_EPS_IQ1_S
      scales[ib] = 0, shifts[ib] = 1;
      continue;
    }
    iq1_sort(xb, kBlock, pairs);
    sumx[0] = sumw[0] = 0;
    for (int j = 0; j < kBlock; j++) {
      const int i = pairs[j].i;
      sumx[j + 1] = sumx[j] + weight[i] * xb[i];
      sumw[j + 1] = sumw[j] + weight[i];
    }
    float best_score = -FLT_MAX, scale = max;
    int besti1 = -1, besti2 = -1, best_shift = 0;
    for (int i1 = 0; i1 <= kBlock; i1++)
      for (int i2 = i1; i2 <= kBlock; i2++) {
        for (const float* xs : {x_p, x_m}) {
          const float sumqx = (sumx[i1] - sumx[0]) * xs[0] + (sumx[i2] - sumx[i1]) * xs[1] + (sumx[kBlock] - sumx[i2]) * xs[2];
          const float sumq2 = (sumw[i1] - sumw[0]) * xs[0] * xs[0] + (sumw[i2] - sumw[i1]) * xs[1] * xs[1] +
                              (sumw[kBlock] - sumw[i2]) * xs[2] * xs[2];
          if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
            scale = sumqx / sumq2, best_score = scale * sumqx;
            besti1 = i1, besti2 = i2, best_shift = xs == x_p ? 1 : -1;
          }
        }
      }
    if (besti1 < 0 || besti2 < 0 || best_shift == 0) {
      scales[ib] = 0, shifts[ib] = 1;
      continue;
    }
    if (scale < 0) best_shift = -best_shift;
    scale = iq1_split(pairs, kBlock, besti1, besti2, scale, L);
    bool all_on_grid = true;
    const float* xx = best_shift == 1 ? x_p : x_m;
    for (int k = 0; k < kBlock / 8; k++) {
      bool on = true;
      index[k] = uint16_t(iq1_snap(lat, xb + 8 * k, weight + 8 * k, scale, xx, L + 8 * k, &on));
      all_on_grid = all_on_grid && on;
    }
    if (!all_on_grid) scale = iq1_refit(lat, xb, weight, index, kBlock / 8, [&](int) { return xx; }, scale);
    uint16_t h = 0;
    for (int k = 0; k < kBlock / 8; k++) {
      y.qs[(kBlock / 8) * ib + k] = uint8_t(index[k] & 255);
      h = uint16_t(h | ((index[k] >> 8) << (3 * k)));
    }
    y.qh[ib] = h;
    scales[ib] = scale, shifts[ib] = int8_t(best_shift);
    max_scale = std::max(max_scale, scale);
  }
  if (!max_scale) return;
  const float d = max_scale / 15;
  y.d = f32_to_f16(d * 1.125f);  // ggml's fudge factor
  const float id = 1 / d;
  for (int ib = 0; ib < QK_K / kBlock; ib++) {
    int l = std::max(0, std::min(7, nearest_int(0.5f * (id * scales[ib] - 1))));
    if (shifts[ib] == -1) l |= 8;
    y.qh[ib] = uint16_t(y.qh[ib] | (l << 12));
  }
}

void iq1_m_block(const Lattice& lat, const float* xbl, const float* qwbl, BlockIQ1_M& y) {
  constexpr int kBlock = 16;
  const float x_p[3] = {-1 + kIq1Delta, kIq1Delta, 1 + kIq1Delta};
  const float x_m[3] = {-1 - kIq1Delta, -kIq1Delta, 1 - kIq1Delta};
  const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88};
  std::memset(y.qs, 0, sizeof y.qs);
  std::memset(y.qh, 0, sizeof y.qh);
  std::memset(y.scales, 0, sizeof y.scales);
  float scales[QK_K / kBlock], weight[kBlock];
  int8_t L[kBlock], shifts[QK_K / kBlock];
  Iq1Pair pairs[kBlock];
  uint16_t index[kBlock / 8];
  float max_scale = 0;
  const float sigma2 = block_sigma2(xbl, 2);
  auto weights_of = [&](const float* xb, int ib) {
    if (qwbl) {
      const float* qw = qwbl + kBlock * ib;
      for (int i = 0; i < kBlock; i++) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
    } else {
      for (int i = 0; i < kBlock; i++) weight[i] = xb[i] * xb[i];
    }
  };
  // Shift of point k of a group with shift code c: 0 (+, +), 1 (+, −), 2 (−, +), 3 (−, −).
  auto xx_of = [&](int c, int k) { return k == 0 ? (c < 2 ? x_p : x_m) : (c % 2 == 0 ? x_p : x_m); };
  for (int ib = 0; ib < QK_K / kBlock; ib++) {
    const float* xb = xbl + kBlock * ib;
    weights_of(xb, ib);
    float max = std::fabs(xb[0]);
    for (int i = 1; i < kBlock; i++) max = std::max(max, std::fabs(xb[i]));
    if (max < 1e-7f) {  // GROUP_MAX_EPS_IQ1_M
      scales[ib] = 0, shifts[ib] = 0;
      continue;
    }
    iq1_sort(xb, kBlock, pairs);
    float best_score = -FLT_MAX, scale = max;
    int besti1 = -1, besti2 = -1, best_k = -1;
    // Prefix sums per half of the group (each half has its own shift); with v0 − v1 = v1 − v2 = −1 the
    // three-level sums of a split collapse to T·v2 − px[i1] − px[i2].
    float px[2][kBlock + 1], pw[2][kBlock + 1];
    px[0][0] = px[1][0] = 0;
    pw[0][0] = pw[1][0] = 0;
    for (int j = 0; j < kBlock; j++) {
      const int i = pairs[j].i;
      const int h = i < kBlock / 2 ? 0 : 1;
      px[h][j + 1] = px[h][j] + weight[i] * xb[i];
      px[1 - h][j + 1] = px[1 - h][j];
      pw[h][j + 1] = pw[h][j] + weight[i];
      pw[1 - h][j + 1] = pw[1 - h][j];
    }
    const float txs[2] = {px[0][kBlock], px[1][kBlock]}, tws[2] = {pw[0][kBlock], pw[1][kBlock]};
    const float p2 = x_p[2], m2 = x_m[2];
    const float cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1], cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2];
    const float cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1], cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2];
    for (int i1 = 0; i1 <= kBlock; i1++)
      for (int i2 = i1; i2 <= kBlock; i2++) {
        float qx_p[2], qx_m[2], q2_p[2], q2_m[2];
        for (int h = 0; h < 2; h++) {
          const float sx = px[h][i1] + px[h][i2];
          qx_p[h] = txs[h] * p2 - sx;
          qx_m[h] = txs[h] * m2 - sx;
          q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
          q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
        }
        const float sumqx[4] = {qx_p[0] + qx_p[1], qx_p[0] + qx_m[1], qx_m[0] + qx_p[1], qx_m[0] + qx_m[1]};
        const float sumq2[4] = {q2_p[0] + q2_p[1], q2_p[0] + q2_m[1], q2_m[0] + q2_p[1], q2_m[0] + q2_m[1]};
        for (int k = 0; k < 4; k++)
          if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best_score * sumq2[k]) {
            scale = sumqx[k] / sumq2[k], best_score = scale * sumqx[k];
            besti1 = i1, besti2 = i2, best_k = k;
          }
      }
    if (besti1 < 0 || besti2 < 0 || best_k < 0) {
      scales[ib] = 0, shifts[ib] = 0;
      continue;
    }
    if (scale < 0) best_k = 3 - best_k;
    scale = iq1_split(pairs, kBlock, besti1, besti2, scale, L);
    bool all_on_grid = true;
    for (int k = 0; k < kBlock / 8; k++) {
      bool on = true;
      index[k] = uint16_t(iq1_snap(lat, xb + 8 * k, weight + 8 * k, scale, xx_of(best_k, k), L + 8 * k, &on));
      all_on_grid = all_on_grid && on;
    }
    if (!all_on_grid)
      scale = iq1_refit(lat, xb, weight, index, kBlock / 8, [&](int k) { return xx_of(best_k, k); }, scale);
    y.qs[2 * ib + 0] = uint8_t(index[0] & 255);
    y.qs[2 * ib + 1] = uint8_t(index[1] & 255);
    y.qh[ib] = uint8_t((index[0] >> 8) | ((index[1] >> 8) << 4));
    scales[ib] = scale, shifts[ib] = int8_t(best_k);
    max_scale = std::max(max_scale, scale);
  }
  if (!max_scale) return;
  uint16_t sc[4] = {0, 0, 0, 0};
  float d = max_scale / 15;
  const float id = 1 / d;
  float sumqx = 0, sumq2 = 0;
  for (int ib = 0; ib < QK_K / kBlock; ib++) {
    const int l = std::max(0, std::min(7, nearest_int(0.5f * (id * scales[ib] - 1))));
    sc[ib / 4] = uint16_t(sc[ib / 4] | (l << (3 * (ib % 4))));
    y.qh[ib] = uint8_t(y.qh[ib] | masks[shifts[ib]]);
    const float* xb = xbl + kBlock * ib;
    weights_of(xb, ib);
    for (int k = 0; k < kBlock / 8; k++) {
      const float* xx = xx_of(shifts[ib], k);
      const int g = y.qs[2 * ib + k] + ((y.qh[ib] << (8 - 4 * k)) & 0x700);
      const int8_t* pg = lat.point(g);
      for (int j = 0; j < 8; j++) {
        const float w = weight[8 * k + j];
        const float q = xx[(pg[j] - 1) / 2] * float(2 * l + 1);
        sumqx += w * q * xb[8 * k + j];
        sumq2 += w * q * q;
      }
    }
  }
  if (sumq2 > 0) d = sumqx / sumq2;
  const uint16_t u = f32_to_f16(d * 1.1125f);  // ggml's fudge factor
  sc[0] = uint16_t(sc[0] | ((u & 0x000f) << 12));
  sc[1] = uint16_t(sc[1] | ((u & 0x00f0) << 8));
  sc[2] = uint16_t(sc[2] | ((u & 0x0f00) << 4));
  sc[3] = uint16_t(sc[3] | ((u & 0xf000) << 0));
  std::memcpy(y.scales, sc, sizeof sc);
}

template <typename B, void (*Block)(const Lattice&, const float*, const float*, B&)>
void quantize_rows(DType t, const float* x, int64_t n, uint8_t* out, const float* importance) {
  if (!importance && quantizer_needs_importance(t)) fail("internal: {} needs importance weights", dtype_name(t));
  const Lattice& lat = lattice(t);
  auto* y = reinterpret_cast<B*>(out);
  for (int64_t b = 0; b < n / QK_K; b++) Block(lat, x + b * QK_K, importance ? importance + b * QK_K : nullptr, y[b]);
}

}  // namespace

void quantize_row_iq2_xxs(const float* x, int64_t n, uint8_t* out, const float* importance) {
  quantize_rows<BlockIQ2_XXS, iq2_xxs_block>(DType::IQ2_XXS, x, n, out, importance);
}
void quantize_row_iq2_xs(const float* x, int64_t n, uint8_t* out, const float* importance) {
  quantize_rows<BlockIQ2_XS, iq2_xs_block>(DType::IQ2_XS, x, n, out, importance);
}
void quantize_row_iq2_s(const float* x, int64_t n, uint8_t* out, const float* importance) {
  quantize_rows<BlockIQ2_S, iq2_s_block>(DType::IQ2_S, x, n, out, importance);
}
void quantize_row_iq3_xxs(const float* x, int64_t n, uint8_t* out, const float* importance) {
  quantize_rows<BlockIQ3_XXS, iq3_xxs_block>(DType::IQ3_XXS, x, n, out, importance);
}
void quantize_row_iq3_s(const float* x, int64_t n, uint8_t* out, const float* importance) {
  quantize_rows<BlockIQ3_S, iq3_s_block>(DType::IQ3_S, x, n, out, importance);
}
void quantize_row_iq1_s(const float* x, int64_t n, uint8_t* out, const float* importance) {
  quantize_rows<BlockIQ1_S, iq1_s_block>(DType::IQ1_S, x, n, out, importance);
}
void quantize_row_iq1_m(const float* x, int64_t n, uint8_t* out, const float* importance) {
  quantize_rows<BlockIQ1_M, iq1_m_block>(DType::IQ1_M, x, n, out, importance);
}

}  // namespace lmpress
