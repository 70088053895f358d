#include "kernels/kv_types.h"

#include <cstring>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/ops.h"
#include "kernels/qdot.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lmpress {
namespace {

#if defined(__x86_64__)
// AVX2 dequantizers of the cache's hot block types, for attention's block
// conversion: the same operations as the scalar ones in blocks.cc (an exact
// int-to-float conversion, one multiply, then for q4_1 one add), so the same
// floats.
__attribute__((target("avx2,f16c"))) void q8_0_avx2(const BlockQ8_0* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const __m256 d = _mm256_set1_ps(f16_to_f32(x[i].d));
    for (int k = 0; k < 4; k++) {
      const __m256i w = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[i].qs + 8 * k)));
      _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(w), d));
    }
  }
}

// The 32 4-bit codes of a block's 16 bytes: low nibbles (values 0..15), high nibbles (16..31).
__attribute__((target("avx2"))) inline void nibbles_avx2(const uint8_t* qs, __m128i& lo, __m128i& hi) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  lo = _mm_and_si128(b, m);
  hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
}

// 16 signed bytes times d into y[0..16).
__attribute__((target("avx2"))) inline void scale16_avx2(__m128i v, __m256 d, float* y) {
  _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), d));
  _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8))), d));
}

__attribute__((target("avx2,f16c"))) void q4_0_avx2(const BlockQ4_0* x, int64_t nb, float* y) {
  const __m128i eight = _mm_set1_epi8(8);
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const __m256 d = _mm256_set1_ps(f16_to_f32(x[i].d));
    __m128i lo, hi;
    nibbles_avx2(x[i].qs, lo, hi);
    scale16_avx2(_mm_sub_epi8(lo, eight), d, y);
    scale16_avx2(_mm_sub_epi8(hi, eight), d, y + 16);
  }
}

__attribute__((target("avx2,f16c"))) void iq4_nl_avx2(const BlockIQ4_NL* x, int64_t nb, float* y) {
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues));
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const __m256 d = _mm256_set1_ps(f16_to_f32(x[i].d));
    __m128i lo, hi;
    nibbles_avx2(x[i].qs, lo, hi);
    scale16_avx2(_mm_shuffle_epi8(table, lo), d, y);  // d · value == value · d
    scale16_avx2(_mm_shuffle_epi8(table, hi), d, y + 16);
  }
}

__attribute__((target("avx2,f16c"))) void q4_1_avx2(const BlockQ4_1* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const __m256 d = _mm256_set1_ps(f16_to_f32(x[i].d)), m = _mm256_set1_ps(f16_to_f32(x[i].m));
    __m128i q[2];
    nibbles_avx2(x[i].qs, q[0], q[1]);
    for (int h = 0; h < 2; h++)
      for (int k = 0; k < 2; k++) {
        const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(k ? _mm_srli_si128(q[h], 8) : q[h]));
        _mm256_storeu_ps(y + 16 * h + 8 * k, _mm256_add_ps(_mm256_mul_ps(v, d), m));
      }
  }
}

// The AVX2 dequantizer of t, or false.
bool row_to_f32_avx2(KvType t, const void* row, int64_t n, float* out) {
  switch (t) {
    case KvType::Q8_0: q8_0_avx2(static_cast<const BlockQ8_0*>(row), n / 32, out); return true;
    case KvType::Q4_0: q4_0_avx2(static_cast<const BlockQ4_0*>(row), n / 32, out); return true;
    case KvType::Q4_1: q4_1_avx2(static_cast<const BlockQ4_1*>(row), n / 32, out); return true;
    case KvType::IQ4_NL: iq4_nl_avx2(static_cast<const BlockIQ4_NL*>(row), n / 32, out); return true;
    default: return false;
  }
}
#endif

const KvTypeInfo kKvTypes[] = {
    {KvType::F32, "f32", DType::F32, 1, 4, 0},
    {KvType::F16, "f16", DType::F16, 1, 2, 0},
    {KvType::BF16, "bf16", DType::BF16, 1, 2, 0},
    {KvType::Q8_0, "q8_0", DType::Q8_0, QK8_0, sizeof(BlockQ8_0), 0},
    {KvType::Q4_0, "q4_0", DType::Q4_0, QK4_0, sizeof(BlockQ4_0), 0},
    {KvType::Q4_1, "q4_1", DType::Q4_1, QK4_1, sizeof(BlockQ4_1), 0},
    {KvType::Q5_0, "q5_0", DType::Q5_0, QK5_0, sizeof(BlockQ5_0), 0},
    {KvType::Q5_1, "q5_1", DType::Q5_1, QK5_1, sizeof(BlockQ5_1), 0},
    {KvType::IQ4_NL, "iq4_nl", DType::IQ4_NL, QK4_NL, sizeof(BlockIQ4_NL), 0},
    {KvType::KIVI4, "kivi4", DType::F16, 0, 0, 4},
    {KvType::KIVI2, "kivi2", DType::F16, 0, 0, 2},
};

// The largest power of two dividing n that is at most `cap`.
int64_t pow2_divisor(int64_t n, int64_t cap) {
  int64_t p = 1;
  while (p * 2 <= cap && n % (p * 2) == 0) p *= 2;
  return p;
}

int64_t rotation(KvType t, KvRotate r, int64_t head_dim, int64_t cap) {
  if (r == KvRotate::Off) return 0;
  // Auto follows llama.cpp's rule, KIVI included: its per-channel keys keep
  // outlier channels apart, but measured on lmp-8m-w256 the rotation still
  // lowers kivi4's KLD by a sixth (bench/results/kv-quality.md).
  if (r == KvRotate::Auto) return kv_is_quantized(t) && head_dim % 64 == 0 ? pow2_divisor(head_dim, cap) : 0;
  const int64_t p = pow2_divisor(head_dim, cap);
  return p > 1 ? p : 0;
}

}  // namespace

const KvTypeInfo& kv_type_info(KvType t) {
  for (const auto& i : kKvTypes)
    if (i.type == t) return i;
  fail("unknown KV-cache type {}", int(t));
}

int64_t kv_row_bytes(KvType t, int64_t n) {
  const KvTypeInfo& i = kv_type_info(t);
  if (i.block == 0) fail("kv_row_bytes: {} rows depend on the KIVI group", i.name);
  return n / i.block * i.bytes;
}

std::vector<std::string> kv_type_name_list() {
  std::vector<std::string> v;
  for (const auto& i : kKvTypes) v.push_back(i.name);
  return v;
}

std::string kv_type_names() {
  std::string s;
  for (const auto& n : kv_type_name_list()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

KvType parse_kv_type(const std::string& name) {
  for (const auto& i : kKvTypes)
    if (name == i.name) return i.type;
  fail("unknown KV-cache type '{}' (one of {})", name, kv_type_names());
}

void kv_row_to_f32(KvType t, const void* row, int64_t n, float* out) {
  switch (t) {
    case KvType::F32: std::memcpy(out, row, size_t(n) * sizeof(float)); return;
    case KvType::F16: from_f16(static_cast<const uint16_t*>(row), n, out); return;
    case KvType::BF16: from_bf16(static_cast<const uint16_t*>(row), n, out); return;
    default:
      if (kv_is_kivi(t)) fail("kv_row_to_f32: {} has no rows of its own (kernels/kivi.h)", kv_type_name(t));
#if defined(__x86_64__)
      if (qdot_simd_active() && row_to_f32_avx2(t, row, n, out)) return;
#endif
      dequantize_row(kv_type_info(t).dtype, static_cast<const uint8_t*>(row), n, out);
  }
}

int64_t kv_rotation_k(const KvCacheSpec& s, int64_t head_dim) {
  return rotation(s.k, s.rotate, head_dim, int64_t(1) << 30);
}

int64_t kv_rotation_v(const KvCacheSpec& s, int64_t head_dim) { return rotation(s.v, s.rotate, head_dim, 64); }

void check_kv_spec(const KvCacheSpec& s, int64_t head_dim) {
  if (kv_is_kivi(s.k) != kv_is_kivi(s.v))
    fail("--cache-type-k {} with --cache-type-v {}: a KIVI cache is KIVI for both K and V (kivi4 or kivi2 each)",
         kv_type_name(s.k), kv_type_name(s.v));
  if (s.kivi()) {
    if (s.group < 2 || s.group > 256 || s.group % 4 != 0 || head_dim % s.group != 0)
      fail("--kv-group {}: KIVI's group must be a multiple of 4 up to 256 that divides the model's head size of {}",
           s.group, head_dim);
    if (s.residual < 0 || s.residual > 4096) fail("--kv-residual {}: it must be in 0..4096", s.residual);
    return;
  }
  for (auto [t, opt] : {std::pair{s.k, "--cache-type-k"}, std::pair{s.v, "--cache-type-v"}}) {
    const KvTypeInfo& i = kv_type_info(t);
    if (head_dim % i.block != 0)
      fail("{} {}: its blocks of {} values do not divide the model's head size of {}", opt, i.name, i.block,
           head_dim);
  }
}

void check_kv_context(const KvCacheSpec& s, int64_t n_ctx) {
  if (!s.kivi()) return;
  if (s.group > n_ctx) fail("--kv-group {} is larger than the context of {}", s.group, n_ctx);
  if (s.residual > n_ctx) fail("--kv-residual {} is larger than the context of {}", s.residual, n_ctx);
}

std::string kv_spec_name(const KvCacheSpec& s) {
  std::string n = s.k == s.v ? kv_type_name(s.k) : std::string(kv_type_name(s.k)) + "/" + kv_type_name(s.v);
  if (s.kivi()) n += fmt::format(" (group {}, residual {})", s.group, s.residual);
  return n;
}

}  // namespace lmpress
