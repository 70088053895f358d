#include "quant/quantize.h"

#include <cfloat>
#include <cmath>
#include <cstring>
#include <exception>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/blocks.h"
#include "quant/block_grid.h"
#include "quant/iq_quants.h"
#include "quant/kquants.h"
#include "quant/lmp2.h"
#include "quant/simple_quants.h"
#include "quant/scale_search.h"

namespace lmpress {
namespace {

using ggml_search::signed_absmax;

void min_max(const float* x, int n, float& mn, float& mx) {
  mn = FLT_MAX;
  mx = -FLT_MAX;
  for (int j = 0; j < n; j++) {
    mn = std::min(mn, x[j]);
    mx = std::max(mx, x[j]);
  }
}

// Symmetric 4/5-bit: d = max / -2^(bits-1), so the extreme value maps to level 0.
template <typename B, int kBits>
void quantize_sym(const float* x, int64_t nb, B* y) {
  constexpr int kHalf = 1 << (kBits - 1), kMaxQ = (1 << kBits) - 1;
  for (int64_t i = 0; i < nb; i++, x += 32) {
    const float d = signed_absmax(x, 32) / -float(kHalf);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    uint8_t L[32];
    for (int j = 0; j < 32; j++) L[j] = uint8_t(std::min(kMaxQ, int(int8_t(x[j] * id + (float(kHalf) + 0.5f)))));
    pack_levels(kBits == 4 ? DType::Q4_0 : DType::Q5_0, L, reinterpret_cast<uint8_t*>(&y[i]));
  }
}

// Asymmetric 4/5-bit: x = q * d + min.
template <typename B, int kBits>
void quantize_asym(const float* x, int64_t nb, B* y) {
  constexpr int kMaxQ = (1 << kBits) - 1;
  for (int64_t i = 0; i < nb; i++, x += 32) {
    float mn, mx;
    min_max(x, 32, mn, mx);
    const float d = (mx - mn) / float(kMaxQ);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    y[i].m = f32_to_f16(mn);
    // ggml clamps the 4-bit levels only; for 5 bits (x - min) * id + 0.5 stays below 32.
    auto level = [&](float v) {
      const float s = (v - mn) * id + 0.5f;
      return kBits == 4 ? std::min(kMaxQ, int(int8_t(s))) : int(uint8_t(s));
    };
    uint8_t L[32];
    for (int j = 0; j < 32; j++) L[j] = uint8_t(level(x[j]));
    pack_levels(kBits == 4 ? DType::Q4_1 : DType::Q5_1, L, reinterpret_cast<uint8_t*>(&y[i]));
  }
}

void quantize_q8_0(const float* x, int64_t nb, BlockQ8_0* y) {
  for (int64_t i = 0; i < nb; i++, x += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; j++) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    for (int j = 0; j < QK8_0; j++) y[i].qs[j] = int8_t(std::round(x[j] * id));
  }
}


// Importance-weighted Q4_0/Q5_0 (symmetric search) and Q4_1/Q5_1 (scale and
// min search); the weights are scaled by the row's RMS like ggml does.
template <typename B, int kBits, bool kAsym>
void quantize_weighted(const float* x, int64_t n, B* y, const float* qw) {
  using namespace ggml_search;
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  const float sigma2 = sum_x2 / float(n);
  float weight[32];
  for (int64_t ib = 0; ib < n / 32; ++ib) {
    const float* xb = x + 32 * ib;
    const float* w = qw + 32 * ib;
    ggml_search::importance_weights(w, xb, 32, sigma2, weight);
    uint8_t L[32];
    if constexpr (kAsym) {
      uint8_t Laux[32];
      float min;
      const float d = make_qkx_quants(32, (1 << kBits) - 1, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
      y[ib].d = f32_to_f16(d);
      y[ib].m = f32_to_f16(-min);
    } else {
      const float d = make_qx_quants(32, 1 << (kBits - 1), xb, reinterpret_cast<int8_t*>(L), 1, weight);
      y[ib].d = f32_to_f16(d);
    }
    pack_levels(kBits == 4 ? (kAsym ? DType::Q4_1 : DType::Q4_0) : (kAsym ? DType::Q5_1 : DType::Q5_0), L,
                reinterpret_cast<uint8_t*>(&y[ib]));
  }
}

template <typename B>
B* blocks(uint8_t* p) {
  return reinterpret_cast<B*>(p);
}

// The 32-element formats as rows: with importance, the weighted search;
// without, ggml's reference quantizer.
template <typename B, int kBits, bool kAsym>
void row_q4_q5(const float* x, int64_t n, uint8_t* out, const float* importance) {
  if (importance) return quantize_weighted<B, kBits, kAsym>(x, n, blocks<B>(out), importance);
  if constexpr (kAsym)
    quantize_asym<B, kBits>(x, n / 32, blocks<B>(out));
  else
    quantize_sym<B, kBits>(x, n / 32, blocks<B>(out));
}

// Q8_0 ignores importance, as in ggml.
void row_q8_0(const float* x, int64_t n, uint8_t* out, const float*) {
  quantize_q8_0(x, n / QK8_0, blocks<BlockQ8_0>(out));
}

using RowQuantizer = void (*)(const float* x, int64_t n, uint8_t* out, const float* importance);

// One row per type lmpress can write (ggml's from_float / quantize_chunk).
struct QuantizerRow {
  DType type;
  RowQuantizer quantize;
};
const QuantizerRow kQuantizers[] = {
    {DType::Q4_0, row_q4_q5<BlockQ4_0, 4, false>},
    {DType::Q4_1, row_q4_q5<BlockQ4_1, 4, true>},
    {DType::Q5_0, row_q4_q5<BlockQ5_0, 5, false>},
    {DType::Q5_1, row_q4_q5<BlockQ5_1, 5, true>},
    {DType::Q8_0, row_q8_0},
    {DType::Q2_K, quantize_row_q2_k},
    {DType::Q3_K, quantize_row_q3_k},
    {DType::Q4_K, quantize_row_q4_k},
    {DType::Q5_K, quantize_row_q5_k},
    {DType::Q6_K, quantize_row_q6_k},
    {DType::IQ4_NL, quantize_row_iq4_nl},
    {DType::IQ4_XS, quantize_row_iq4_xs},
    {DType::TQ1_0, quantize_row_tq1_0},
    {DType::TQ2_0, quantize_row_tq2_0},
    {DType::MXFP4, quantize_row_mxfp4},
    {DType::IQ3_XXS, quantize_row_iq3_xxs},
    {DType::IQ3_S, quantize_row_iq3_s},
    {DType::IQ2_XXS, quantize_row_iq2_xxs},
    {DType::IQ2_XS, quantize_row_iq2_xs},
    {DType::IQ2_S, quantize_row_iq2_s},
    {DType::IQ1_S, quantize_row_iq1_s},
    {DType::IQ1_M, quantize_row_iq1_m},
    {DType::LMP2, quantize_row_lmp2},
};

const QuantizerRow* quantizer(DType t) {
  for (const auto& r : kQuantizers)
    if (r.type == t) return &r;
  return nullptr;
}

}  // namespace

bool has_quantizer(DType t) { return quantizer(t) != nullptr; }

bool quantize_row(DType t, const float* x, int64_t n, uint8_t* out, const float* importance) {
  const QuantizerRow* r = quantizer(t);
  if (!r) return false;
  r->quantize(x, n, out, importance);
  return true;
}

void quantize_rows(DType t, const float* x, int64_t rows, int64_t cols, uint8_t* out, const float* importance) {
  const QuantizerRow* q = quantizer(t);
  if (!q) fail("no quantizer for {}", dtype_name(t));
  // LMP2 with importance: all rows through one Hessian per block (quant/lmp2.h).
  if (t == DType::LMP2 && importance) return quantize_rows_lmp2(x, rows, cols, out, importance);
  const uint64_t rb = row_bytes(t, uint64_t(cols));
  std::exception_ptr error;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    try {
      q->quantize(x + r * cols, cols, out + uint64_t(r) * rb, importance);
    } catch (...) {
#pragma omp critical(quantize_rows_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace lmpress
