#include "quant/iq_quants.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
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
  std::vector<std::pair<int, int>> dist(static_cast<size_t>(grid_size));  // (squared distance, grid index)
  for (int u = 0; u < map_size; u++) {
    if (lat.map[size_t(u)] >= 0) continue;
    for (int k = 0; k < grid_size; k++) {
      int d2 = 0;
      for (int j = 0; j < dim; j++) {
        const int pos = 2 * ((u >> (bits * j)) & ((1 << bits) - 1)) + 1;
        const int diff = lat.points[size_t(k * dim + j)] - pos;
        d2 += diff * diff;
      }
      dist[size_t(k)] = {d2, k};
    }
    std::sort(dist.begin(), dist.end());
    lat.map[size_t(u)] = -int(lat.neighbours.size() + 1);
    const size_t start = lat.neighbours.size();
    lat.neighbours.push_back(0);
    int d2 = dist[0].first, nhave = 1, n = 0;
    for (const auto& [d, k] : dist) {
      if (d > d2) {
        if (nhave == nwant) break;
        d2 = d;
        ++nhave;
      }
      lat.neighbours.push_back(uint16_t(k));
      ++n;
    }
    lat.neighbours[start] = uint16_t(n);
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

const Lattice& lattice(DType t) {
  switch (t) {
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
// on_grid (optional): whether L was on the grid.
int snap(const Lattice& lat, const float* xval, const float* w, float scale, int8_t* L, bool* on_grid = nullptr) {
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
      const float diff = scale * float(pg[i]) - xval[i];
      d2 += w[i] * diff * diff;
    }
    if (d2 < best_d2) best_d2 = d2, best = nb[j];
  }
  const int8_t* pg = lat.point(best);
  for (int i = 0; i < lat.dim; i++) L[i] = int8_t((pg[i] - 1) / 2);
  return best;
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

}  // namespace lmpress
