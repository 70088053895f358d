#include "core/finite.h"

#include <algorithm>
#include <cmath>

namespace lmpress {

int64_t first_out_of_range(const float* x, int64_t n, float limit) {
  int64_t last = -1;  // n - i of the first bad element: max picks the lowest i
#pragma omp parallel for schedule(static) reduction(max : last)
  for (int64_t i = 0; i < n; i++)
    if (!(std::fabs(x[i]) <= limit)) last = std::max(last, n - i);
  return last < 0 ? -1 : n - last;
}

}  // namespace lmpress
