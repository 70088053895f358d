#include "kernels/sparse24.h"

#include <cstring>
#include <utility>

#include "core/fp16.h"

namespace lmpress {

namespace {

// f16 +0 and -0 both count as zero.
bool nz(uint16_t h) { return (h & 0x7fff) != 0; }

}  // namespace

bool is_2of4_f16(const uint16_t* w, int64_t n) {
  for (int64_t g = 0; g < n; g += 4)
    if (nz(w[g]) + nz(w[g + 1]) + nz(w[g + 2]) + nz(w[g + 3]) > 2) return false;
  return true;
}

bool two_of_four_positions(const bool nonzero[4], int pos[2], uint8_t& nibble) {
  int k = 0;
  for (int p = 0; p < 4; p++)
    if (nonzero[p]) {
      if (k == 2) return false;
      pos[k++] = p;
    }
  for (int p = 0; p < 4 && k < 2; p++)
    if (!nonzero[p] && (k == 0 || pos[0] != p)) pos[k++] = p;
  if (pos[0] > pos[1]) std::swap(pos[0], pos[1]);
  nibble = uint8_t(pos[0] | pos[1] << 2);
  return true;
}

namespace {

// Packs the 32 weights of one block: `nz(p)` says whether weight p is nonzero,
// `keep(slot, p)` stores weight p as kept value `slot`.
template <class NonZero, class Keep>
bool pack_block(NonZero nz, Keep keep, uint8_t idx[4]) {
  std::memset(idx, 0, 4);
  for (int g = 0; g < 8; g++) {
    const bool nonzero[4] = {nz(4 * g), nz(4 * g + 1), nz(4 * g + 2), nz(4 * g + 3)};
    int pos[2];
    uint8_t nibble;
    if (!two_of_four_positions(nonzero, pos, nibble)) return false;
    keep(2 * g, 4 * g + pos[0]);
    keep(2 * g + 1, 4 * g + pos[1]);
    idx[g / 2] |= uint8_t(nibble << (4 * (g % 2)));
  }
  return true;
}

}  // namespace

bool pack_2of4_f16(const uint16_t* w, int64_t n, BlockF16_2of4* out) {
  for (int64_t b = 0; b < n / 32; b++) {
    const uint16_t* x = w + b * 32;
    BlockF16_2of4& o = out[b];
    if (!pack_block([&](int p) { return nz(x[p]); }, [&](int slot, int p) { o.v[slot] = x[p]; }, o.idx)) return false;
  }
  return true;
}

bool is_2of4_q8_0(const BlockQ8_0* b, int64_t nblocks) {
  for (int64_t i = 0; i < nblocks; i++)
    for (int g = 0; g < 32; g += 4)
      if ((b[i].qs[g] != 0) + (b[i].qs[g + 1] != 0) + (b[i].qs[g + 2] != 0) + (b[i].qs[g + 3] != 0) > 2) return false;
  return true;
}

bool pack_2of4_q8_0(const BlockQ8_0* b, int64_t nblocks, BlockQ8_0_2of4* out) {
  for (int64_t i = 0; i < nblocks; i++) {
    BlockQ8_0_2of4& o = out[i];
    o.d = b[i].d;
    const int8_t* q = b[i].qs;
    if (!pack_block([&](int p) { return q[p] != 0; }, [&](int slot, int p) { o.v[slot] = q[p]; }, o.idx)) return false;
  }
  return true;
}

void dequantize_2of4_q8_0(const BlockQ8_0_2of4* b, int64_t n, float* y) {
  for (int64_t i = 0; i < n / 32; i++, y += 32) {
    std::memset(y, 0, 32 * sizeof(float));
    const float d = f16_to_f32(b[i].d);
    for (int g = 0; g < 8; g++) {
      const int nib = (b[i].idx[g / 2] >> (4 * (g % 2))) & 15;
      y[g * 4 + (nib & 3)] = d * float(b[i].v[2 * g]);
      y[g * 4 + (nib >> 2)] = d * float(b[i].v[2 * g + 1]);
    }
  }
}

float dot_2of4_q8_0_ref(int64_t n, const void* w, const void* act) {
  const auto* b = static_cast<const BlockQ8_0_2of4*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  float s = 0;
  for (int64_t i = 0; i < n / 32; i++) {
    int32_t dot = 0;
    for (int g = 0; g < 8; g++) {
      const int nib = (b[i].idx[g / 2] >> (4 * (g % 2))) & 15;
      dot += b[i].v[2 * g] * a[i].qs[g * 4 + (nib & 3)] + b[i].v[2 * g + 1] * a[i].qs[g * 4 + (nib >> 2)];
    }
    s += float(dot) * f16_to_f32(b[i].d) * f16_to_f32(a[i].d);
  }
  return s;
}

void dequantize_2of4_f16(const BlockF16_2of4* b, int64_t n, float* y) {
  for (int64_t i = 0; i < n / 32; i++, y += 32) {
    std::memset(y, 0, 32 * sizeof(float));
    for (int g = 0; g < 8; g++) {
      const int nib = (b[i].idx[g / 2] >> (4 * (g % 2))) & 15;
      y[g * 4 + (nib & 3)] = f16_to_f32(b[i].v[2 * g]);
      y[g * 4 + (nib >> 2)] = f16_to_f32(b[i].v[2 * g + 1]);
    }
  }
}

float dot_2of4_f16_ref(int64_t n, const void* w, const float* x) {
  const auto* b = static_cast<const BlockF16_2of4*>(w);
  float s = 0;
  for (int64_t i = 0; i < n / 32; i++, x += 32)
    for (int g = 0; g < 8; g++) {
      const int nib = (b[i].idx[g / 2] >> (4 * (g % 2))) & 15;
      s += f16_to_f32(b[i].v[2 * g]) * x[g * 4 + (nib & 3)] + f16_to_f32(b[i].v[2 * g + 1]) * x[g * 4 + (nib >> 2)];
    }
  return s;
}

}  // namespace lmpress
