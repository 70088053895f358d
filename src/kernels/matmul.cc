#include "kernels/matmul.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/low_rank_tensor.h"
#include "kernels/gemm_packed.h"
#include "kernels/int_panels.h"
#include "kernels/interleaved.h"
#include "kernels/qdot.h"
#include "kernels/to_f32.h"

namespace lmpress {
namespace {

int g_threads = 0;

// Weight rows converted to f32 per tile, then one GEMM per tile: the weight is
// read once and never copied whole.
constexpr int64_t kTileRows = 256;

// Tokens [t, t1) of one group: 4 at a time, then the 1..3 left in one pass
// (or one at a time where the layout has no such kernel).
// astride: tokens apart in the activation format's units (blocks, or bytes),
// which is also the sums' stride where the format has sums (one per block).
void x8_group_tokens(const X8Kernels& k, int64_t in, const uint8_t* wg, const uint8_t* qa, size_t ab,
                     const int32_t* sums, int64_t astride, int64_t t, int64_t t1, float* y, int64_t out) {
  while (t < t1) {
    const uint8_t* a = qa + t * ab;
    const int32_t* s = sums ? sums + t * astride : nullptr;
    float* yt = y + t * out;
    if (k.gemm4 && t + 4 <= t1) {  // 4 tokens share each weight load
      k.gemm4(in, wg, a, s, astride, yt, out);
      t += 4;
    } else if (k.gemmn && t1 - t >= 2) {  // the 2 or 3 left, in one pass too (one token: gemv)
      const int64_t m = std::min<int64_t>(3, t1 - t);
      k.gemmn(m, in, wg, a, s, astride, yt, out);
      t += m;
    } else {
      k.gemv(in, wg, a, s, yt);
      t++;
    }
  }
}

// Weights repacked as 8-row groups (kernels/interleaved.h): the activations
// quantized once (Q8_0, or Q8_K for Q4_K), the kernels chosen once, then one
// call per group and 4 tokens, and per group and the 1..3 tokens left (or
// per token where the layout has no such kernel).
void matmul_x8(const Tensor& w, const InterleavedFormat& f, const float* x, int64_t n, float* y) {
  const X8Kernels k = f.kernels();
  const int64_t out = w.shape[0], in = w.shape[1], nb = in / f.block_cols;
  const size_t ab = activation_bytes(f.act, in);
  const int64_t astride = int64_t(ab / activation_unit_bytes(f.act));  // tokens apart in the kernels' units
  thread_local std::vector<uint8_t> qa;
  thread_local std::vector<int32_t> sums;  // Q4_0 / Q5_0 store value + 8 / + 16: their dots subtract that·Σ activations
  qa.resize(size_t(n) * ab);
  sums.resize(f.act_sums ? size_t(n * nb) : 0);
  uint8_t* qa_data = qa.data();
  int32_t* sums_data = f.act_sums ? sums.data() : nullptr;
#pragma omp parallel for schedule(static) if (n > 1)
  for (int64_t t = 0; t < n; t++) {
    quantize_activations(f.act, x + t * in, in, qa_data + t * ab);
    const auto* a = reinterpret_cast<const BlockQ8_0*>(qa_data + t * ab);
    for (int64_t b = 0; sums_data && b < nb; b++) {
      int32_t s = 0;
      for (int8_t v : a[b].qs) s += v;
      sums_data[t * nb + b] = s;
    }
  }
  // Prompt batches: tokens in chunks whose quantized activations stay in L2
  // while every group of weights passes over them.
  // A multiple of 4 tokens where it splits the batch: the 4-token kernels take every token but the batch's last 1..3.
  int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(n, (256 << 10) / int64_t(ab)));
  if (chunk < n && chunk >= 8) chunk -= chunk % 4;
  const uint64_t group_bytes = f.group_bytes(in);
  // With a two-group kernel and 4 tokens or more, work items are pairs of groups (an odd last group alone).
  const int64_t groups = out / 8, per_item = k.gemm4x2 && n >= 4 ? 2 : 1, items = (groups + per_item - 1) / per_item;
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t t1 = std::min(n, t0 + chunk);
#pragma omp parallel for schedule(static)
    for (int64_t item = 0; item < items; item++) {
      const int64_t g0 = item * per_item, g1 = std::min(groups, g0 + per_item);
      int64_t t = t0;
      if (g1 - g0 == 2)  // the 4-token steps over both groups at once; the 1..3 tokens left below per group
        for (; t + 4 <= t1; t += 4)
          k.gemm4x2(in, w.data + uint64_t(g0) * group_bytes, qa_data + t * ab, sums_data ? sums_data + t * nb : nullptr,
                    astride, y + t * out + 8 * g0, out);
      for (int64_t g = g0; g < g1; g++)
        x8_group_tokens(k, in, w.data + uint64_t(g) * group_bytes, qa_data, ab, sums_data, astride, t, t1, y + 8 * g,
                        out);
    }
  }
}

// decode: every row as one token alone would get it (the paths below taken
// for n < 4, whose rows do not depend on n), whatever n.
void matmul_converted(const Tensor& w, const float* x, int64_t n, float* y, bool decode) {
  const int64_t out = w.shape[0], in = w.shape[1];
  const bool rows = n < kMatmulBatchMin || decode;
  // Interleaved layouts take prompt batches too where they have a 4-token kernel; the 2:4
  // layout has only a one-token kernel, level with f32 tiles + the packed GEMM (README).
  if (const InterleavedFormat* f = interleaved_format(w.dtype); f && (rows || f->kernels().gemm4)) {
    if (!rows && f->panel_chunks && matmul_int_panels(w, x, n, y)) return;
    return matmul_x8(w, *f, x, n, y);
  }
  if (const QDotKernel k = qdot(w.dtype); rows && k.fn) {
    // Decode with an int8 kernel: activations quantized once (Q8_0 or Q8_K),
    // then one integer dot product per weight row (llama.cpp's vec_dot path).
    const size_t ab = activation_bytes(k.act, in);
    thread_local std::vector<uint8_t> qa;
    qa.resize(size_t(n) * ab);
    uint8_t* a = qa.data();
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t t = 0; t < n; t++) quantize_activations(k.act, x + t * in, in, a + t * ab);
    const RowAddress row(w);
    if (k.multi && n > 1) {
      // Up to 4 tokens per unpacking of a row (each row as k.fn gives it).
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < out; r++)
        for (int64_t t = 0; t < n; t += 4) {
          float o[4];
          const int64_t m = std::min<int64_t>(4, n - t);
          k.multi(in, row(r), a + t * ab, ab, m, o);
          for (int64_t j = 0; j < m; j++) y[(t + j) * out + r] = o[j];
        }
      return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < out; r++)
      for (int64_t t = 0; t < n; t++) y[t * out + r] = k.fn(in, row(r), a + t * ab);
    return;
  }
  if (const FDotFn dot = fdot(w.dtype); rows && dot) {
    // Decode with f16/bf16 (or sparse f16) weights: converted in registers, f32 activations.
    const RowAddress row(w);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < out; r++)
      for (int64_t t = 0; t < n; t++) y[t * out + r] = dot(in, row(r), x + t * in);
    return;
  }
  if (rows) {
    // Decode: dot products straight from converted rows, rows split over threads.
#pragma omp parallel
    {
      std::vector<float> row(static_cast<size_t>(in));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < out; r++) {
        to_f32(w, r * in, in, row.data());
        for (int64_t t = 0; t < n; t++) {
          const float* xt = x + t * in;
          float s = 0;
          for (int64_t i = 0; i < in; i++) s += row[size_t(i)] * xt[i];
          y[t * out + r] = s;
        }
      }
    }
    return;
  }
  // Prompt batches of the IQ / ternary types: 8-row panels decoded to int8 once per call (kernels/int_panels.h).
  if (matmul_int_panels(w, x, n, y)) return;
  // Prompt batches without an int8 kernel: packed f32 GEMM (kernels/gemm_packed.h),
  // on f32 tiles for the types whose rows only convert whole.
  if (gemm_packed_supports(w.dtype)) return gemm_packed(w, x, n, y);
  thread_local std::vector<float> tile_buf;  // reused: a fresh multi-MB buffer per call costs page faults
  tile_buf.resize(size_t(kTileRows * in));
  Tensor tile;
  tile.name = w.name;
  tile.dtype = DType::F32;
  tile.data = reinterpret_cast<const uint8_t*>(tile_buf.data());
  float* dst = tile_buf.data();  // the caller's buffer (inside the parallel region the name would be each thread's own)
  for (int64_t r0 = 0; r0 < out; r0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, out - r0);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) to_f32(w, (r0 + r) * in, in, dst + r * in);
    tile.shape = {rows, in};
    tile.nbytes = uint64_t(rows * in) * sizeof(float);
    gemm_packed_to(tile, x, n, y + r0, out);
  }
}

}  // namespace

namespace {

void matmul_impl(const Tensor& w, const float* x, int64_t n, float* y, bool decode) {
  if (w.shape.size() != 2) fail("matmul: weight {} is not a matrix", w.name);
  const int64_t out = w.shape[0], in = w.shape[1];
  switch (w.dtype) {
    case DType::LOW_RANK: {  // x·Aᵀ, then ·Bᵀ: each factor on its own type's kernels
      const LowRankPair& p = low_rank_parts(w);
      std::vector<float> h(static_cast<size_t>(n * p.a.shape[0]));  // per call: matmul's thread_local buffers are in use below
      matmul_impl(p.a, x, n, h.data(), decode);
      return matmul_impl(p.b, h.data(), n, y, decode);
    }
    case DType::F32: {
      const float* W = reinterpret_cast<const float*>(w.data);
      if (decode) {
        for (int64_t t = 0; t < n; t++)
          cblas_sgemv(CblasRowMajor, CblasNoTrans, int(out), int(in), 1.0f, W, int(in), x + t * in, 1, 0.0f,
                      y + t * out, 1);
        return;
      }
      if (n >= kMatmulBatchMin && gemm_packed_supports(w.dtype)) return gemm_packed(w, x, n, y);
      if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, int(out), int(in), 1.0f, W, int(in), x, 1, 0.0f, y, 1);
      else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(out), int(in), 1.0f, x, int(in), W, int(in),
                    0.0f, y, int(out));
      return;
    }
    default:
      // F16/BF16, block-quantized and repacked weights: int8 / f16 dots,
      // interleaved kernels, the packed GEMM, or rows converted to f32.
      if (!dtype_info(w.dtype).supported)
        fail("matmul: weight {} has type {}, which has no kernel yet", w.name, dtype_name(w.dtype));
      matmul_converted(w, x, n, y, decode);
      return;
  }
}

}  // namespace

void matmul(const Tensor& w, const float* x, int64_t n, float* y) { matmul_impl(w, x, n, y, false); }

void matmul_decode(const Tensor& w, const float* x, int64_t n, float* y) { matmul_impl(w, x, n, y, true); }

bool matmul_rows_batch_invariant(const Tensor& w) {
  if (w.dtype == DType::LOW_RANK)
    return matmul_rows_batch_invariant(low_rank_parts(w).a) && matmul_rows_batch_invariant(low_rank_parts(w).b);
  const InterleavedFormat* f = interleaved_format(w.dtype);
  return f && f->kernels().gemm4;
}

void set_num_threads(int n) {
  // Past the cores, threads only contend (OpenMP barriers spin), and OpenBLAS,
  // whose OpenMP build takes the OpenMP count at each call, allocates buffers
  // per thread that exhaust a memory limit and hang.
  const int cores = omp_get_num_procs();
  if (n <= 0 || n > cores) n = cores;
  g_threads = n;
  openblas_set_num_threads(n);  // sets the OpenMP count too
  omp_set_num_threads(n);
}

int num_threads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

}  // namespace lmpress
