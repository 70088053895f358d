#include "kernels/i8x8.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "kernels/qdot.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "core/cpu_isa.h"
#include "kernels/avx2_helpers.h"
#endif

namespace lmpress {

void quantize_i8_token_ref(const float* x, int64_t n, uint8_t* out) {
  float amax = 0;
  for (int64_t i = 0; i < n; i++) amax = std::isnan(x[i]) ? x[i] : std::isnan(amax) ? amax : std::max(amax, std::fabs(x[i]));
  // A non-finite row keeps its NaN (the scale) for the outputs to show; a
  // subnormal scale can round past ±127, hence the clamp.
  const float s = std::isfinite(amax) ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
  std::memcpy(out, &s, sizeof s);
  uint8_t* q = out + sizeof s;
  const bool zero = s == 0 || !std::isfinite(s);
  for (int64_t i = 0; i < n; i++)
    q[i] = uint8_t(128 + (zero ? 0 : std::clamp(int(std::nearbyint(x[i] / s)), -127, 127)));
}

#if defined(__x86_64__)
namespace {

// The reference's operations 8 at a time: the same max, the same IEEE
// division and round-to-nearest-even, so the same bytes.
// max|x|, NaN when x holds one (maxps and std::max both drop NaNs).
__attribute__((target("avx2"))) float absmax_avx2(const float* x, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, m);
  float amax = 0;
  bool any_nan = _mm256_movemask_ps(nan) != 0;
  for (float v : lanes) amax = std::max(amax, v);
  for (; i < n; i++) {
    amax = std::max(amax, std::fabs(x[i]));
    any_nan = any_nan || std::isnan(x[i]);
  }
  return any_nan ? std::numeric_limits<float>::quiet_NaN() : amax;
}

__attribute__((target("avx2"))) inline __m256 round_div(__m256 x, __m256 s) {
  return _mm256_round_ps(_mm256_div_ps(x, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

__attribute__((target("avx2"))) void fake_quant_i8_avx2(float* x, int64_t n) {
  const float s = absmax_avx2(x, n) / 127.0f;
  if (s == 0 || !std::isfinite(s)) return;  // zeros, a row too small for a scale, or a non-finite row: left as is
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(vs, round_div(_mm256_loadu_ps(x + i), vs)));
  for (; i < n; i++) x[i] = s * std::nearbyint(x[i] / s);
}

__attribute__((target("avx2"))) void quantize_i8_token_avx2(const float* x, int64_t n, uint8_t* out) {
  int64_t i = 0;
  const float amax = absmax_avx2(x, n);
  const float s = std::isfinite(amax) ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
  std::memcpy(out, &s, sizeof s);
  uint8_t* q = out + sizeof s;
  if (s == 0 || !std::isfinite(s)) {
    std::memset(q, 128, size_t(n));
    return;
  }
  const __m256 vs = _mm256_set1_ps(s);
  const __m256i off = _mm256_set1_epi32(128), lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 r = round_div(_mm256_loadu_ps(x + i), vs);
    const __m256i v = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(r), lo), hi), off);  // 1..255
    const __m256i p16 = _mm256_packus_epi32(v, v);                   // per 128-bit lane: 4 values twice
    const __m256i p8 = _mm256_packus_epi16(p16, p16);
    const uint32_t lo = uint32_t(_mm256_cvtsi256_si32(p8)), hi = uint32_t(_mm256_extract_epi32(p8, 4));
    std::memcpy(q + i, &lo, 4);
    std::memcpy(q + i + 4, &hi, 4);
  }
  for (; i < n; i++) q[i] = uint8_t(128 + std::clamp(int(std::nearbyint(x[i] / s)), -127, 127));
}

}  // namespace
#endif

void quantize_i8_token(const float* x, int64_t n, uint8_t* out) {
#if defined(__x86_64__)
  if (qdot_simd_active()) return quantize_i8_token_avx2(x, n, out);
#endif
  quantize_i8_token_ref(x, n, out);
}

void fake_quant_i8_token(float* x, int64_t n) {
#if defined(__x86_64__)
  if (qdot_simd_active()) return fake_quant_i8_avx2(x, n);
#endif
  float amax = 0;
  for (int64_t i = 0; i < n; i++) amax = std::max(amax, std::fabs(x[i]));
  const float s = amax / 127.0f;
  if (s == 0 || !std::isfinite(s)) return;  // as the AVX2 version
  for (int64_t i = 0; i < n; i++) x[i] = s * std::nearbyint(x[i] / s);
}

std::optional<std::vector<float>> int8_row_scales(const Tensor& t) {
  if (t.dtype != DType::F32 || t.shape.size() != 2) return std::nullopt;
  const int64_t rows = t.rows(), cols = t.cols();
  const auto* w = reinterpret_cast<const float*>(t.data);
  std::vector<float> scales(size_t(rows), 0.0f);
  bool ok = true;
#pragma omp parallel for schedule(static) reduction(&& : ok)
  for (int64_t r = 0; r < rows; r++) {
    if (!ok) continue;
    const float* v = w + r * cols;
    float amax = 0;
    for (int64_t i = 0; i < cols; i++) amax = std::max(amax, std::fabs(v[i]));
    if (!std::isfinite(amax)) {
      ok = false;
      continue;
    }
    if (amax == 0) continue;
    bool found = false;
    // 127 first (round-to-nearest puts the largest value there), then -128's 128, then smaller largest values (GPTQ's).
    for (int k = 127; k >= 1 && !found; k = k == 127 ? 128 : k == 128 ? 126 : k - 1) {
      const float s = amax / float(k), inv = float(k) / amax;
      bool fits = true;
      for (int64_t i = 0; i < cols && fits; i++) {
        const float u = v[i] * inv, q = float(int(u >= 0 ? u + 0.5f : u - 0.5f));
        fits = std::fabs(u - q) <= 1e-4f && q >= -128 && q <= 127;
      }
      if (fits) {
        scales[size_t(r)] = s;
        found = true;
      }
    }
    ok = found;
  }
  if (!ok) return std::nullopt;
  return scales;
}

Tensor repack_i8x8(const Tensor& t) {
  const auto scales = int8_row_scales(t);
  if (!scales) fail("internal: {} cannot be repacked as {}", t.name, dtype_name(DType::I8_X8));
  return repack_i8x8(t, *scales);
}

Tensor repack_i8x8(const Tensor& t, const std::vector<float>& scales) {
  if (t.dtype != DType::F32 || t.shape.size() != 2 || t.rows() % 8 || t.cols() % 32 ||
      int64_t(scales.size()) != t.rows())
    fail("internal: {} cannot be repacked as {}", t.name, dtype_name(DType::I8_X8));
  const int64_t rows = t.rows(), cols = t.cols();
  const uint64_t gb = i8x8_group_bytes(cols);
  auto buf = std::make_shared<std::vector<uint8_t>>(size_t(uint64_t(rows / 8) * gb));
  const auto* w = reinterpret_cast<const float*>(t.data);
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < rows / 8; g++) {
    uint8_t* dst = buf->data() + uint64_t(g) * gb;
    I8x8Header h{};
    auto* q = reinterpret_cast<int8_t*>(dst + sizeof h);
    for (int r = 0; r < 8; r++) {
      const float s = scales[size_t(8 * g + r)], inv = s != 0 ? 1.0f / s : 0.0f;
      const float* v = w + (8 * g + r) * cols;
      h.d[r] = s;
      int32_t sum = 0;
      for (int64_t i = 0; i < cols; i++) {
        const float u = v[i] * inv;  // within 1e-4 of an integer (int8_row_scales)
        const auto x = int8_t(int(u >= 0 ? u + 0.5f : u - 0.5f));
        q[32 * (i / 4) + 4 * r + i % 4] = x;
        sum += x;
      }
      h.bias[r] = 128 * sum;
    }
    std::memcpy(dst, &h, sizeof h);
  }
  Tensor out = t;
  out.dtype = DType::I8_X8;
  out.data = buf->data();
  out.nbytes = buf->size();
  out.owner = buf;
  return out;
}

void dequantize_i8x8_row(const uint8_t* group, int64_t cols, int r, float* out) {
  I8x8Header h;
  std::memcpy(&h, group, sizeof h);
  const auto* q = reinterpret_cast<const int8_t*>(group + sizeof h);
  for (int64_t i = 0; i < cols; i++) out[i] = float(q[32 * (i / 4) + 4 * r + i % 4]) * h.d[r];
}

std::vector<uint8_t> unpack_i8x8(const Tensor& t) {
  const int64_t rows = t.rows(), cols = t.cols();
  std::vector<uint8_t> out(size_t(rows * cols) * sizeof(float));
  auto* dst = reinterpret_cast<float*>(out.data());
  for (int64_t r = 0; r < rows; r++)
    dequantize_i8x8_row(t.data + uint64_t(r / 8) * i8x8_group_bytes(cols), cols, int(r % 8), dst + r * cols);
  return out;
}

void gemv_i8x8_ref(int64_t cols, const uint8_t* group, const uint8_t* act, float* out) {
  I8x8Header h;
  std::memcpy(&h, group, sizeof h);
  const auto* q = reinterpret_cast<const int8_t*>(group + sizeof h);
  float s;
  std::memcpy(&s, act, sizeof s);
  const uint8_t* x = act + sizeof s;
  for (int r = 0; r < 8; r++) {
    int32_t dot = 0;
    for (int64_t i = 0; i < cols; i++) dot += int32_t(x[i]) * q[32 * (i / 4) + 4 * r + i % 4];
    out[r] = float(dot - h.bias[r]) * (h.d[r] * s);
  }
}

#if defined(__x86_64__)
namespace simd_avx2::i8x8 {
#define LMPRESS_I8_TARGET "avx2,fma"
#define LMPRESS_I8_DPBUSD simd_avx2::dpbusd_emulated
#include "kernels/i8x8_kernels.inc"
#undef LMPRESS_I8_TARGET
#undef LMPRESS_I8_DPBUSD
}  // namespace simd_avx2::i8x8

namespace simd_avxvnni::i8x8 {
#define LMPRESS_I8_TARGET "avx2,fma,avxvnni"
#define LMPRESS_I8_DPBUSD _mm256_dpbusd_avx_epi32
#include "kernels/i8x8_kernels.inc"
#undef LMPRESS_I8_TARGET
#undef LMPRESS_I8_DPBUSD
}  // namespace simd_avxvnni::i8x8

namespace simd_avx512vnni::i8x8 {
#define LMPRESS_I8_TARGET "avx2,fma,avx512f,avx512vl,avx512vnni"
#define LMPRESS_I8_DPBUSD _mm256_dpbusd_epi32
#include "kernels/i8x8_kernels.inc"
#undef LMPRESS_I8_TARGET
#undef LMPRESS_I8_DPBUSD
}  // namespace simd_avx512vnni::i8x8
#endif

namespace {
void gemv_i8x8_ref_x8(int64_t cols, const void* g, const void* a, const int32_t*, float* out) {
  gemv_i8x8_ref(cols, static_cast<const uint8_t*>(g), static_cast<const uint8_t*>(a), out);
}
void gemm4_i8x8_ref(int64_t cols, const void* g, const void* a, const int32_t*, int64_t stride, float* out,
                    int64_t out_stride) {
  for (int64_t t = 0; t < 4; t++)
    gemv_i8x8_ref(cols, static_cast<const uint8_t*>(g), static_cast<const uint8_t*>(a) + t * stride,
                  out + t * out_stride);
}
}  // namespace

X8Kernels i8x8_kernels() {
#if defined(__x86_64__)
  if (qdot_simd_active()) switch (qdot_vnni()) {
      case Vnni::avx: return simd_avxvnni::i8x8::kernels();
      case Vnni::avx512: return simd_avx512vnni::i8x8::kernels();
      case Vnni::emulated:
      case Vnni::none: return simd_avx2::i8x8::kernels();
    }
#endif
  return {gemv_i8x8_ref_x8, gemm4_i8x8_ref};
}

}  // namespace lmpress
