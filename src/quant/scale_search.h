// ggml's scale searches for its block formats (ggml-quants.c): given a small
// group of values and optional importance weights, choose a scale (and min)
// and the integer levels that minimise the weighted squared error. Kept
// operation-for-operation identical to ggml so that the bytes lmpress writes
// are the bytes llama-quantize writes.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/blocks.h"

namespace lmpress::ggml_search {

constexpr float kGroupMaxEps = 1e-15f;

using lmpress::nearest_int;

// The value of largest magnitude (the first one on ties), as ggml picks it.
inline float signed_absmax(const float* x, int n) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  return max;
}

// ggml's importance weights: imatrix weight × sqrt(sigma2 + x²).
inline void importance_weights(const float* qw, const float* x, int n, float sigma2, float* out) {
  for (int i = 0; i < n; ++i) out[i] = qw[i] * std::sqrt(sigma2 + x[i] * x[i]);
}

// Index of the table value nearest to x in a sorted int8 table.
inline int best_index_int8(int n, const int8_t* val, float x) {
  if (x <= val[0]) return 0;
  if (x >= val[n - 1]) return n - 1;
  int ml = 0, mu = n - 1;
  while (mu - ml > 1) {
    const int mav = (ml + mu) / 2;
    if (x < val[mav]) mu = mav;
    else ml = mav;
  }
  return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

// Symmetric levels in [-nmax, nmax-1] stored as L + nmax; returns the scale.
// rmse_type 1 weighs by x^2 unless qw is given.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw);
// Q3_K's symmetric search (levels not offset unless do_rmse is false).
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);
// Asymmetric x ~ scale * L - the_min with L in [0, nmax], weights defaulting
// to x^2. ggml has it twice, as make_qkx2_quants (always given weights) and
// make_qkx3_quants; the two are the same computation.
float make_qkx_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                      uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);
// Non-negative levels in [0, nmax] for the super-block scales.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

}  // namespace lmpress::ggml_search
