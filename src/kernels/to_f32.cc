#include "kernels/to_f32.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "core/low_rank_tensor.h"
#include "kernels/blocks.h"

namespace lmpress {

namespace {

// 16-bit floats (possibly unaligned in the file) to f32.
template <float (*Convert)(uint16_t)>
void widen(const uint8_t* p, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; i++) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    dst[i] = Convert(h);
  }
}

}  // namespace

void to_f32(const Tensor& t, int64_t offset, int64_t n, float* dst) {
  if (t.dtype == DType::LOW_RANK) {
    // Rows of B·A: A converted once, each row a combination of A's rows.
    const LowRankPair& p = low_rank_parts(t);
    const int64_t cols = t.cols(), r = p.a.shape[0];
    if (offset % cols || n % cols) fail("tensor {}: range [{}, +{}) does not fall on row boundaries", t.name, offset, n);
    const std::vector<float> a = to_f32(p.a);
    std::vector<float> b(static_cast<size_t>(r));
    for (int64_t row = offset / cols; row < (offset + n) / cols; row++, dst += cols) {
      to_f32(p.b, row * r, r, b.data());
      std::fill(dst, dst + cols, 0.0f);
      for (int64_t k = 0; k < r; k++)
        for (int64_t c = 0; c < cols; c++) dst[c] += b[size_t(k)] * a[size_t(k * cols + c)];
    }
    return;
  }
  if (is_row_indexed(t.dtype) || is_row_interleaved(t.dtype)) {
    // Rows of varying size, or rows spread over an interleaved group: whole rows only.
    const int64_t cols = t.cols();
    if (offset % cols || n % cols)
      fail("tensor {}: range [{}, +{}) does not fall on row boundaries", t.name, offset, n);
    for (int64_t r = offset / cols; r < (offset + n) / cols; r++, dst += cols) {
      if (is_row_interleaved(t.dtype))
        dequantize_interleaved_row(t.dtype, t.data, cols, r, dst);
      else if (!dequantize_row(t.dtype, row_data(t, r), cols, dst))
        fail("tensor {}: dtype {} cannot be converted to f32", t.name, dtype_name(t.dtype));
    }
    return;
  }
  switch (t.dtype) {
    case DType::F32:
      std::memcpy(dst, t.data + offset * 4, size_t(n) * 4);
      return;
    case DType::F16:
      widen<f16_to_f32>(t.data + offset * 2, n, dst);
      return;
    case DType::BF16:
      widen<bf16_to_f32>(t.data + offset * 2, n, dst);
      return;
    default: {
      const auto& info = dtype_info(t.dtype);
      if (offset % info.block_elems || n % info.block_elems)
        fail("tensor {}: range [{}, +{}) does not fall on {} block boundaries", t.name, offset, n, info.name);
      if (!dequantize_row(t.dtype, t.data + offset / info.block_elems * info.block_bytes, n, dst))
        fail("tensor {}: dtype {} cannot be converted to f32 yet", t.name, info.name);
    }
  }
}

std::vector<float> to_f32(const Tensor& t) {
  std::vector<float> out(size_t(t.numel()));
  to_f32(t, 0, t.numel(), out.data());
  return out;
}

}  // namespace lmpress
