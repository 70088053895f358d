#include "kernels/hadamard.h"

#include <cmath>

#include "core/error.h"

namespace lmpress {

void hadamard(float* x, int64_t n, int64_t block) {
  if (block < 1 || (block & (block - 1)) != 0 || n % block != 0)
    fail("hadamard: block {} is not a power of two dividing {}", block, n);
  const float norm = 1.0f / std::sqrt(float(block));
  for (int64_t b = 0; b < n; b += block) {
    float* y = x + b;
    for (int64_t h = 1; h < block; h *= 2)
      for (int64_t i = 0; i < block; i += 2 * h)
        for (int64_t j = i; j < i + h; j++) {
          const float a = y[j], c = y[j + h];
          y[j] = a + c;
          y[j + h] = a - c;
        }
    for (int64_t j = 0; j < block; j++) y[j] *= norm;
  }
}

}  // namespace lmpress
