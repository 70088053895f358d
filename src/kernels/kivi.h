// KIVI's group format (Liu et al., 2024, "KIVI: a tuning-free asymmetric 2bit
// quantization for KV cache"): G values quantized together to `bits` bits
// (4 or 2) against their own minimum and range, stored as an f16 scale, an f16
// minimum and the G codes packed low bits first (value i of a byte at bit
// bits·(i mod 8/bits)). x ≈ code·scale + min. Keys use one group per channel
// over G positions (the values are a column of the cache, `stride` apart),
// values one group per G channels of a position.
#pragma once
#include <cstdint>

namespace lmpress {

// Bytes of one group of g values.
inline int64_t kivi_group_bytes(int bits, int64_t g) { return 4 + g * bits / 8; }
// Quantizes x[0], x[stride], ..., x[(g-1)·stride] into `out`. The scale and
// minimum are rounded to f16 first and the codes chosen against the rounded
// ones, so dequantization reproduces what the rounding chose.
void kivi_quantize(int bits, const float* x, int64_t stride, int64_t g, uint8_t* out);
// Values from..from+n-1 of a group of g as floats.
void kivi_dequantize(int bits, const uint8_t* group, int64_t g, int64_t from, int64_t n, float* out);

}  // namespace lmpress
