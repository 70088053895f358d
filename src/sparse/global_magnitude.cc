#include "sparse/global_magnitude.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace lmpress {

namespace {

// |x| as its float bits: ordered like |x| (NaN is rejected by the caller).
uint32_t key(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u & 0x7fffffffu;
}

// The bin (0..65535) where the k-th smallest value (1-based) falls, and k's rank inside it.
void locate(const std::vector<int64_t>& hist, int64_t k, uint32_t& bin, int64_t& rank) {
  int64_t below = 0;
  for (uint32_t b = 0; b < hist.size(); b++) {
    if (below + hist[b] >= k) {
      bin = b;
      rank = k - below;
      return;
    }
    below += hist[b];
  }
  fail("internal: global magnitude threshold beyond the weights");
}

}  // namespace

std::vector<int64_t> global_magnitude_zeros(int64_t n, const std::function<std::vector<float>(int64_t)>& load,
                                            double sparsity) {
  if (!(sparsity >= 0 && sparsity <= 1)) fail("global magnitude: sparsity {} is outside 0..1", sparsity);
  std::vector<int64_t> size(static_cast<size_t>(n)), zeros(static_cast<size_t>(n), 0);
  std::vector<int64_t> hi(65536, 0), lo(65536, 0);
  int64_t total = 0;
  for (int64_t i = 0; i < n; i++) {
    const auto w = load(i);
    for (float x : w) {
      if (std::isnan(x)) fail("global magnitude: matrix {} holds NaN", i);
      hi[key(x) >> 16]++;
    }
    size[size_t(i)] = int64_t(w.size());
    total += int64_t(w.size());
  }
  const int64_t k = std::llround(sparsity * double(total));
  if (k == 0) return zeros;
  uint32_t bin_hi, bin_lo;
  int64_t rank;
  locate(hi, k, bin_hi, rank);
  for (int64_t i = 0; i < n; i++)
    for (float x : load(i))
      if (key(x) >> 16 == bin_hi) lo[key(x) & 0xffff]++;
  locate(lo, rank, bin_lo, rank);
  const uint32_t threshold = bin_hi << 16 | bin_lo;
  // Everything below the threshold goes; of the weights equal to it, as many as
  // are still needed, in matrix order.
  std::vector<int64_t> ties(static_cast<size_t>(n), 0);
  int64_t needed = k;
  for (int64_t i = 0; i < n; i++) {
    for (float x : load(i)) {
      const uint32_t u = key(x);
      zeros[size_t(i)] += u < threshold;
      ties[size_t(i)] += u == threshold;
    }
    needed -= zeros[size_t(i)];
  }
  for (int64_t i = 0; i < n && needed > 0; i++) {
    const int64_t take = std::min(needed, ties[size_t(i)]);
    zeros[size_t(i)] += take;
    needed -= take;
  }
  return zeros;
}

}  // namespace lmpress
