#include "kernels/kivi.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"

namespace lmpress {

void kivi_quantize(int bits, const float* x, int64_t stride, int64_t g, uint8_t* out) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < g; i++) lo = std::min(lo, x[i * stride]), hi = std::max(hi, x[i * stride]);
  const int levels = (1 << bits) - 1;
  const uint16_t m_h = f32_to_f16(lo), d_h = f32_to_f16((hi - lo) / float(levels));
  const float m = f16_to_f32(m_h), d = f16_to_f32(d_h);
  const float inv = d > 0 ? 1.0f / d : 0.0f;
  std::memcpy(out, &d_h, 2);
  std::memcpy(out + 2, &m_h, 2);
  uint8_t* q = out + 4;
  std::memset(q, 0, size_t(g * bits / 8));
  const int per_byte = 8 / bits;
  for (int64_t i = 0; i < g; i++) {
    const int c = std::clamp(int(std::lround((x[i * stride] - m) * inv)), 0, levels);
    q[i / per_byte] |= uint8_t(c << (bits * (i % per_byte)));
  }
}

void kivi_dequantize(int bits, const uint8_t* group, int64_t, int64_t from, int64_t n, float* out) {
  uint16_t d_h, m_h;
  std::memcpy(&d_h, group, 2);
  std::memcpy(&m_h, group + 2, 2);
  const float d = f16_to_f32(d_h), m = f16_to_f32(m_h);
  const uint8_t* q = group + 4;
  const int per_byte = 8 / bits, mask = (1 << bits) - 1;
  for (int64_t i = 0; i < n; i++) {
    const int64_t j = from + i;
    out[i] = float((q[j / per_byte] >> (bits * (j % per_byte))) & mask) * d + m;
  }
}

}  // namespace lmpress
