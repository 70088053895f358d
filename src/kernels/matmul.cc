#include "kernels/matmul.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "kernels/gemm_packed.h"
#include "kernels/q4_0x8.h"
#include "kernels/q5_0x8.h"
#include "kernels/q4_kx8.h"
#include "kernels/q8_0x8.h"
#include "kernels/qdot.h"
#include "sparse/q8_0_2of4x8.h"

namespace lmpress {
namespace {

int g_threads = 0;

// Weight rows converted to f32 per tile, then one GEMM per tile: the weight is
// read once and never copied whole.
constexpr int64_t kTileRows = 256;

// Weights repacked as 8-row groups (Q4_0_X8, Q5_0_X8, Q8_0_X8, Q8_0_2OF4_X8, Q4_K_X8):
// the activations quantized once (Q8_0, or Q8_K for Q4_K), then one kernel call
// per group and token, or per group and 4 tokens.
void matmul_x8(const Tensor& w, const float* x, int64_t n, float* y) {
  const int64_t out = w.shape[0], in = w.shape[1], nb = in / 32;
  const bool q4 = w.dtype == DType::Q4_0_X8, q5 = w.dtype == DType::Q5_0_X8, k4 = w.dtype == DType::Q4_K_X8;
  const ActFormat act = k4 ? ActFormat::Q8_K : ActFormat::Q8_0;
  const size_t ab = activation_bytes(act, in);
  thread_local std::vector<uint8_t> qa;
  thread_local std::vector<int32_t> sums;  // Q4_0 / Q5_0 store value + 8 / + 16: their dots subtract that·Σ activations
  qa.resize(size_t(n) * ab);
  sums.resize(size_t(n * nb));
  uint8_t* qa_data = qa.data();
  int32_t* sums_data = sums.data();
#pragma omp parallel for schedule(static) if (n > 1)
  for (int64_t t = 0; t < n; t++) {
    quantize_activations(act, x + t * in, in, qa_data + t * ab);
    const auto* a = reinterpret_cast<const BlockQ8_0*>(qa_data + t * ab);
    for (int64_t b = 0; (q4 || q5) && b < nb; b++) {
      int32_t s = 0;
      for (int8_t v : a[b].qs) s += v;
      sums_data[t * nb + b] = s;
    }
  }
  // Prompt batches: tokens in chunks whose quantized activations stay in L2
  // while every group of weights passes over them.
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(n, (256 << 10) / int64_t(ab)));
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t t1 = std::min(n, t0 + chunk);
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < out / 8; g++)
      for (int64_t t = t0; t < t1; t++) {
        const auto* a = reinterpret_cast<const BlockQ8_0*>(qa_data + t * ab);
        float* yt = y + t * out + 8 * g;
        const bool four = t + 4 <= t1;  // 4 tokens share each weight load
        const auto* ak = reinterpret_cast<const BlockQ8_K*>(qa_data + t * ab);
        const auto* wk = reinterpret_cast<const BlockQ4_Kx8*>(w.data) + g * (in / QK_K);
        if (k4 && four)
          gemm4_q4_kx8(in, wk, ak, in / QK_K, yt, out);
        else if (k4)
          gemv_q4_kx8(in, wk, ak, yt);
        else if (q4 && four)
          gemm4_q4_0x8(in, reinterpret_cast<const BlockQ4_0x8*>(w.data) + g * nb, a, sums_data + t * nb, nb, yt, out);
        else if (q4)
          gemv_q4_0x8(in, reinterpret_cast<const BlockQ4_0x8*>(w.data) + g * nb, a, sums_data + t * nb, yt);
        else if (q5 && four)
          gemm4_q5_0x8(in, reinterpret_cast<const BlockQ5_0x8*>(w.data) + g * nb, a, sums_data + t * nb, nb, yt, out);
        else if (q5)
          gemv_q5_0x8(in, reinterpret_cast<const BlockQ5_0x8*>(w.data) + g * nb, a, sums_data + t * nb, yt);
        else if (w.dtype == DType::Q8_0_X8 && four)
          gemm4_q8_0x8(in, reinterpret_cast<const BlockQ8_0x8*>(w.data) + g * nb, a, nb, yt, out);
        else if (w.dtype == DType::Q8_0_X8)
          gemv_q8_0x8(in, reinterpret_cast<const BlockQ8_0x8*>(w.data) + g * nb, a, yt);
        else
          gemv_q8_0_2of4x8(in, reinterpret_cast<const BlockQ8_0_2of4x8*>(w.data) + g * nb, a, yt);
        if (four && w.dtype != DType::Q8_0_2OF4_X8) t += 3;
      }
  }
}

void matmul_converted(const Tensor& w, const float* x, int64_t n, float* y) {
  const int64_t out = w.shape[0], in = w.shape[1];
  // Q4_0_X8, Q5_0_X8, Q8_0_X8 and Q4_K_X8 prompt batches too, on their 4-token kernels; the 2:4
  // layout has only a one-token kernel, level with f32 tiles + sgemm (README).
  if (is_row_interleaved(w.dtype) && (n < 4 || w.dtype != DType::Q8_0_2OF4_X8)) return matmul_x8(w, x, n, y);
  if (const QDotKernel k = qdot(w.dtype); n < 4 && k.fn) {
    // Decode with an int8 kernel: activations quantized once (Q8_0 or Q8_K),
    // then one integer dot product per weight row (llama.cpp's vec_dot path).
    const size_t ab = activation_bytes(k.act, in);
    thread_local std::vector<uint8_t> qa;
    qa.resize(size_t(n) * ab);
    uint8_t* a = qa.data();
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t t = 0; t < n; t++) quantize_activations(k.act, x + t * in, in, a + t * ab);
    const RowAddress row(w);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < out; r++)
      for (int64_t t = 0; t < n; t++) y[t * out + r] = k.fn(in, row(r), a + t * ab);
    return;
  }
  if (const FDotFn dot = fdot(w.dtype); n < 4 && dot) {
    // Decode with f16/bf16 (or sparse f16) weights: converted in registers, f32 activations.
    const RowAddress row(w);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < out; r++)
      for (int64_t t = 0; t < n; t++) y[t * out + r] = dot(in, row(r), x + t * in);
    return;
  }
  if (n < 4) {
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
  // Prompt batches without an int8 kernel: packed f32 GEMM (kernels/gemm_packed.h);
  // f32 tiles and OpenBLAS where it cannot run (no AVX2, or rows that only convert whole).
  if (gemm_packed_supports(w.dtype)) return gemm_packed(w, x, n, y);
  thread_local std::vector<float> tile_buf;  // reused: a fresh multi-MB buffer per call costs page faults
  tile_buf.resize(size_t(kTileRows * in));
  float* tile = tile_buf.data();  // the caller's buffer (inside the parallel region the name would be each thread's own)
  for (int64_t r0 = 0; r0 < out; r0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, out - r0);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) to_f32(w, (r0 + r) * in, in, tile + r * in);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(rows), int(in), 1.0f, x, int(in), tile,
                int(in), 0.0f, y + r0, int(out));
  }
}

}  // namespace

void matmul(const Tensor& w, const float* x, int64_t n, float* y) {
  if (w.shape.size() != 2) fail("matmul: weight {} is not a matrix", w.name);
  const int64_t out = w.shape[0], in = w.shape[1];
  switch (w.dtype) {
    case DType::F32: {
      const float* W = reinterpret_cast<const float*>(w.data);
      if (n >= 4 && gemm_packed_supports(w.dtype)) return gemm_packed(w, x, n, y);
      if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, int(out), int(in), 1.0f, W, int(in), x, 1, 0.0f, y, 1);
      else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(out), int(in), 1.0f, x, int(in), W, int(in),
                    0.0f, y, int(out));
      return;
    }
    default:
      // F16/BF16 and block-quantized weights: converted to f32 row by row
      // (reference path; issue #4 brings dot products on the packed blocks).
      if (!dtype_info(w.dtype).supported)
        fail("matmul: weight {} has type {}, which has no kernel yet", w.name, dtype_name(w.dtype));
      matmul_converted(w, x, n, y);
      return;
  }
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
