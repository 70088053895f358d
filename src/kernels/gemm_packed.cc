#include "kernels/gemm_packed.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/cpu_isa.h"
#include "core/fp16.h"
#include "kernels/gemm_microkernel.h"
#include "kernels/qdot.h"
#include "kernels/to_f32.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/avx2_helpers.h"
#endif

namespace lmpress {
namespace {

// Weight floats in one packed panel, nr rows x kc columns: 32 KB whatever the
// vector width, so kc = kPanelFloats / nr (512 columns with AVX2's 16 rows,
// 256 with AVX-512's 32), a multiple of every block size (QK_K = 256) so
// block formats convert whole blocks. 512 tokens' activations for one kc
// slice (at most 512 KB) stay in L2.
constexpr int64_t kPanelFloats = 8192;
constexpr int kMaxNR = 32;  // two AVX-512 vectors
// Weight groups sharing each pass over the activations: each activation
// panel, once in L1, serves both groups' microkernel calls, halving the
// activations streamed from L3 (their 4 MB at 512 tokens fit no L2).
constexpr int kGroups = 2;

// Rows [r0, r0 + rows) of a block-format W, columns [k0, k0 + kc), as f32
// rows of stride kc (whole blocks: kc and k0 are multiples of the block).
void convert_rows(const Tensor& w, int64_t r0, int rows, int64_t k0, int64_t kc, float* dst) {
  for (int j = 0; j < rows; j++) to_f32(w, (r0 + j) * w.shape[1] + k0, kc, dst + j * kc);
}

// The packing: AVX2 transposes on x86-64; plain loops elsewhere (the
// microkernels, not the packing, are the O(n·out·in) part).
#if defined(__x86_64__)
using simd_avx2::transpose8;

// The first Count floats of v at p (never past them: the next panel may be
// another thread's).
template <int Count>
__attribute__((target("avx2"))) inline void store_first(float* p, __m256 v) {
  static_assert(Count == 4 || Count == 6 || Count == 8);
  if constexpr (Count == 8) {
    _mm256_storeu_ps(p, v);
  } else {
    _mm_storeu_ps(p, _mm256_castps256_ps128(v));
    if constexpr (Count == 6) _mm_storel_pi(reinterpret_cast<__m64*>(p + 4), _mm256_extractf128_ps(v, 1));
  }
}

// Columns [k, k + 8) of the panel's tokens [T0, T0 + 8) through one 8x8
// transpose; each transposed vector holds one k's tokens.
template <int P, int T0 = 0>
__attribute__((target("avx2"))) inline void pack_columns(const float* src, int64_t in, int tokens, int64_t k,
                                                         float* dst) {
  __m256 r[8];
  for (int i = 0; i < 8; i++)
    r[i] = T0 + i < tokens ? _mm256_loadu_ps(src + (T0 + i) * in + k) : _mm256_setzero_ps();
  transpose8(r);
  for (int j = 0; j < 8; j++) store_first<std::min(8, P - T0)>(dst + (k + j) * P + T0, r[j]);
  if constexpr (T0 + 8 < P) pack_columns<P, T0 + 8>(src, in, tokens, k, dst);
}

// x[n, in] as panels of P tokens: ap[p][k][i] = x[p·P + i][k], tokens past n
// zero (their results are never computed).
template <int P>
__attribute__((target("avx2"))) void pack_panel_avx2(const float* x, int64_t n, int64_t in, int64_t p, float* ap) {
  float* dst = ap + p * in * P;
  const int tokens = int(std::min<int64_t>(P, n - p * P));
  const float* src = x + p * P * in;
  int64_t k = 0;
  for (; k + 8 <= in; k += 8) pack_columns<P>(src, in, tokens, k, dst);
  for (; k < in; k++)
    for (int i = 0; i < P; i++) dst[k * P + i] = i < tokens ? src[i * in + k] : 0.0f;
}
#endif

template <int P>
void pack_panel_plain(const float* x, int64_t n, int64_t in, int64_t p, float* ap) {
  float* dst = ap + p * in * P;
  const int tokens = int(std::min<int64_t>(P, n - p * P));
  const float* src = x + p * P * in;
  for (int64_t k = 0; k < in; k++)
    for (int i = 0; i < P; i++) dst[k * P + i] = i < tokens ? src[i * in + k] : 0.0f;
}

// The AVX2 transposes where the CPU (and the ISA cap) allows them; the same
// floats either way.
bool avx2_packing() {
#if defined(__x86_64__)
  return qdot_simd_active() && cpu_isa().avx2;
#else
  return false;
#endif
}

// (The parallel loop stays outside the target("avx2") function: clang's
// outlined OpenMP region would not inherit the attribute.)
template <int P>
void pack_activations(bool avx2, const float* x, int64_t n, int64_t in, float* ap) {
  const int64_t panels = (n + P - 1) / P;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < panels; p++) {
#if defined(__x86_64__)
    if (avx2) {
      pack_panel_avx2<P>(x, n, in, p, ap);
      continue;
    }
#endif
    pack_panel_plain<P>(x, n, in, p, ap);
  }
}

// One and 8 consecutive weights as floats, for the element types stored
// plainly (F32, F16, BF16): the conversion happens as the panel is packed.
template <DType T>
inline float load1(const void* p) {
  if constexpr (T == DType::F32) return *static_cast<const float*>(p);
  const uint16_t h = *static_cast<const uint16_t*>(p);
  if constexpr (T == DType::F16) return f16_to_f32(h);
  return bf16_to_f32(h);
}
#if defined(__x86_64__)
template <DType T>
__attribute__((target("avx2,f16c"))) inline __m256 load8(const void* p) {
  if constexpr (T == DType::F32) return _mm256_loadu_ps(static_cast<const float*>(p));
  const __m128i h = _mm_loadu_si128(static_cast<const __m128i*>(p));
  if constexpr (T == DType::F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// bp[k][j] = W[j][k] for the panel's `rows` weight rows (row stride `stride`
// elements of type T), kc columns and nr (a multiple of 8) rows per k; rows
// past `rows` zero.
template <DType T>
__attribute__((target("avx2,f16c"))) void pack_weight_panel_avx2(const void* src, int64_t stride, int rows, int64_t kc,
                                                             int nr, float* bp) {
  constexpr size_t size = T == DType::F32 ? 4 : 2;
  const auto* base = static_cast<const uint8_t*>(src);
  const __m256 zero = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8)
    for (int h = 0; h < nr / 8; h++) {
      __m256 r[8];
      for (int j = 0; j < 8; j++) {
        const int row = 8 * h + j;
        r[j] = row < rows ? load8<T>(base + (row * stride + k) * size) : zero;
      }
      transpose8(r);
      for (int j = 0; j < 8; j++) _mm256_store_ps(bp + (k + j) * nr + 8 * h, r[j]);
    }
  for (; k < kc; k++)
    for (int j = 0; j < nr; j++) bp[k * nr + j] = j < rows ? load1<T>(base + (j * stride + k) * size) : 0.0f;
}
#endif

template <DType T>
void pack_weight_panel_plain(const void* src, int64_t stride, int rows, int64_t kc, int nr, float* bp) {
  constexpr size_t size = T == DType::F32 ? 4 : 2;
  const auto* base = static_cast<const uint8_t*>(src);
  for (int j = 0; j < nr; j++) {  // row by row: each weight row is read in order
    const uint8_t* row = base + j * stride * int64_t(size);
    for (int64_t k = 0; k < kc; k++) bp[k * nr + j] = j < rows ? load1<T>(row + k * int64_t(size)) : 0.0f;
  }
}

template <DType T>
void pack_weight_panel(bool avx2, const void* src, int64_t stride, int rows, int64_t kc, int nr, float* bp) {
#if defined(__x86_64__)
  if (avx2) return pack_weight_panel_avx2<T>(src, stride, rows, kc, nr, bp);
#endif
  (void)avx2;
  pack_weight_panel_plain<T>(src, stride, rows, kc, nr, bp);
}

// A tile of `tokens` rows whose nr columns run past the end of y's rows:
// computed in a scratch tile, only its valid part copied.
void edge_tile(GemmMicrokernel kernel, int nr, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
               bool accumulate, int tokens, int rows) {
  alignas(64) float tile[kPanelLarge * kMaxNR] = {};
  for (int i = 0; accumulate && i < tokens; i++) std::memcpy(tile + i * nr, c + i * ldc, size_t(rows) * 4);
  kernel(kc, a, b, tile, nr, accumulate);
  for (int i = 0; i < tokens; i++) std::memcpy(c + i * ldc, tile + i * nr, size_t(rows) * 4);
}

}  // namespace

bool gemm_packed_supports(DType t) {
  if (is_row_indexed(t) || is_row_interleaved(t)) return false;  // rows only convert whole
  return dtype_info(t).supported;
}

const char* gemm_packed_target() { return gemm_microkernels().target; }

void gemm_packed(const Tensor& w, const float* x, int64_t n, float* y) { gemm_packed_to(w, x, n, y, w.shape[0], 0); }

void gemm_packed_with_panel(const Tensor& w, const float* x, int64_t n, float* y, int panel) {
  gemm_packed_to(w, x, n, y, w.shape[0], panel);
}

void gemm_packed_to(const Tensor& w, const float* x, int64_t n, float* y, int64_t ldy, int panel) {
  const GemmMicrokernels mk = gemm_microkernels();
  if (panel == 0) panel = mk.panel;
  if (panel != kPanelSmall && panel != kPanelLarge) throw std::invalid_argument("gemm_packed: no such token panel");
  const GemmMicrokernel* kernels = panel == kPanelLarge ? mk.large : mk.small;
  const int nr = mk.nr;
  if (nr % 8 != 0 || nr > kMaxNR) throw std::logic_error(std::string("gemm_packed: no microkernels for ") + mk.target);
  const int64_t kKC = kPanelFloats / nr;
  const int64_t out = w.shape[0], in = w.shape[1];
  const int64_t panels = (n + panel - 1) / panel, groups = (out + nr - 1) / nr;
  thread_local std::vector<float> packed;
  packed.resize(size_t(panels * in * panel));
  float* ap = packed.data();  // the caller's buffer (inside the parallel regions the name is each thread's own)
  const bool avx2 = avx2_packing();
  if (panel == kPanelLarge)
    pack_activations<kPanelLarge>(avx2, x, n, in, ap);
  else
    pack_activations<kPanelSmall>(avx2, x, n, in, ap);
#pragma omp parallel
  {
    alignas(64) float rows_f32[kPanelFloats];
    alignas(64) float bp[kGroups * kPanelFloats];
    // kGroups groups' kc slices one after another: their output tiles (nr
    // columns of every token each, 32 KB at 512 tokens and 16 rows) stay
    // cached while they are accumulated, where walking all groups per slice
    // would send the whole output through memory once per slice.
#pragma omp for schedule(static)
    for (int64_t g0 = 0; g0 < groups; g0 += kGroups) {
      const int ng = int(std::min<int64_t>(kGroups, groups - g0));
      for (int64_t k0 = 0; k0 < in; k0 += kKC) {
        const int64_t kc = std::min(kKC, in - k0);
        for (int gi = 0; gi < ng; gi++) {
          const int64_t g = g0 + gi;
          const int rows = int(std::min<int64_t>(nr, out - g * nr));
          const int64_t at = g * nr * in + k0;  // element index of the panel's first weight
          float* b = bp + gi * kPanelFloats;
          if (w.dtype == DType::F16)
            pack_weight_panel<DType::F16>(avx2, w.data + at * 2, in, rows, kc, nr, b);
          else if (w.dtype == DType::BF16)
            pack_weight_panel<DType::BF16>(avx2, w.data + at * 2, in, rows, kc, nr, b);
          else if (w.dtype == DType::F32)
            pack_weight_panel<DType::F32>(avx2, w.data + at * 4, in, rows, kc, nr, b);
          else {
            convert_rows(w, g * nr, rows, k0, kc, rows_f32);
            pack_weight_panel<DType::F32>(avx2, rows_f32, kc, rows, kc, nr, b);
          }
        }
        for (int64_t p = 0; p < panels; p++) {
          const int tokens = int(std::min<int64_t>(panel, n - p * panel));
          const float* a = ap + p * in * panel + k0 * panel;
          for (int gi = 0; gi < ng; gi++) {
            const int64_t g = g0 + gi;
            const int rows = int(std::min<int64_t>(nr, out - g * nr));
            float* c = y + p * panel * ldy + g * nr;
            const float* b = bp + gi * kPanelFloats;
            if (rows == nr)
              kernels[tokens](kc, a, b, c, ldy, k0 > 0);
            else
              edge_tile(kernels[tokens], nr, kc, a, b, c, ldy, k0 > 0, tokens, rows);
          }
        }
      }
    }
  }
}

}  // namespace lmpress
