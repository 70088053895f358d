#include "kernels/lmp2.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/hadamard.h"
#include "kernels/iq_grids.h"

namespace lmpress {
namespace {

// Patterns of 4·|p| ∈ {2, 6, 10, 14} (p ∈ {½, 3/2, 5/2, 7/2}), in order of
// squared norm and then lexicographically: all of Σ(4p)² ≤ 160 (norm² ≤ 10),
// then the first 29 with five 3/2 and three ½ (norm² 12).
std::array<uint64_t, 256> make_grid() {
  std::vector<std::array<int, 8>> small, twelve;
  for (int code = 0; code < 1 << 16; code++) {
    std::array<int, 8> a{};
    int norm = 0, threes = 0;
    for (int j = 0; j < 8; j++) {
      a[size_t(j)] = 2 + 4 * ((code >> (2 * (7 - j))) & 3);
      norm += a[size_t(j)] * a[size_t(j)];
      threes += a[size_t(j)] == 6;
    }
    if (norm <= 160)
      small.push_back(a);
    else if (norm == 192 && threes == 5)
      twelve.push_back(a);
  }
  auto norm_of = [](const std::array<int, 8>& a) {
    int n = 0;
    for (int v : a) n += v * v;
    return n;
  };
  std::stable_sort(small.begin(), small.end(), [&](const auto& x, const auto& y) { return norm_of(x) < norm_of(y); });
  small.insert(small.end(), twelve.begin(), twelve.begin() + (256 - int64_t(small.size())));
  std::array<uint64_t, 256> g{};
  for (size_t i = 0; i < 256; i++) {
    // A point of (ℤ + ½)⁸ is in E8 when its coordinates sum to an even
    // number: with magnitudes m_j = a_j / 4, an odd Σ m_j needs an odd count of minus signs.
    int sum4 = 0;
    for (int v : small[i]) sum4 += v;
    const bool odd_signs = (sum4 / 4) % 2 == 1;
    for (int j = 0; j < 8; j++) {
      const int v = (j == 7 && odd_signs) ? -small[i][size_t(j)] : small[i][size_t(j)];
      g[i] |= uint64_t(uint8_t(int8_t(v))) << (8 * j);
    }
  }
  return g;
}

// The rotation's signs: a fixed pattern (splitmix64 from a constant seed), part of the format.
std::array<float, kLmp2Block> make_signs() {
  std::array<float, kLmp2Block> s{};
  uint64_t state = 0x4c4d5032u;  // "LMP2"
  uint64_t bits = 0;
  for (int i = 0; i < kLmp2Block; i++) {
    if (i % 64 == 0) {
      uint64_t z = (state += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      bits = z ^ (z >> 31);
    }
    s[size_t(i)] = (bits >> (i % 64)) & 1 ? -1.0f : 1.0f;
  }
  return s;
}

const std::array<float, kLmp2Block> kSigns = make_signs();

}  // namespace

const std::array<uint64_t, 256> kLmp2Grid = make_grid();

void lmp2_decode(uint16_t code, int8_t* q) {
  const uint64_t e = kLmp2Grid[code & 0xff];
  const uint8_t signs = kIqSigns[(code >> 8) & 127];
  const int shift = code >> 15 ? 1 : -1;
  for (int j = 0; j < 8; j++) {
    const int v = int8_t(uint8_t(e >> (8 * j)));
    q[j] = int8_t(((signs >> j) & 1 ? -v : v) + shift);
  }
}

namespace {
void chunk_words(const BlockLMP2& b, int c, uint32_t* aux) { std::memcpy(aux, b.qs + 4 * c, 2 * sizeof(uint32_t)); }
}  // namespace

uint16_t lmp2_code(const BlockLMP2& b, int g) {
  uint32_t aux[2];
  chunk_words(b, g / 4, aux);
  const int l = g % 4;
  return uint16_t(((aux[0] >> (8 * l)) & 0xff) | ((aux[1] >> (7 * l)) & 127) << 8 | ((aux[1] >> (28 + l)) & 1) << 15);
}

void lmp2_set_code(BlockLMP2& b, int g, uint16_t code) {
  uint32_t aux[2];
  chunk_words(b, g / 4, aux);
  const int l = g % 4;
  aux[0] = (aux[0] & ~(0xffu << (8 * l))) | uint32_t(code & 0xff) << (8 * l);
  aux[1] = (aux[1] & ~(127u << (7 * l)) & ~(1u << (28 + l))) | uint32_t((code >> 8) & 127) << (7 * l) |
           uint32_t(code >> 15) << (28 + l);
  std::memcpy(b.qs + 4 * (g / 4), aux, sizeof aux);
}

void lmp2_rotate(float* x, int64_t n) {
  if (n % kLmp2Block != 0) fail("internal: LMP2 rotates rows of a multiple of {} values, not {}", kLmp2Block, n);
  for (int64_t b = 0; b < n; b += kLmp2Block)
    for (int i = 0; i < kLmp2Block; i++) x[b + i] *= kSigns[size_t(i)];
  hadamard(x, n, kLmp2Block);
}

const float* lmp2_rotated(const float* x, int64_t n) {
  thread_local std::vector<float> buf;
  buf.assign(x, x + n);
  lmp2_rotate(buf.data(), n);
  return buf.data();
}

void lmp2_unrotate(float* x, int64_t n) {
  if (n % kLmp2Block != 0) fail("internal: LMP2 rotates rows of a multiple of {} values, not {}", kLmp2Block, n);
  hadamard(x, n, kLmp2Block);
  for (int64_t b = 0; b < n; b += kLmp2Block)
    for (int i = 0; i < kLmp2Block; i++) x[b + i] *= kSigns[size_t(i)];
}

}  // namespace lmpress
