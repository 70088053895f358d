// Google Benchmark micro-benchmarks of the decode kernels: one weight matrix
// (rows x cols) times one activation row, per weight type, with the best
// dispatch target and with the scalar reference. Reports weight bytes read per
// second (bytes_per_second) and GFLOP/s (2·rows·cols per iteration).
// gemm512/*: the prompt-batch GEMM for weights without an int8 kernel.
// matmul1/*: one decoding step's matmul, file layout against the 8-row interleaved one.
// attention/*: 16 decoding sequences over 1024 cached positions each, one
// attention() call per contiguous cache against one attention_paged() call
// over blocks of 16 (64) positions scattered in a pool.
// Run: build/lmpress_kernels_bench [--benchmark_filter=Q4_0]
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "core/tensor.h"
#include "core/cpu_isa.h"
#include "kernels/attention.h"
#include "kernels/gemm_packed.h"
#include "kernels/ops.h"
#include "kernels/qdot.h"
#include "quant/quantize.h"
#include "kernels/bitmap.h"
#include "kernels/interleaved.h"
#include "kernels/matmul.h"
#include "kernels/sparse24.h"

namespace lmpress {
namespace {

constexpr int64_t kRows = 2048, kCols = 2048;

struct Matrix {
  DType type;
  std::vector<uint8_t> w;
  std::vector<float> x;
  uint64_t row_bytes;
};

Matrix make_matrix(DType t, int64_t rows = kRows) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  Matrix m{t, {}, std::vector<float>(static_cast<size_t>(kCols)), lmpress::row_bytes(t, uint64_t(kCols))};
  std::vector<float> row(static_cast<size_t>(kCols));
  m.w.resize(size_t(rows) * m.row_bytes);
  for (int64_t r = 0; r < rows; r++) {
    for (auto& v : row) v = nd(rng) * 0.02f;
    if (t == DType::F16 || t == DType::BF16) {
      auto* h = reinterpret_cast<uint16_t*>(m.w.data() + r * m.row_bytes);
      for (int64_t c = 0; c < kCols; c++) h[c] = t == DType::F16 ? f32_to_f16(row[size_t(c)]) : f32_to_bf16(row[size_t(c)]);
    } else {
      // A uniform importance: the low-bit codebook types refuse to quantize without one.
      static const std::vector<float> importance(static_cast<size_t>(kCols), 1.0f);
      quantize_row(t, row.data(), kCols, m.w.data() + r * m.row_bytes, importance.data());
    }
  }
  for (auto& v : m.x) v = nd(rng);
  return m;
}

// isa: "best", "scalar", or a cpu_isa target to cap the kernels at for this run ("avx2": the AVX2 dot where an
// AVX-512 one exists).
void run(benchmark::State& state, DType t, const std::string& isa) {
  const Matrix m = make_matrix(t);
  const bool simd = isa != "scalar";
  qdot_use_simd(simd);
  if (simd && isa != "best") pin_cpu_isa(isa);
  std::vector<float> y(static_cast<size_t>(kRows));
  const QDotKernel k = qdot(t);
  const FDotFn f = fdot(t);
  std::vector<uint8_t> qa(k.fn ? activation_bytes(k.act, kCols) : 0);
  for (auto _ : state) {
    if (k.fn) {
      quantize_activations(k.act, m.x.data(), kCols, qa.data());
      for (int64_t r = 0; r < kRows; r++) y[size_t(r)] = k.fn(kCols, m.w.data() + r * m.row_bytes, qa.data());
    } else {
      for (int64_t r = 0; r < kRows; r++) y[size_t(r)] = f(kCols, m.w.data() + r * m.row_bytes, m.x.data());
    }
    benchmark::DoNotOptimize(y.data());
  }
  qdot_use_simd(true);
  pin_cpu_isa("best");
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(m.w.size()));
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(kRows) * double(kCols) * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(simd ? qdot_target() : "scalar");
}

// One decoding step's matmul (n = 1, one thread) of a matrix larger than the caches (65536 × 2048), in its file
// layout and repacked into its 8-row interleaved layout: what load-time repacking gains per type.
void run_matmul1(benchmark::State& state, DType t, bool x8) {
  const int64_t rows = 65536;
  const Matrix mat = make_matrix(t, rows);
  std::vector<float> y(static_cast<size_t>(rows));
  Tensor m;
  m.name = "w";
  m.dtype = t;
  m.shape = {rows, kCols};
  m.data = mat.w.data();
  m.nbytes = mat.w.size();
  if (x8) m = interleaved_repack_for(t)->repack(m);
  const int threads = num_threads();
  set_num_threads(1);
  for (auto _ : state) {
    matmul_decode(m, mat.x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_num_threads(threads);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(mat.w.size()));
}

// Sparse F16 against dense F16 on a matrix larger than the caches (as in
// decoding): each weight kept with probability density/100 (F16, F16_bitmap),
// or 2 of every 4 kept (F16_2of4, density ignored), stored in the given
// layout. Where dense and bitmap cross is where repack_sparse's
// kBitmapMaxDensity belongs.
void run_sparse(benchmark::State& state, DType layout) {
  constexpr int64_t rows = 8192, cols = 4096;
  const double density = double(state.range(0)) / 100;
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<double> u;
  std::vector<uint16_t> w(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < w.size(); i++) {
    const bool keep = layout == DType::F16_2OF4 ? (i % 4 == 0 || i % 4 == 2) : u(rng) < density;
    w[i] = keep ? f32_to_f16(nd(rng) * 0.02f) : uint16_t(0);
  }
  std::vector<float> x(static_cast<size_t>(cols)), y(static_cast<size_t>(rows));
  for (auto& v : x) v = nd(rng);
  std::vector<uint8_t> packed;
  if (layout == DType::F16_BITMAP) packed = pack_bitmap_matrix(w.data(), rows, cols);
  if (layout == DType::F16_2OF4) {
    packed.resize(size_t(rows * cols / 32) * sizeof(BlockF16_2of4));
    auto* b = reinterpret_cast<BlockF16_2of4*>(packed.data());
    for (int64_t r = 0; r < rows; r++) pack_2of4_f16(w.data() + r * cols, cols, b + r * (cols / 32));
  }
  Tensor t;
  t.dtype = layout;
  t.shape = {rows, cols};
  t.data = packed.empty() ? reinterpret_cast<const uint8_t*>(w.data()) : packed.data();
  t.nbytes = packed.empty() ? w.size() * 2 : packed.size();
  const RowAddress row(t);
  const FDotFn f = fdot(t.dtype);
  for (auto _ : state) {
    for (int64_t r = 0; r < rows; r++) y[size_t(r)] = f(cols, row(r), x.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(t.nbytes));
  state.counters["weights/s"] =
      benchmark::Counter(double(rows) * double(cols) * double(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(qdot_target());
}

// A prompt batch (512 tokens) against one F16 weight of tinyllama's FFN shape:
// the packed GEMM (f16 converted as the weight panels are packed) against
// converting the whole weight to f32 and calling OpenBLAS's sgemm, which is
// what the prompt path did before (there per 256-row tile). GFLOP/s per path.
void run_gemm(benchmark::State& state, bool packed) {
  constexpr int64_t rows = 5632, cols = 2048, n = 512;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<uint16_t> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = f32_to_f16(nd(rng) * 0.02f);
  std::vector<float> x(static_cast<size_t>(n * cols)), y(static_cast<size_t>(n * rows)), wf;
  for (auto& v : x) v = nd(rng);
  Tensor t;
  t.dtype = DType::F16;
  t.shape = {rows, cols};
  t.data = reinterpret_cast<const uint8_t*>(w.data());
  t.nbytes = w.size() * 2;
  if (packed && !gemm_packed_supports(t.dtype)) return state.SkipWithError("no AVX2");
  if (!packed) wf.resize(w.size());
  for (auto _ : state) {
    if (packed) {
      gemm_packed(t, x.data(), n, y.data());
    } else {
      from_f16(w.data(), int64_t(w.size()), wf.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(rows), int(cols), 1.0f, x.data(), int(cols),
                  wf.data(), int(cols), 0.0f, y.data(), int(rows));
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(rows * cols * n) * double(state.iterations()) / 1e9,
                                                 benchmark::Counter::kIsRate);
}

// Tinyllama's attention shape (32 query heads, 4 KV heads of 64), f16 cache.
void run_attention(benchmark::State& state, bool paged) {
  constexpr int64_t seqs = 16, ctx = 1024, heads = 32, kv_heads = 4, hd = 64;
  const int64_t page = paged ? state.range(0) : ctx;
  const AttentionShape s{heads, kv_heads, hd, heads * hd, kv_heads * hd, heads * hd};
  std::mt19937 rng(4);
  std::normal_distribution<float> nd;
  std::vector<float> q(size_t(seqs * heads * hd)), out(q.size());
  for (auto& v : q) v = nd(rng);
  std::vector<uint16_t> k(size_t(seqs * ctx * kv_heads * hd)), v(k.size());
  for (auto& x : k) x = f32_to_f16(nd(rng));
  for (auto& x : v) x = f32_to_f16(nd(rng));
  // The pool: the same rows, pages of each sequence in shuffled order.
  const int64_t pages = seqs * ctx / page, page_elems = page * kv_heads * hd;
  std::vector<int64_t> order(static_cast<size_t>(pages));
  for (int64_t i = 0; i < pages; i++) order[size_t(i)] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<uint16_t> kp(k.size()), vp(v.size());
  std::vector<const void*> kptr(static_cast<size_t>(pages)), vptr(static_cast<size_t>(pages));
  for (int64_t i = 0; i < pages; i++) {
    const int64_t to = order[size_t(i)] * page_elems;
    std::copy(k.begin() + i * page_elems, k.begin() + (i + 1) * page_elems, kp.begin() + to);
    std::copy(v.begin() + i * page_elems, v.begin() + (i + 1) * page_elems, vp.begin() + to);
    kptr[size_t(i)] = kp.data() + to;
    vptr[size_t(i)] = vp.data() + to;
  }
  std::vector<PagedQuery> pq(static_cast<size_t>(seqs));
  for (int64_t i = 0; i < seqs; i++) {
    pq[size_t(i)].q = q.data() + i * heads * hd;
    pq[size_t(i)].out = out.data() + i * heads * hd;
    pq[size_t(i)].n = 1;
    pq[size_t(i)].pos0 = ctx - 1;
    pq[size_t(i)].cache = {kptr.data() + i * (ctx / page), vptr.data() + i * (ctx / page), page};
  }
  const float scale = 0.125f;
  for (auto _ : state) {
    if (paged) {
      attention_paged(s, KvType::F16, pq.data(), seqs, scale);
    } else {
      for (int64_t i = 0; i < seqs; i++)
        attention(s, KvType::F16, q.data() + i * heads * hd, 1, ctx - 1, k.data() + i * ctx * kv_heads * hd,
                  v.data() + i * ctx * kv_heads * hd, scale, out.data() + i * heads * hd);
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["cache GB/s"] = benchmark::Counter(double(k.size() + v.size()) * 2.0 * double(state.iterations()) / 1e9,
                                                    benchmark::Counter::kIsRate);
}

void register_all() {
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::IQ4_NL, DType::Q4_K})
    if (interleaved_repack_for(t))
      for (bool x8 : {false, true})
        benchmark::RegisterBenchmark((std::string("matmul1/") + dtype_name(t) + (x8 ? "/x8" : "/plain")).c_str(),
                                     [t, x8](benchmark::State& s) { run_matmul1(s, t, x8); })
            ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("attention/decode16/contiguous", [](benchmark::State& s) { run_attention(s, false); })
      ->Unit(benchmark::kMicrosecond)->UseRealTime();
  benchmark::RegisterBenchmark("attention/decode16/paged", [](benchmark::State& s) { run_attention(s, true); })
      ->Arg(16)->Arg(64)->Unit(benchmark::kMicrosecond)->UseRealTime();
  benchmark::RegisterBenchmark("gemm512/F16/packed", [](benchmark::State& s) { run_gemm(s, true); })
      ->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("gemm512/F16/f32+openblas", [](benchmark::State& s) { run_gemm(s, false); })
      ->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("sparse/F16_2of4", [](benchmark::State& s) { run_sparse(s, DType::F16_2OF4); })->Arg(50);
  for (DType t : {DType::F16, DType::F16_BITMAP})
    benchmark::RegisterBenchmark((std::string("sparse/") + dtype_name(t)).c_str(),
                                 [t](benchmark::State& s) { run_sparse(s, t); })
        ->DenseRange(10, 90, 20);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::IQ4_NL, DType::Q2_K, DType::Q3_K,
                  DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS, DType::IQ3_XXS, DType::IQ3_S, DType::IQ2_XXS,
                  DType::IQ2_XS, DType::IQ2_S, DType::TQ2_0, DType::F16, DType::BF16}) {
    std::vector<std::string> isas = {"best", "scalar"};
    if (cpu_isa().avx512) isas.push_back("avx2");  // what a CPU without AVX-512 runs
    for (const std::string& isa : isas)
      benchmark::RegisterBenchmark((std::string("matvec/") + dtype_name(t) + "/" + isa).c_str(),
                                   [t, isa](benchmark::State& s) { run(s, t, isa); });
  }
}

}  // namespace
}  // namespace lmpress

int main(int argc, char** argv) {
  lmpress::register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
