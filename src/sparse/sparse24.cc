#include "sparse/sparse24.h"

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

bool pack_2of4_f16(const uint16_t* w, int64_t n, BlockF16_2of4* out) {
  for (int64_t b = 0; b < n / 32; b++) {
    BlockF16_2of4& o = out[b];
    std::memset(o.idx, 0, sizeof(o.idx));
    for (int g = 0; g < 8; g++) {
      const uint16_t* x = w + b * 32 + g * 4;
      int pos[2], k = 0;
      for (int p = 0; p < 4 && k < 3; p++)
        if (nz(x[p])) {
          if (k == 2) return false;
          pos[k++] = p;
        }
      // Fewer than two nonzeros: fill with zero-valued positions not yet taken.
      for (int p = 0; p < 4 && k < 2; p++)
        if (!nz(x[p]) && (k == 0 || pos[0] != p)) pos[k++] = p;
      if (pos[0] > pos[1]) std::swap(pos[0], pos[1]);
      o.v[2 * g] = x[pos[0]];
      o.v[2 * g + 1] = x[pos[1]];
      o.idx[g / 2] |= uint8_t((pos[0] | pos[1] << 2) << (4 * (g % 2)));
    }
  }
  return true;
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
