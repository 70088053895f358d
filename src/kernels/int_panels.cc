#include "kernels/int_panels.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/fp16.h"
#include "kernels/int_blocks.h"
#include "kernels/interleaved.h"
#include "kernels/q8_0x8.h"
#include "kernels/qdot.h"
#include "kernels/to_f32.h"

namespace lmpress {
namespace {

// A 32-value chunk of an unpacked block as one Q8_0 block. One group scale over
// the chunk: the values as they are, scale d·ls (exact up to the f16 rounding
// of the scale). Two (16-value groups whose scales differ): ls·q rounded to
// int8 under the larger magnitude, as Q8_0 rounds floats. False when the scale
// overflows f16 (or underflows to 0 under nonzero values).
bool chunk_to_q8_0(const UnpackedBlock& u, const IntBlockFormat& f, int c, BlockQ8_0& out) {
  const int16_t* ls = u.ls + (32 * c) / f.group;
  const bool uniform = f.group >= 32 || ls[0] == ls[1];
  float d;
  if (uniform) {
    d = u.d * float(ls[0]);
    for (int i = 0; i < 32; i++) out.qs[i] = u.q[32 * c + i];
  } else {
    int amax = 0;
    int v[32];
    for (int i = 0; i < 32; i++) {
      v[i] = ls[i / 16] * u.q[32 * c + i];
      amax = std::max(amax, std::abs(v[i]));
    }
    d = u.d * float(amax) / 127.0f;
    const float id = amax ? 127.0f / float(amax) : 0.0f;
    for (int i = 0; i < 32; i++) out.qs[i] = int8_t(std::nearbyint(float(v[i]) * id));
  }
  out.d = f32_to_f16(d);
  const float back = f16_to_f32(out.d);
  bool any = false;
  for (int i = 0; i < 32; i++) any |= out.qs[i] != 0;
  return std::isfinite(back) && !(any && back == 0.0f && d != 0.0f);
}

}  // namespace

bool decode_int_panel_rows(const Tensor& w, int64_t g, uint8_t* q8_0_rows) {
  const IntBlockFormat& f = *int_block_format(w.dtype);
  const int64_t in = w.shape[1], nbw = in / f.elems;
  const uint64_t row_b = row_bytes(w.dtype, uint64_t(in));
  auto* out = reinterpret_cast<BlockQ8_0*>(q8_0_rows);
#if defined(__x86_64__)
  if (qdot_simd_active())
    if (const simd_avx2::PanelDecodeFn fast = simd_avx2::panel_decoder(w.dtype)) {
      bool ok = true;
      for (int r = 0; r < 8; r++) ok &= fast(w.data + uint64_t(8 * g + r) * row_b, nbw, out + r * (in / 32));
      return ok;
    }
#endif
  UnpackedBlock u;
  bool ok = true;
  for (int r = 0; r < 8; r++) {
    const uint8_t* row = w.data + uint64_t(8 * g + r) * row_b;
    for (int64_t b = 0; b < nbw; b++) {
      f.unpack(row + uint64_t(b) * dtype_info(w.dtype).block_bytes, u);
      for (int c = 0; c < f.elems / 32; c++) ok &= chunk_to_q8_0(u, f, c, out[r * (in / 32) + b * (f.elems / 32) + c]);
    }
  }
  return ok;
}

bool matmul_int_panels(const Tensor& w, const float* x, int64_t n, float* y) {
  const IntBlockFormat* f = int_block_format(w.dtype);
  // MXFP4's scales span E8M0's range, beyond f16's: it keeps the general path.
  if (!f || w.dtype == DType::MXFP4 || w.shape.size() != 2 || w.shape[0] % 8 != 0) return false;
  const X8Kernels k = q8_0x8_kernels();
  if (!k.gemm4 || !qdot_simd_active()) return false;
  const int64_t out = w.shape[0], in = w.shape[1], nb = in / 32;
  const size_t ab = activation_bytes(ActFormat::Q8_0, in);
  thread_local std::vector<uint8_t> qa;
  qa.resize(size_t(n) * ab);
  uint8_t* a = qa.data();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; t++) quantize_activations(ActFormat::Q8_0, x + t * in, in, a + t * ab);
#pragma omp parallel
  {
    std::vector<BlockQ8_0> rows(static_cast<size_t>(8 * nb));
    std::vector<BlockQ8_0x8> panel(static_cast<size_t>(nb));
    std::vector<float> wf;
#pragma omp for schedule(static)
    for (int64_t g = 0; g < out / 8; g++) {
      if (decode_int_panel_rows(w, g, reinterpret_cast<uint8_t*>(rows.data()))) {
        pack_q8_0x8(rows.data(), in, panel.data());
        int64_t t = 0;
        for (; t + 4 <= n; t += 4) k.gemm4(in, panel.data(), a + t * ab, nullptr, nb, y + t * out + 8 * g, out);
        if (k.gemmn && n - t >= 2) {
          k.gemmn(n - t, in, panel.data(), a + t * ab, nullptr, nb, y + t * out + 8 * g, out);
          t = n;
        }
        for (; t < n; t++) k.gemv(in, panel.data(), a + t * ab, nullptr, y + t * out + 8 * g);
      } else {
        // A scale beyond f16: these 8 rows in f32.
        wf.resize(size_t(in));
        for (int r = 0; r < 8; r++) {
          to_f32(w, (8 * g + r) * in, in, wf.data());
          for (int64_t t = 0; t < n; t++) {
            double s = 0;
            for (int64_t i = 0; i < in; i++) s += double(wf[size_t(i)]) * x[t * in + i];
            y[t * out + 8 * g + r] = float(s);
          }
        }
      }
    }
  }
  return true;
}

}  // namespace lmpress
