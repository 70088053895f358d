#include "kernels/int_panels.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cpu_isa.h"
#include "core/fp16.h"
#include "kernels/int_blocks.h"
#include "kernels/interleaved.h"
#include "kernels/lmp2.h"
#include "kernels/q8_0x8.h"
#include "kernels/to_f32.h"
#if defined(__x86_64__)
#include "kernels/x8_vnni.h"
#endif

namespace lmpress {
namespace {

// A 32-value chunk of an unpacked block: its values and the scale of each 16-value half.
void chunk_to_q8(const UnpackedBlock& u, const IntBlockFormat& f, int c, ChunkQ8& out) {
  for (int h = 0; h < 2; h++) out.d[h] = u.d * float(u.ls[(32 * c + 16 * h) / f.group]);
  for (int i = 0; i < 32; i++) out.qs[i] = u.q[32 * c + i];
}

// Decoded chunks as Q8_0 blocks (one f16 scale per 32: where the halves' scales
// differ, the values rounded to int8 under the larger magnitude, as Q8_0
// rounds floats); false where a scale has no f16 (overflow, or 0 under nonzero values).
bool to_q8_0(const ChunkQ8* c, int64_t n, BlockQ8_0* out) {
  bool ok = true;
  for (int64_t i = 0; i < n; i++) {
    float d = c[i].d[0];
    if (c[i].d[0] == c[i].d[1]) {
      std::copy(c[i].qs, c[i].qs + 32, out[i].qs);
    } else {
      float v[32], amax = 0;
      for (int j = 0; j < 32; j++) {
        v[j] = c[i].d[j / 16] * float(c[i].qs[j]);
        amax = std::max(amax, std::fabs(v[j]));
      }
      d = amax / 127.0f;
      const float id = d != 0 ? 1.0f / d : 0.0f;
      for (int j = 0; j < 32; j++) out[i].qs[j] = int8_t(std::nearbyint(v[j] * id));
    }
    out[i].d = f32_to_f16(d);
    const float back = f16_to_f32(out[i].d);
    bool any = false;
    for (int8_t q : out[i].qs) any |= q != 0;
    ok &= std::isfinite(back) && !(any && back == 0.0f && d != 0.0f);
  }
  return ok;
}

// The kernels of the VNNI panel path for the encoding qdot_vnni() chose.
struct PanelKernels {
  X8Gemm4 gemm4 = nullptr;
  X8GemmN gemmn = nullptr;
  X8Gemm4 gemm4x2 = nullptr;  // gemm4 on two consecutive panels (interleaved.h's X8Kernels::gemm4x2)
};
// The panel kernels for f's values: halves, a scale per 16 values (the kernels
// keep two sums per block); without VNNI, maddubs stands in for vpdpbusd where
// f's values are small enough for it to be exact.
PanelKernels panel_kernels(const IntBlockFormat& f) {
  const bool halves = f.group < 32;
#if defined(__x86_64__)
  using P = BlockPanelx8;
  using A = BlockQ8_0;
#define LMPRESS_PANEL_KERNELS(ns)                                                                      \
  halves ? PanelKernels{x8_gemm4<P, A, ns::gemm4_panel16_x8>, x8_gemmn<P, A, ns::gemmn_panel16_x8>} \
         : PanelKernels{x8_gemm4<P, A, ns::gemm4_panel_x8>, x8_gemmn<P, A, ns::gemmn_panel_x8>}
  PanelKernels k;
  switch (qdot_vnni()) {
    case Vnni::avx: k = LMPRESS_PANEL_KERNELS(simd_avxvnni); break;
    case Vnni::avx512: k = LMPRESS_PANEL_KERNELS(simd_avx512vnni); break;
    case Vnni::emulated: k = LMPRESS_PANEL_KERNELS(simd_vnni_emulated); break;
    case Vnni::none:
      if (qdot_simd_active() && cpu_isa().avx2 && f.max_abs <= 64) k = LMPRESS_PANEL_KERNELS(simd_avx2_small);
      break;
  }
#undef LMPRESS_PANEL_KERNELS
  if (gemm4x2_allowed())
    k.gemm4x2 = halves ? x8_gemm4<P, A, simd_avx512vnni::gemm4x2_panel16_x8>
                       : x8_gemm4<P, A, simd_avx512vnni::gemm4x2_panel_x8>;
  return k;
#endif
  (void)f;
  return {};
}

// Tokens [t, n) of one group: 4 at a time, then the 1..3 left in one pass.
template <class Gemm4, class GemmN>
void all_tokens(int64_t t, int64_t n, int64_t in, int64_t out, const void* panel, const uint8_t* a, size_t ab, float* y,
                Gemm4 gemm4, GemmN gemmn) {
  const int64_t nb = in / 32;
  for (; t + 4 <= n; t += 4) gemm4(in, panel, a + t * ab, nullptr, nb, y + t * out, out);
  if (t < n) gemmn(n - t, in, panel, a + t * ab, nullptr, nb, y + t * out, out);
}

}  // namespace

void pack_panel_x8(const ChunkQ8* rows, int64_t cols, BlockPanelx8* out) {
  const int64_t nb = cols / 32;
  for (int64_t b = 0; b < nb; b++)
    for (int r = 0; r < 8; r++) {
      const ChunkQ8& s = rows[r * nb + b];
      for (int h = 0; h < 2; h++) {
        out[b].d[h][r] = s.d[h];
        int32_t sum = 0;
        for (int i = 0; i < 16; i++) sum += s.qs[16 * h + i];
        out[b].bias[h][r] = 128 * sum;
      }
      for (int v = 0; v < 8; v++)
        for (int i = 0; i < 4; i++) out[b].qs[v][4 * r + i] = s.qs[4 * v + i];
    }
}

void gemv_panel_x8_ref(int64_t cols, const BlockPanelx8* panel, const BlockQ8_0* a, float* out) {
  for (int r = 0; r < 8; r++) {
    float acc = 0;
    for (int64_t b = 0; b < cols / 32; b++)
      for (int h = 0; h < 2; h++) {
        int32_t s = 0;
        for (int v = 4 * h; v < 4 * h + 4; v++)
          for (int i = 0; i < 4; i++) s += int32_t(uint8_t(a[b].qs[4 * v + i])) * panel[b].qs[v][4 * r + i];
        acc += panel[b].d[h][r] * f16_to_f32(a[b].d) * float(s - panel[b].bias[h][r]);
      }
    out[r] = acc;
  }
}

void decode_int_panel_rows(const Tensor& w, int64_t g, ChunkQ8* out) {
  if (const InterleavedFormat* x = interleaved_format(w.dtype))  // repacked at load: its 8 rows are one group
    return x->panel_chunks(w.data + uint64_t(g) * x->group_bytes(w.shape[1]),
                           w.shape[1], out);
  const IntBlockFormat& f = *int_block_format(w.dtype);
  const int64_t in = w.shape[1], nbw = in / f.elems;
  const uint64_t row_b = row_bytes(w.dtype, uint64_t(in));
#if defined(__x86_64__)
  if (qdot_simd_active())
    if (const simd_avx2::PanelDecodeFn fast = simd_avx2::panel_decoder(w.dtype)) {
      for (int r = 0; r < 8; r++) fast(w.data + uint64_t(8 * g + r) * row_b, nbw, out + r * (in / 32));
      return;
    }
#endif
  UnpackedBlock u;
  for (int r = 0; r < 8; r++) {
    const uint8_t* row = w.data + uint64_t(8 * g + r) * row_b;
    for (int64_t b = 0; b < nbw; b++) {
      f.unpack(row + uint64_t(b) * dtype_info(w.dtype).block_bytes, u);
      for (int c = 0; c < f.elems / 32; c++) chunk_to_q8(u, f, c, out[r * (in / 32) + b * (f.elems / 32) + c]);
    }
  }
}

namespace {

// The panels' format for w: its blocks', or for a layout repacked at load
// whose prompts take the panels, its file type's (null: no panels).
const IntBlockFormat* panel_format(const Tensor& w) {
  if (const InterleavedFormat* x = interleaved_format(w.dtype))
    return x->panel_chunks ? int_block_format(file_type(w.dtype)) : nullptr;
  return int_block_format(w.dtype);
}

}  // namespace

bool matmul_int_panels(const Tensor& w, const float* x, int64_t n, float* y) {
  const IntBlockFormat* f = panel_format(w);
  // MXFP4 keeps the general path (its E8M0 scales span more than f16's range).
  if (!f || w.dtype == DType::MXFP4 || w.shape.size() != 2 || w.shape[0] % 8 != 0) return false;
  const X8Kernels q8k = q8_0x8_kernels();
  const PanelKernels pk = panel_kernels(*f);
  if (!pk.gemm4 && (!q8k.gemm4 || !qdot_simd_active())) return false;
  if (f->exact_panels_only && !pk.gemm4) return false;
  const int64_t out = w.shape[0], in = w.shape[1], nb = in / 32;
  const size_t ab = activation_bytes(ActFormat::Q8_0, in);
  thread_local std::vector<uint8_t> qa;
  qa.resize(size_t(n) * ab);
  uint8_t* a = qa.data();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; t++) {
    // w·x = (T·w)·(T·x) where the blocks hold T·w.
    quantize_activations(ActFormat::Q8_0, f->rotated ? lmp2_rotated(x + t * in, in) : x + t * in, in, a + t * ab);
    if (pk.gemm4) {  // vpdpbusd's unsigned operand: value + 128
      auto* blk = reinterpret_cast<BlockQ8_0*>(a + t * ab);
      for (int64_t b = 0; b < nb; b++)
        for (int8_t& q : blk[b].qs) q = int8_t(uint8_t(q) ^ 0x80);
    }
  }
  // With the two-panel kernel and 4 tokens or more, work items are pairs of groups (an odd last group alone).
  const int64_t groups = out / 8, per_item = pk.gemm4x2 && n >= 4 ? 2 : 1;
#pragma omp parallel
  {
    std::vector<ChunkQ8> rows(static_cast<size_t>(8 * nb));
    std::vector<BlockPanelx8> panel(pk.gemm4 ? size_t(per_item * nb) : 0);
    std::vector<BlockQ8_0> q8(pk.gemm4 ? 0 : size_t(8 * nb));
    std::vector<BlockQ8_0x8> q8x8(pk.gemm4 ? 0 : size_t(nb));
    std::vector<float> wf;
#pragma omp for schedule(static)
    for (int64_t item = 0; item < (groups + per_item - 1) / per_item; item++) {
      const int64_t g0 = item * per_item, g1 = std::min(groups, g0 + per_item);
      if (pk.gemm4) {
        for (int64_t g = g0; g < g1; g++) {
          decode_int_panel_rows(w, g, rows.data());
          pack_panel_x8(rows.data(), in, panel.data() + (g - g0) * nb);
        }
        int64_t t = 0;
        if (g1 - g0 == 2)  // the 4-token steps over both panels at once; the 1..3 tokens left below per panel
          for (; t + 4 <= n; t += 4) pk.gemm4x2(in, panel.data(), a + t * ab, nullptr, nb, y + t * out + 8 * g0, out);
        for (int64_t g = g0; g < g1; g++)
          all_tokens(t, n, in, out, panel.data() + (g - g0) * nb, a, ab, y + 8 * g, pk.gemm4, pk.gemmn);
        continue;
      }
      const int64_t g = g0;
      decode_int_panel_rows(w, g, rows.data());
      float* yg = y + 8 * g;
      if (to_q8_0(rows.data(), 8 * nb, q8.data())) {
        pack_q8_0x8(q8.data(), in, q8x8.data());
        all_tokens(0, n, in, out, q8x8.data(), a, ab, yg, q8k.gemm4,
                   [&](int64_t m, int64_t c, const void* p, const uint8_t* at, const int32_t* s, int64_t st, float* o,
                       int64_t os) {
                     if (q8k.gemmn) return q8k.gemmn(m, c, p, at, s, st, o, os);
                     for (int64_t t = 0; t < m; t++) q8k.gemv(c, p, at + t * ab, s, o + t * os);
                   });
      } else {
        // A chunk scale beyond f16: these 8 rows in f32.
        wf.resize(size_t(in));
        for (int r = 0; r < 8; r++) {
          to_f32(w, (8 * g + r) * in, in, wf.data());
          for (int64_t t = 0; t < n; t++) {
            double s = 0;
            for (int64_t i = 0; i < in; i++) s += double(wf[size_t(i)]) * x[t * in + i];
            yg[t * out + r] = float(s);
          }
        }
      }
    }
  }
  return true;
}

}  // namespace lmpress
