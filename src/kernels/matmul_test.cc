#include "kernels/matmul.h"

#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <vector>

namespace lmpress {
namespace {

// More threads than cores: OpenMP and OpenBLAS (which takes the OpenMP count
// at each call) get the cores, also once a threaded BLAS call has run.
TEST(Matmul, ThreadsStayAtTheCores) {
  const int cores = omp_get_num_procs();
  set_num_threads(1000);
  EXPECT_EQ(num_threads(), cores);
  EXPECT_EQ(omp_get_max_threads(), cores);
  EXPECT_LE(openblas_get_num_threads(), cores);

  // An f32 weight: OpenBLAS's sgemv (1 token) and sgemm (3 tokens), each
  // large enough to be threaded: with OpenMP at 1000 they would take as many
  // threads as OpenBLAS allows (64 in Debian's build).
  const int64_t out = 512, in = 512;
  std::vector<float> W(size_t(out * in)), x(size_t(3 * in)), y(size_t(3 * out));
  for (size_t i = 0; i < W.size(); i++) W[i] = float(i % 7) - 3.0f;
  for (size_t i = 0; i < x.size(); i++) x[i] = float(i % 5) * 0.25f;
  Tensor w;
  w.name = "w";
  w.shape = {out, in};
  w.data = reinterpret_cast<const uint8_t*>(W.data());
  w.nbytes = W.size() * sizeof(float);
  for (int64_t n : {1, 3}) {
    matmul(w, x.data(), n, y.data());
    EXPECT_LE(openblas_get_num_threads(), cores) << n;
    EXPECT_EQ(omp_get_max_threads(), cores) << n;
    for (int64_t t = 0; t < n; t++)
      for (int64_t r : {int64_t(0), out / 2, out - 1}) {
        double s = 0;
        for (int64_t i = 0; i < in; i++) s += double(W[size_t(r * in + i)]) * x[size_t(t * in + i)];
        EXPECT_NEAR(y[size_t(t * out + r)], s, 1e-3) << n << " " << t << " " << r;
      }
  }
  set_num_threads(1);
  EXPECT_EQ(omp_get_max_threads(), 1);
  EXPECT_EQ(openblas_get_num_threads(), 1);
  set_num_threads(0);
  EXPECT_EQ(omp_get_max_threads(), cores);
}

}  // namespace
}  // namespace lmpress
