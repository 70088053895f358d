#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "gemv_check.h"
#include "kernels/gemm_packed.h"
#include "kernels/matmul.h"
#include "kernels/q4_0x8.h"
#include "kernels/q4_kx8.h"
#include "kernels/q5_0x8.h"
#include "kernels/iq4_nlx8.h"
#include "kernels/q8_0x8.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace lmpress {
namespace {

// What a batched engine relies on for batch invariance, on each kind of
// weight: matmul_decode's rows are the one-token rows for any n; matmul's rows
// for n >= 4 (the packed GEMM's) do not depend on n, on every target; the interleaved layouts
// give the one-token rows for every n. (matmul's batched rows differ from its
// one-token rows for f32 and for int8 types left in their file layout: other
// summation orders, f32 rather than quantized activations.)
TEST(MatmulRows, RowsDoNotDependOnTheBatch) {
  // On every kernel target: the AVX2 gemv's rows against the VNNI kernels'
  // (emulated where the CPU lacks vpdpbusd) for 1..3 and 4 tokens, and the
  // 512-bit two-group kernel's (9 groups: 4 pairs and one alone).
  test::for_kernel_targets({512}, [](int64_t cols) {
  const int64_t rows = 72, N = 13;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> wf(size_t(rows * cols)), x(size_t(N * cols));
  for (auto& v : wf) v = nd(rng);
  for (auto& v : x) v = nd(rng);
  struct T {
    const char* name;
    DType type;
    Tensor (*repack)(const Tensor&);
  };
  const T types[] = {{"f32", DType::F32, nullptr},       {"f16", DType::F16, nullptr},
                     {"q8_0", DType::Q8_0, nullptr},     {"q6_k", DType::Q6_K, nullptr},
                     {"q4_k", DType::Q4_K, nullptr},     {"q8_0x8", DType::Q8_0, repack_q8_0x8},
                     {"q4_0x8", DType::Q4_0, repack_q4_0x8}, {"q4_kx8", DType::Q4_K, repack_q4_kx8},
                     {"q5_0x8", DType::Q5_0, repack_q5_0x8}, {"q5_1x8", DType::Q5_1, repack_q5_1x8},
                     {"q4_1x8", DType::Q4_1, repack_q4_1x8}, {"iq4_nlx8", DType::IQ4_NL, repack_iq4_nlx8}};
  for (const T& t : types) {
    SCOPED_TRACE(t.name);
    std::vector<uint8_t> bytes(size_t(rows) * row_bytes(t.type, uint64_t(cols)));
    if (t.type == DType::F32)
      std::memcpy(bytes.data(), wf.data(), bytes.size());
    else
      for (int64_t r = 0; r < rows; r++)
        quantize_row(t.type, wf.data() + r * cols, cols, bytes.data() + size_t(r) * row_bytes(t.type, uint64_t(cols)));
    Tensor w = test::borrowed_matrix(t.type, rows, cols, bytes);
    if (t.repack) w = t.repack(w);
    EXPECT_EQ(matmul_rows_batch_invariant(w), t.repack != nullptr);
    std::vector<float> one(size_t(N * rows)), all(size_t(N * rows));
    for (int64_t i = 0; i < N; i++) matmul(w, x.data() + i * cols, 1, one.data() + i * rows);
    matmul(w, x.data(), N, all.data());
    for (int64_t n : {1, 2, 3, 4, 5, 8, 13}) {
      SCOPED_TRACE(n);
      std::vector<float> y(size_t(n * rows)), d(size_t(n * rows));
      matmul(w, x.data(), n, y.data());
      matmul_decode(w, x.data(), n, d.data());
      EXPECT_EQ(d, std::vector<float>(one.begin(), one.begin() + n * rows));
      // On the scalar target too: the packed GEMM's plain C++ tiles, not OpenBLAS's sgemm (whose Haswell
      // kernels give other sums for 8..12 rows than for 13).
      if (n >= 4) { EXPECT_EQ(y, std::vector<float>(all.begin(), all.begin() + n * rows)); }
      if (matmul_rows_batch_invariant(w)) { EXPECT_EQ(y, std::vector<float>(one.begin(), one.begin() + n * rows)); }
    }
  }
  });
}

}  // namespace
}  // namespace lmpress
