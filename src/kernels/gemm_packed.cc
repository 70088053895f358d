#include "kernels/gemm_packed.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "kernels/avx2_helpers.h"
#include "kernels/qdot.h"

namespace lmpress {
namespace {

using simd_avx2::transpose8;

constexpr int kMR = 6;   // tokens per register tile
constexpr int kNR = 16;  // weight rows per register tile (two 8-float vectors)
// Columns per panel: a multiple of every block size (QK_K = 256) so block
// formats convert whole blocks; the 16 x 256 f32 weight panel (16 KB) stays in
// L1, and 512 tokens' activations for one kc slice (512 KB) in L2.
constexpr int64_t kKC = 512;
// Weight groups sharing each pass over the activations: each activation
// panel, once in L1, serves both groups' microkernel calls, halving the
// activations streamed from L3 (their 4 MB at 512 tokens fit no L2).
constexpr int kGroups = 2;

// Rows [r0, r0 + rows) of a block-format W, columns [k0, k0 + kc), as f32
// rows of stride kc (whole blocks: kc and k0 are multiples of the block).
void convert_rows(const Tensor& w, int64_t r0, int rows, int64_t k0, int64_t kc, float* dst) {
  for (int j = 0; j < rows; j++) to_f32(w, (r0 + j) * w.shape[1] + k0, kc, dst + j * kc);
}

// x[n, in] as panels of kMR tokens: ap[p][k][i] = x[p·kMR + i][k], tokens past
// n zero (their results are never computed). 8 columns of the panel's rows at
// a time through transpose8; each transposed column holds the 6 values of one
// k (its last 2 lanes, written past them, are overwritten by the next k).
__attribute__((target("avx2"))) void pack_panel(const float* x, int64_t n, int64_t in, int64_t p, float* ap) {
  float* dst = ap + p * in * kMR;
  const int tokens = int(std::min<int64_t>(kMR, n - p * kMR));
  const float* src = x + p * kMR * in;
  int64_t k = 0;
  for (; k + 8 <= in; k += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; i++) r[i] = i < tokens ? _mm256_loadu_ps(src + i * in + k) : _mm256_setzero_ps();
    transpose8(r);
    for (int j = 0; j < 7; j++) _mm256_storeu_ps(dst + (k + j) * kMR, r[j]);
    // The last k of the 8: exactly 6 floats, never into the next panel.
    _mm_storeu_ps(dst + (k + 7) * kMR, _mm256_castps256_ps128(r[7]));
    _mm_storel_pi(reinterpret_cast<__m64*>(dst + (k + 7) * kMR + 4), _mm256_extractf128_ps(r[7], 1));
  }
  for (; k < in; k++)
    for (int i = 0; i < kMR; i++) dst[k * kMR + i] = i < tokens ? src[i * in + k] : 0.0f;
}

// (The parallel loop stays outside the target("avx2") function: clang's
// outlined OpenMP region would not inherit the attribute.)
void pack_activations(const float* x, int64_t n, int64_t in, float* ap) {
  const int64_t panels = (n + kMR - 1) / kMR;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < panels; p++) pack_panel(x, n, in, p, ap);
}

// 8 consecutive weights as floats, and one, for the element types stored
// plainly (F32, F16, BF16): the conversion happens as the panel is packed.
template <DType T>
__attribute__((target("avx2,f16c"))) inline __m256 load8(const void* p) {
  if constexpr (T == DType::F32) return _mm256_loadu_ps(static_cast<const float*>(p));
  const __m128i h = _mm_loadu_si128(static_cast<const __m128i*>(p));
  if constexpr (T == DType::F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
template <DType T>
inline float load1(const void* p) {
  if constexpr (T == DType::F32) return *static_cast<const float*>(p);
  const uint16_t h = *static_cast<const uint16_t*>(p);
  if constexpr (T == DType::F16) return f16_to_f32(h);
  return bf16_to_f32(h);
}

// bp[k][j] = W[j][k] for the panel's `rows` weight rows (row stride `stride`
// elements of type T) and kc columns; rows past `rows` zero.
template <DType T>
__attribute__((target("avx2,f16c"))) void pack_weight_panel(const void* src, int64_t stride, int rows, int64_t kc,
                                                             float* bp) {
  constexpr size_t size = T == DType::F32 ? 4 : 2;
  const auto* base = static_cast<const uint8_t*>(src);
  const __m256 zero = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8)
    for (int h = 0; h < kNR / 8; h++) {
      __m256 r[8];
      for (int j = 0; j < 8; j++) {
        const int row = 8 * h + j;
        r[j] = row < rows ? load8<T>(base + (row * stride + k) * size) : zero;
      }
      transpose8(r);
      for (int j = 0; j < 8; j++) _mm256_store_ps(bp + (k + j) * kNR + 8 * h, r[j]);
    }
  for (; k < kc; k++)
    for (int j = 0; j < kNR; j++) bp[k * kNR + j] = j < rows ? load1<T>(base + (j * stride + k) * size) : 0.0f;
}

// c[i][j] (+)= Σ_k a[k][i] · b[k][j] for the MR x 16 tile at c (row stride
// ldc; MR = 6 but for the last, partial token panel). Named accumulators:
// GCC keeps an array of vectors in registers but also stores it to the stack
// on every iteration.
template <int MR>
__attribute__((target("avx2,fma"))) void microkernel(int64_t kc, const float* a, const float* b, float* c,
                                                     int64_t ldc, bool accumulate) {
  static_assert(MR >= 1 && MR <= kMR);
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  // The tile's rows of y are far apart and rarely cached: ask for them while
  // the k loop runs rather than stall on them at the end.
  for (int i = 0; accumulate && i < MR; i++) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + kNR - 1), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++, a += kMR, b += kNR) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 ai = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(ai, b0, c00), c01 = _mm256_fmadd_ps(ai, b1, c01);
    if constexpr (MR > 1) {
      ai = _mm256_broadcast_ss(a + 1);
      c10 = _mm256_fmadd_ps(ai, b0, c10), c11 = _mm256_fmadd_ps(ai, b1, c11);
    }
    if constexpr (MR > 2) {
      ai = _mm256_broadcast_ss(a + 2);
      c20 = _mm256_fmadd_ps(ai, b0, c20), c21 = _mm256_fmadd_ps(ai, b1, c21);
    }
    if constexpr (MR > 3) {
      ai = _mm256_broadcast_ss(a + 3);
      c30 = _mm256_fmadd_ps(ai, b0, c30), c31 = _mm256_fmadd_ps(ai, b1, c31);
    }
    if constexpr (MR > 4) {
      ai = _mm256_broadcast_ss(a + 4);
      c40 = _mm256_fmadd_ps(ai, b0, c40), c41 = _mm256_fmadd_ps(ai, b1, c41);
    }
    if constexpr (MR > 5) {
      ai = _mm256_broadcast_ss(a + 5);
      c50 = _mm256_fmadd_ps(ai, b0, c50), c51 = _mm256_fmadd_ps(ai, b1, c51);
    }
  }
  const __m256 acc[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < MR; i++) {
    float* ci = c + i * ldc;
    __m256 lo = acc[i][0], hi = acc[i][1];
    if (accumulate) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(ci));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(ci + 8));
    }
    _mm256_storeu_ps(ci, lo);
    _mm256_storeu_ps(ci + 8, hi);
  }
}

using Microkernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate);
constexpr Microkernel kMicrokernels[kMR + 1] = {nullptr,         microkernel<1>, microkernel<2>, microkernel<3>,
                                                microkernel<4>, microkernel<5>, microkernel<6>};

// A tile of `tokens` rows whose 16 columns run past the end of y's rows:
// computed in a scratch tile, only its valid part copied.
void edge_tile(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate, int tokens,
               int rows) {
  alignas(32) float tile[kMR * kNR] = {};
  for (int i = 0; accumulate && i < tokens; i++) std::memcpy(tile + i * kNR, c + i * ldc, size_t(rows) * 4);
  kMicrokernels[tokens](kc, a, b, tile, kNR, accumulate);
  for (int i = 0; i < tokens; i++) std::memcpy(c + i * ldc, tile + i * kNR, size_t(rows) * 4);
}

}  // namespace

bool gemm_packed_supports(DType t) {
  if (!qdot_simd_active()) return false;
  if (is_row_indexed(t) || is_row_interleaved(t)) return false;  // rows only convert whole
  return dtype_info(t).supported;
}

void gemm_packed(const Tensor& w, const float* x, int64_t n, float* y) {
  const int64_t out = w.shape[0], in = w.shape[1];
  const int64_t panels = (n + kMR - 1) / kMR, groups = (out + kNR - 1) / kNR;
  thread_local std::vector<float> packed;
  packed.resize(size_t(panels * in * kMR));
  float* ap = packed.data();  // the caller's buffer (inside the parallel regions the name is each thread's own)
  pack_activations(x, n, in, ap);
#pragma omp parallel
  {
    alignas(32) float rows_f32[kNR * kKC];
    alignas(32) float bp[kGroups * kKC * kNR];
    // kGroups groups' kc slices one after another: their output tiles (16
    // columns of every token each, 32 KB at 512 tokens) stay cached while
    // they are accumulated, where walking all groups per slice would send the
    // whole output through memory once per slice.
#pragma omp for schedule(static)
    for (int64_t g0 = 0; g0 < groups; g0 += kGroups) {
      const int ng = int(std::min<int64_t>(kGroups, groups - g0));
      for (int64_t k0 = 0; k0 < in; k0 += kKC) {
        const int64_t kc = std::min(kKC, in - k0);
        for (int gi = 0; gi < ng; gi++) {
          const int64_t g = g0 + gi;
          const int rows = int(std::min<int64_t>(kNR, out - g * kNR));
          const int64_t at = g * kNR * in + k0;  // element index of the panel's first weight
          float* b = bp + gi * kKC * kNR;
          if (w.dtype == DType::F16)
            pack_weight_panel<DType::F16>(w.data + at * 2, in, rows, kc, b);
          else if (w.dtype == DType::BF16)
            pack_weight_panel<DType::BF16>(w.data + at * 2, in, rows, kc, b);
          else if (w.dtype == DType::F32)
            pack_weight_panel<DType::F32>(w.data + at * 4, in, rows, kc, b);
          else {
            convert_rows(w, g * kNR, rows, k0, kc, rows_f32);
            pack_weight_panel<DType::F32>(rows_f32, kc, rows, kc, b);
          }
        }
        for (int64_t p = 0; p < panels; p++) {
          const int tokens = int(std::min<int64_t>(kMR, n - p * kMR));
          const float* a = ap + p * in * kMR + k0 * kMR;
          for (int gi = 0; gi < ng; gi++) {
            const int64_t g = g0 + gi;
            const int rows = int(std::min<int64_t>(kNR, out - g * kNR));
            float* c = y + p * kMR * out + g * kNR;
            if (rows == kNR)
              kMicrokernels[tokens](kc, a, bp + gi * kKC * kNR, c, out, k0 > 0);
            else
              edge_tile(kc, a, bp + gi * kKC * kNR, c, out, k0 > 0, tokens, rows);
          }
        }
      }
    }
  }
}

}  // namespace lmpress
