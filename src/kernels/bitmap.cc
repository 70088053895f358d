#include "kernels/bitmap.h"

#include <cstring>

#include "core/error.h"
#include "core/fp16.h"

namespace lmpress {

namespace {

// f16 +0 and -0 both count as zero, as in the 2:4 layout.
bool nz(uint16_t h) { return (h & 0x7fff) != 0; }

}  // namespace

uint64_t bitmap_row_bytes(const uint16_t* w, int64_t n) {
  uint64_t kept = 0;
  for (int64_t i = 0; i < n; i++) kept += nz(w[i]);
  return uint64_t(n / 8) + 2 * kept;
}

uint8_t* pack_bitmap_f16(const uint16_t* w, int64_t n, uint8_t* out) {
  uint8_t* masks = out;
  uint8_t* v = out + n / 8;
  for (int64_t k = 0; k < n / 8; k++) {
    uint8_t m = 0;
    for (int j = 0; j < 8; j++)
      if (nz(w[k * 8 + j])) {
        m |= uint8_t(1u << j);
        std::memcpy(v, &w[k * 8 + j], 2);  // values may sit at odd addresses
        v += 2;
      }
    masks[k] = m;
  }
  return v;
}

void dequantize_bitmap_f16(const uint8_t* row, int64_t n, float* y) {
  const uint8_t* v = row + n / 8;
  for (int64_t i = 0; i < n; i++) {
    if (row[i / 8] >> (i % 8) & 1) {
      uint16_t h;
      std::memcpy(&h, v, 2);
      v += 2;
      y[i] = f16_to_f32(h);
    } else {
      y[i] = 0.0f;
    }
  }
}

float dot_bitmap_f16_ref(int64_t n, const void* row, const float* x) {
  const auto* masks = static_cast<const uint8_t*>(row);
  const uint8_t* v = masks + n / 8;
  float s = 0;
  for (int64_t i = 0; i < n; i++)
    if (masks[i / 8] >> (i % 8) & 1) {
      uint16_t h;
      std::memcpy(&h, v, 2);
      v += 2;
      s += f16_to_f32(h) * x[i];
    }
  return s;
}

std::vector<uint8_t> pack_bitmap_matrix(const uint16_t* w, int64_t rows, int64_t cols) {
  if (cols % 8 != 0) fail("bitmap-sparse layout: {} columns is not a multiple of 8", cols);
  const uint64_t index = uint64_t(rows + 1) * sizeof(uint64_t);
  std::vector<uint64_t> offsets(static_cast<size_t>(rows + 1));
  offsets[0] = index;
  for (int64_t r = 0; r < rows; r++) offsets[size_t(r + 1)] = offsets[size_t(r)] + bitmap_row_bytes(w + r * cols, cols);
  std::vector<uint8_t> out(static_cast<size_t>(offsets[size_t(rows)] + kBitmapTailPad));
  std::memcpy(out.data(), offsets.data(), index);
  for (int64_t r = 0; r < rows; r++) pack_bitmap_f16(w + r * cols, cols, out.data() + offsets[size_t(r)]);
  return out;
}

}  // namespace lmpress
