// Google Benchmark micro-benchmarks of the decode kernels: one weight matrix
// (rows x cols) times one activation row, per weight type, with the best
// dispatch target and with the scalar reference. Reports weight bytes read per
// second (bytes_per_second) and GFLOP/s (2·rows·cols per iteration).
// Run: build/lmpress_kernels_bench [--benchmark_filter=Q4_0]
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/qdot.h"
#include "quant/quantize.h"

namespace lmpress {
namespace {

constexpr int64_t kRows = 2048, kCols = 2048;

struct Matrix {
  DType type;
  std::vector<uint8_t> w;
  std::vector<float> x;
  uint64_t row_bytes;
};

Matrix make_matrix(DType t) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  Matrix m{t, {}, std::vector<float>(static_cast<size_t>(kCols)), lmpress::row_bytes(t, uint64_t(kCols))};
  std::vector<float> row(static_cast<size_t>(kCols));
  m.w.resize(size_t(kRows) * m.row_bytes);
  for (int64_t r = 0; r < kRows; r++) {
    for (auto& v : row) v = nd(rng) * 0.02f;
    if (t == DType::F16 || t == DType::BF16) {
      auto* h = reinterpret_cast<uint16_t*>(m.w.data() + r * m.row_bytes);
      for (int64_t c = 0; c < kCols; c++) h[c] = t == DType::F16 ? f32_to_f16(row[size_t(c)]) : f32_to_bf16(row[size_t(c)]);
    } else {
      quantize_row(t, row.data(), kCols, m.w.data() + r * m.row_bytes);
    }
  }
  for (auto& v : m.x) v = nd(rng);
  return m;
}

void run(benchmark::State& state, DType t, bool simd) {
  const Matrix m = make_matrix(t);
  qdot_use_simd(simd);
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
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(m.w.size()));
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(kRows) * double(kCols) * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(simd ? qdot_target() : "scalar");
}

void register_all() {
  for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::F16, DType::BF16})
    for (bool simd : {true, false})
      benchmark::RegisterBenchmark((std::string("matvec/") + dtype_name(t) + (simd ? "/best" : "/scalar")).c_str(),
                                   [t, simd](benchmark::State& s) { run(s, t, simd); });
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
