#include "kernels/hadamard.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "test_util.h"

namespace lmpress {
namespace {

// The orthonormal Sylvester matrix built entry by entry as llama.cpp's
// ggml_gen_hadamard builds the matrix it rotates the KV cache with.
std::vector<double> sylvester(int64_t n) {
  std::vector<double> h(size_t(n * n));
  h[0] = 1.0 / std::sqrt(double(n));
  for (int64_t s = 1; s < n; s *= 2)
    for (int64_t i = 0; i < s; i++)
      for (int64_t j = 0; j < s; j++) {
        const double v = h[size_t(i * n + j)];
        h[size_t((i + s) * n + j)] = v;
        h[size_t(i * n + j + s)] = v;
        h[size_t((i + s) * n + j + s)] = -v;
      }
  return h;
}

TEST(Hadamard, MatchesTheSylvesterMatrixBlockByBlock) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (int64_t block : {1, 2, 16, 64, 128}) {
    const int64_t n = block * 3;
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = nd(rng);
    std::vector<float> y = x;
    hadamard(y.data(), n, block);
    const auto h = sylvester(block);
    for (int64_t b = 0; b < n; b += block)
      for (int64_t i = 0; i < block; i++) {
        double want = 0;
        for (int64_t j = 0; j < block; j++) want += h[size_t(i * block + j)] * x[size_t(b + j)];
        EXPECT_NEAR(y[size_t(b + i)], want, 1e-5) << "block " << block << " row " << i;
      }
    hadamard(y.data(), n, block);  // its own inverse
    for (int64_t i = 0; i < n; i++) EXPECT_NEAR(y[size_t(i)], x[size_t(i)], 1e-5);
  }
  std::vector<float> x(96);
  test::expect_error([&] { hadamard(x.data(), 96, 48); }, "block 48 is not a power of two dividing 96");
  test::expect_error([&] { hadamard(x.data(), 96, 64); }, "block 64 is not a power of two dividing 96");
}

}  // namespace
}  // namespace lmpress
